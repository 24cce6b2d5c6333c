"""Tile sheets drawn with numpy/OpenCV: labelled rows of framed, captioned image tiles.

The saliency mosaics (the validation callback's probe mosaic, ``explain``'s correct/error and
spurious-candidate mosaics) are grids of small overlays. Drawing them as matplotlib subplots
costs about 0.5 s per figure plus ~20 ms per tile (axes creation and ``savefig`` dominate), which
adds up to seconds per method and epoch. Here a sheet is a white uint8 canvas the tiles are
pasted into, with ``cv2.putText`` for the text, so a sheet costs milliseconds.

Layout, top to bottom: the title band (if ``title``), the column-header band (if ``headers``),
then one band per row: the row label on the left, then the tiles left to right, each framed by
a ``_BORDER``-px border in its frame colour with its caption lines underneath. Every tile cell
has the same size, so columns line up; a ``None`` slot leaves its cell blank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps
from PIL import Image

Colour = tuple[int, int, int]

# frame colours of the saliency mosaics: prediction correct / wrong
CORRECT: Colour = (40, 160, 40)
ERROR: Colour = (210, 40, 40)

_BG = 255  # canvas background (white)
_INK: Colour = (0, 0, 0)
_FONT = cv2.FONT_HERSHEY_SIMPLEX
# Text sizes: a caption's capitals are 12 px high (Hershey simplex at 0.45), so a sheet shown
# at 75 % of its pixels (a ~750 px sheet in the report's half-width column) still shows them at
# about 9 pt; the row labels, headers and title are larger.
_TITLE_SCALE, _LABEL_SCALE, _HEADER_SCALE, _CAPTION_SCALE = 0.55, 0.5, 0.5, 0.45
_PAD = 4  # outer margin (left without row labels, right, bottom)
_LABEL_W = 110  # row-label column when any row has a label
_TITLE_H = 26  # title band (when there is a title)
_HEADER_H = 20  # column-header band (when there are headers)
_BORDER = 3  # frame around each tile image
_GAP = 4  # between tile cells, horizontally and vertically
_LINE_H = 16  # one caption line at _CAPTION_SCALE (12 px glyphs + descenders)
_BAR_H, _BAR_W = 14, 200  # the colour bar's gradient strip (footer)
_EMPTY_W, _EMPTY_H = 240, 40  # body of a sheet with no tiles

# Hershey fonts are ASCII-only: common symbols in captions/titles get ASCII stand-ins, the
# rest becomes "?" (cv2 would draw one "?" per UTF-8 byte otherwise).
_ASCII = str.maketrans(
    {"Δ": "D", "δ": "d", "×": "x", "–": "-", "—": "-", "→": "->", "≥": ">=", "·": "|"}
)


@dataclass(frozen=True)
class Tile:
    """One cell of a sheet: ``image`` uint8 H×W×3, ``caption`` (newlines start new lines)
    drawn under it, ``frame`` the RGB border colour (``None``: no visible frame)."""

    image: np.ndarray
    caption: str = ""
    frame: Colour | None = None

    def __post_init__(self) -> None:
        image = self.image
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(
                f"tile image must be uint8 H×W×3, got {image.dtype} {tuple(image.shape)}"
            )
        if image.shape[0] == 0 or image.shape[1] == 0:
            raise ValueError(f"tile image is empty: {tuple(image.shape)}")


def _ascii(text: str) -> str:
    return text.translate(_ASCII).encode("ascii", "replace").decode("ascii")


def _text_w(text: str, scale: float) -> int:
    return cv2.getTextSize(text, _FONT, scale, 1)[0][0]


def _fit(text: str, scale: float, max_w: int) -> str:
    """``text`` (ASCII) cut and suffixed with ".." so it is at most ``max_w`` px wide."""
    if _text_w(text, scale) <= max_w:
        return text
    for n in range(len(text) - 1, 0, -1):
        cut = text[:n].rstrip() + ".."
        if _text_w(cut, scale) <= max_w:
            return cut
    return ""


def _put(
    canvas: np.ndarray, text: str, x: int, y: int, scale: float, colour: Colour = _INK
) -> None:
    """Draw ``text`` with its baseline at ``y``."""
    if text:
        cv2.putText(canvas, text, (x, y), _FONT, scale, colour, 1, cv2.LINE_AA)


def _cell_size(tiles: Sequence[Tile], min_tile: int) -> tuple[int, int]:
    """Common image size: the largest height and width, upscaled by the smallest integer
    factor that makes the longer side at least ``min_tile`` px."""
    h = max(t.image.shape[0] for t in tiles)
    w = max(t.image.shape[1] for t in tiles)
    scale = max(1, -(-min_tile // max(h, w)))
    return h * scale, w * scale


def _fit_image(image: np.ndarray, h: int, w: int) -> tuple[np.ndarray, int, int]:
    """``image`` scaled to fit an ``h``×``w`` cell keeping its aspect ratio, and the offsets
    that centre it there (nearest-neighbour when enlarging, so overlays stay crisp)."""
    ih, iw = image.shape[:2]
    if (ih, iw) == (h, w):
        return image, 0, 0
    f = min(h / ih, w / iw)
    nh, nw = min(h, max(1, round(ih * f))), min(w, max(1, round(iw * f)))
    interp = cv2.INTER_NEAREST if f >= 1 else cv2.INTER_AREA
    return cv2.resize(image, (nw, nh), interpolation=interp), (h - nh) // 2, (w - nw) // 2


def _wrap(text: str, scale: float, max_w: int) -> list[str]:
    """``text`` (ASCII) broken at spaces into lines at most ``max_w`` px wide (newlines kept)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            trial = f"{line} {word}" if line else word
            if line and _text_w(trial, scale) > max_w:
                lines.append(_fit(line, scale, max_w))
                line = word
            else:
                line = trial
        lines.append(_fit(line, scale, max_w))
    return lines


def _caption_lines(caption: str, max_w: int) -> list[str]:
    """A tile's caption lines: each line too wide for the cell is broken once at a space
    (into two lines, the second cut with ".." if still too wide), else cut."""
    lines: list[str] = []
    for line in _ascii(caption).split("\n") if caption else []:
        wrapped = _wrap(line, _CAPTION_SCALE, max_w)
        lines += wrapped[:1] + (
            [_fit(" ".join(wrapped[1:]), _CAPTION_SCALE, max_w)] if len(wrapped) > 1 else []
        )
    return lines


def _footer(width: int, legend: str, colorbar: str | None) -> np.ndarray | None:
    """The band under the tiles: the jet colour bar of the overlays (0 and 1 marked, with its
    label) and the legend lines that say how to read the tiles; None when neither is asked."""
    legend = _ascii(legend)
    if not legend and not colorbar:
        return None
    max_w = width - 2 * _PAD
    lines = _wrap(legend, _CAPTION_SCALE, max_w) if legend else []
    bar_h = _BAR_H + _LINE_H + 6 if colorbar else 0
    band = np.full((bar_h + len(lines) * _LINE_H + _PAD, width, 3), _BG, dtype=np.uint8)
    y = 0
    if colorbar:
        bar_w = min(_BAR_W, max_w - _text_w("0", _CAPTION_SCALE) - _text_w("1", _CAPTION_SCALE))
        bar_w = max(bar_w, 20)
        x0 = _PAD + _text_w("0", _CAPTION_SCALE) + 4
        ramp = (colormaps["jet"](np.linspace(0, 1, bar_w))[:, :3] * 255).astype(np.uint8)
        band[y + 2 : y + 2 + _BAR_H, x0 : x0 + bar_w] = ramp[None]
        mid = y + 2 + _BAR_H // 2 + 5
        _put(band, "0", _PAD, mid, _CAPTION_SCALE)
        _put(band, "1", x0 + bar_w + 4, mid, _CAPTION_SCALE)
        label_x = x0 + bar_w + 8 + _text_w("1", _CAPTION_SCALE)
        label = _ascii(colorbar)
        if label_x + _text_w(label, _CAPTION_SCALE) <= width - _PAD:
            _put(band, label, label_x, mid, _CAPTION_SCALE)
        else:  # no room beside the bar: the label goes under it
            _put(
                band, _fit(label, _CAPTION_SCALE, max_w), _PAD, y + _BAR_H + _LINE_H, _CAPTION_SCALE
            )
        y += bar_h
    for k, line in enumerate(lines):
        _put(band, line, _PAD, y + (k + 1) * _LINE_H - 4, _CAPTION_SCALE)
    return band


def _save(canvas: np.ndarray, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(canvas).save(path, compress_level=1)  # level 6 is ~4× slower, ~10% smaller
    return path


def tile_sheet(
    rows: Sequence[tuple[str, Sequence[Tile | None]]],
    path: str | Path,
    title: str = "",
    headers: Sequence[tuple[int, str, Colour]] = (),
    min_tile: int = 96,
    empty: str = "no images",
    legend: str = "",
    colorbar: str | None = None,
) -> Path:
    """Write a sheet of labelled tile rows to ``path`` (PNG) and return ``path``.

    Args:
        rows: ``(row label, tiles)`` pairs, top to bottom; ``None`` in ``tiles`` is an empty
            slot, so columns stay aligned (e.g. correct tiles left, errors right). The sheet
            has as many columns as the longest row.
        path: PNG to write (parent directories are created).
        title: drawn at the top; the sheet is widened to fit it.
        headers: ``(column index, text, RGB colour)`` drawn above that column.
        min_tile: tiles are drawn at a common size, the largest tile's height and width,
            upscaled by an integer factor (nearest neighbour) until the longer side is at least
            this many px; smaller or differently shaped tiles are scaled to fit, centred.
        empty: text of the sheet written when no row holds a tile.
        legend: how to read the tiles (what the captions, frames and outlines mean), wrapped
            to the sheet's width under the tiles.
        colorbar: label of a jet colour bar from 0 to 1 drawn under the tiles (the scale of
            saliency overlays drawn with :func:`~sage.plots.overlay.overlay`); None: no bar.

    Text is drawn with OpenCV's Hershey font, ASCII only (``Δ`` becomes ``D``, other non-ASCII
    characters ``?``); row labels too wide for their cell are cut with "..", caption lines are
    broken once at a space (then cut).
    """
    if min_tile < 1:
        raise ValueError(f"min_tile must be at least 1, got {min_tile}")
    title = _ascii(title)
    all_tiles = [t for _, tiles in rows for t in tiles if t is not None]
    top = (_TITLE_H if title else 0) + (_HEADER_H if headers and all_tiles else 0)
    title_w = _text_w(title, _TITLE_SCALE) + 2 * _PAD if title else 0
    if not all_tiles:
        canvas = np.full((top + _EMPTY_H, max(_EMPTY_W, title_w), 3), _BG, dtype=np.uint8)
        _put(canvas, title, _PAD, _TITLE_H - 7, _TITLE_SCALE)
        _put(canvas, _ascii(empty), _PAD, top + _EMPTY_H // 2 + 6, _LABEL_SCALE)
        return _save(canvas, path)

    h, w = _cell_size(all_tiles, min_tile)
    cell_w = w + 2 * _BORDER
    captions = {id(t): _caption_lines(t.caption, cell_w) for t in all_tiles}
    caption_h = max(len(lines) for lines in captions.values()) * _LINE_H
    cell_h = h + 2 * _BORDER + caption_h
    label_w = _LABEL_W if any(label for label, _ in rows) else _PAD
    ncols = max(len(tiles) for _, tiles in rows)
    width = max(label_w + ncols * (cell_w + _GAP) - _GAP + _PAD, title_w)
    height = top + len(rows) * (cell_h + _GAP) - _GAP + _PAD
    canvas = np.full((height, width, 3), _BG, dtype=np.uint8)

    _put(canvas, title, _PAD, _TITLE_H - 7, _TITLE_SCALE)
    for col, text, colour in headers:
        x = label_w + col * (cell_w + _GAP)
        _put(canvas, _ascii(text), x, top - 4, _HEADER_SCALE, colour)
    line_y = [_BORDER * 2 + h + (k + 1) * _LINE_H - 3 for k in range(caption_h // _LINE_H)]
    for r, (label, tiles) in enumerate(rows):
        y = top + r * (cell_h + _GAP)
        _put(
            canvas,
            _fit(_ascii(label), _LABEL_SCALE, label_w - 2 * _PAD),
            _PAD,
            y + _BORDER + h // 2 + 6,
            _LABEL_SCALE,
        )
        for c, tile in enumerate(tiles):
            if tile is None:
                continue
            x = label_w + c * (cell_w + _GAP)
            if tile.frame is not None:
                canvas[y : y + h + 2 * _BORDER, x : x + cell_w] = tile.frame
                canvas[y + _BORDER : y + _BORDER + h, x + _BORDER : x + _BORDER + w] = _BG
            image, dy, dx = _fit_image(tile.image, h, w)
            iy, ix = y + _BORDER + dy, x + _BORDER + dx
            canvas[iy : iy + image.shape[0], ix : ix + image.shape[1]] = image
            for line, ly in zip(captions[id(tile)], line_y, strict=False):
                _put(canvas, line, x, y + ly, _CAPTION_SCALE)
    footer = _footer(width, legend, colorbar)
    if footer is not None:
        canvas = np.concatenate([canvas, footer], axis=0)
    return _save(canvas, path)
