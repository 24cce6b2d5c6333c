"""The numpy/OpenCV tile sheet behind the saliency mosaics: layout, pasting, frames, empty input,
and the three mosaics drawn with it. Tiny arrays only, so these run in well under a second."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sage.plots.overlay import SALIENCY_BAR, correct_error_mosaic
from sage.plots.probe_mosaic import probe_mosaic
from sage.plots.ranking import ranking_mosaic
from sage.plots.tile_sheet import (
    _BORDER,
    _GAP,
    _HEADER_H,
    _LABEL_W,
    _LINE_H,
    _PAD,
    _TITLE_H,
    Tile,
    _footer,
    tile_sheet,
)

GREEN, RED = (40, 160, 40), (210, 40, 40)


def _read(path) -> np.ndarray:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _solid(colour, h: int = 16, w: int = 16) -> np.ndarray:
    return np.broadcast_to(np.array(colour, dtype=np.uint8), (h, w, 3)).copy()


def _origin(r: int, c: int, h: int, w: int, lines: int = 1, label_w: int = _LABEL_W, top: int = 0):
    """Top-left corner (y, x) of cell (r, c), i.e. of its frame, from the layout constants."""
    cell_w, cell_h = w + 2 * _BORDER, h + 2 * _BORDER + lines * _LINE_H
    return top + r * (cell_h + _GAP), label_w + c * (cell_w + _GAP)


def _bbox(sheet: np.ndarray, colour) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero((sheet == np.array(colour, dtype=np.uint8)).all(axis=-1))
    assert len(ys), f"{colour} not found"
    return ys.min(), xs.min(), ys.max() + 1, xs.max() + 1


@pytest.mark.parametrize(("nrows", "ncols"), [(1, 1), (2, 3), (4, 2)])
def test_sheet_size_follows_the_layout(tmp_path, nrows, ncols):
    rows = [(f"r{r}", [Tile(_solid(GREEN), "cap")] * ncols) for r in range(nrows)]
    sheet = _read(tile_sheet(rows, tmp_path / "s.png", min_tile=16))
    cell_w, cell_h = 16 + 2 * _BORDER, 16 + 2 * _BORDER + _LINE_H
    assert sheet.shape == (
        nrows * (cell_h + _GAP) - _GAP + _PAD,
        _LABEL_W + ncols * (cell_w + _GAP) - _GAP + _PAD,
        3,
    )
    # a title and headers each add their band on top
    titled = _read(tile_sheet(rows, tmp_path / "t.png", "t", [(0, "h", RED)], min_tile=16))
    assert titled.shape[0] == sheet.shape[0] + _TITLE_H + _HEADER_H
    assert titled.shape[1] == sheet.shape[1]


def test_sheet_grows_with_columns_rows_and_caption_lines(tmp_path):
    def shape(nrows: int, ncols: int, caption: str = "x") -> tuple[int, ...]:
        rows = [("a", [Tile(_solid(RED, 8, 8), caption)] * ncols)] * nrows
        return _read(tile_sheet(rows, tmp_path / "s.png", min_tile=8)).shape

    assert shape(1, 3)[1] > shape(1, 2)[1] > shape(1, 1)[1]
    assert shape(3, 1)[0] > shape(2, 1)[0] > shape(1, 1)[0]
    assert shape(1, 1, "a\nb\nc")[0] == shape(1, 1, "a")[0] + 2 * _LINE_H
    assert shape(1, 1, "a\nb")[1] == shape(1, 1, "a")[1]
    # a row without a label takes a margin, not the label column
    no_label = [("", [Tile(_solid(RED, 8, 8))])]
    assert _read(tile_sheet(no_label, tmp_path / "n.png", min_tile=8)).shape[1] == (
        _PAD + 8 + 2 * _BORDER + _PAD
    )


def test_tile_pixels_land_in_their_cell(tmp_path):
    blue = (10, 30, 220)
    rows = [
        ("a", [Tile(_solid(GREEN), "x")] * 3),
        ("b", [Tile(_solid(GREEN), "x"), None, Tile(_solid(blue), "x", RED)]),
    ]
    sheet = _read(tile_sheet(rows, tmp_path / "s.png", min_tile=16))
    y, x = _origin(1, 2, 16, 16)
    assert _bbox(sheet, blue) == (y + _BORDER, x + _BORDER, y + _BORDER + 16, x + _BORDER + 16)
    assert (sheet[y + _BORDER : y + _BORDER + 16, x + _BORDER : x + _BORDER + 16] == blue).all()


def test_frames_have_their_colour_and_none_frames_stay_background(tmp_path):
    rows = [("a", [Tile(_solid((0, 0, 255)), "", RED), Tile(_solid((0, 0, 255)))])]
    sheet = _read(tile_sheet(rows, tmp_path / "s.png", min_tile=16))
    side = 16 + 2 * _BORDER
    for c, expected in ((0, RED), (1, (255, 255, 255))):
        y, x = _origin(0, c, 16, 16, lines=0)
        ring = np.ones((side, side), dtype=bool)
        ring[_BORDER:-_BORDER, _BORDER:-_BORDER] = False
        assert (sheet[y : y + side, x : x + side][ring] == expected).all(), c
        inner = sheet[y + _BORDER : y + side - _BORDER, x + _BORDER : x + side - _BORDER]
        assert (inner == (0, 0, 255)).all(), c


def test_none_slots_stay_background(tmp_path):
    rows = [("a", [Tile(_solid(GREEN), "cap", RED), None, Tile(_solid(GREEN), "cap", RED)])]
    sheet = _read(tile_sheet(rows, tmp_path / "s.png", min_tile=16))
    y, x = _origin(0, 1, 16, 16)
    cell = sheet[y : y + 16 + 2 * _BORDER + _LINE_H, x : x + 16 + 2 * _BORDER]
    assert (cell == 255).all()
    assert sheet.shape[1] == _LABEL_W + 3 * (16 + 2 * _BORDER + _GAP) - _GAP + _PAD


def test_tiles_of_different_sizes_share_the_largest_cell(tmp_path):
    big, small = (200, 20, 20), (20, 20, 200)
    rows = [("a", [Tile(_solid(big, 16, 12)), Tile(_solid(small, 8, 8))])]
    sheet = _read(tile_sheet(rows, tmp_path / "s.png", min_tile=1))
    assert sheet.shape[:2] == (
        16 + 2 * _BORDER + _PAD,
        _LABEL_W + 2 * (12 + 2 * _BORDER) + _GAP + _PAD,
    )
    y, x = _origin(0, 1, 16, 12, lines=0)
    # 8×8 scaled by 1.5 to fill the 12 px width, centred vertically in the 16 px height
    assert _bbox(sheet, small) == (y + _BORDER + 2, x + _BORDER, y + _BORDER + 14, x + _BORDER + 12)
    assert _bbox(sheet, big)[2:] == (_BORDER + 16, _LABEL_W + _BORDER + 12)


def test_small_tiles_are_upscaled_by_an_integer_factor(tmp_path):
    checker = np.zeros((10, 10, 3), dtype=np.uint8)
    checker[::2, ::2] = checker[1::2, 1::2] = (255, 0, 255)
    sheet = _read(tile_sheet([("a", [Tile(checker)])], tmp_path / "s.png", min_tile=96))
    y, x = _origin(0, 0, 100, 100, lines=0)  # ceil(96 / 10) = 10 → 100 px, nearest neighbour
    pasted = sheet[y + _BORDER : y + _BORDER + 100, x + _BORDER : x + _BORDER + 100]
    np.testing.assert_array_equal(pasted, np.kron(checker, np.ones((10, 10, 1), dtype=np.uint8)))


@pytest.mark.parametrize("rows", [[], [("a", []), ("b", [None, None])]])
def test_empty_input_writes_a_png_that_says_so(tmp_path, rows):
    out = tile_sheet(rows, tmp_path / "sub" / "e.png", "title", [(0, "h", RED)])
    sheet = _read(out)
    assert out == tmp_path / "sub" / "e.png"
    assert (sheet[:_TITLE_H] < 128).any()  # the title
    assert (sheet[_TITLE_H:] < 128).any()  # the "no images" text under it
    untitled = _read(tile_sheet(rows, tmp_path / "u.png"))
    assert (untitled < 128).any()


def test_long_labels_and_captions_stay_in_their_cells(tmp_path):
    rows = [("a very long class name " * 4, [Tile(_solid(GREEN), "caption " * 10)] * 2)]
    sheet = _read(tile_sheet(rows, tmp_path / "s.png", min_tile=16))
    assert (sheet[:, _LABEL_W - _PAD : _LABEL_W] == 255).all()  # label cut before the tiles
    x_gap = _LABEL_W + 16 + 2 * _BORDER  # the gap between the two captions
    assert (sheet[:, x_gap : x_gap + _GAP] == 255).all()
    assert (sheet[16 + 2 * _BORDER :, _LABEL_W : _LABEL_W + 16] < 128).any()  # caption drawn


def test_tile_rejects_non_rgb_uint8():
    with pytest.raises(ValueError, match="uint8"):
        Tile(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="uint8"):
        Tile(np.zeros((4, 4), dtype=np.uint8))


# ------------------------------------------------------------------ the mosaics on top of it


def test_correct_error_mosaic_aligns_correct_left_errors_right(tmp_path):
    tile = np.full((16, 16, 3), 128, dtype=np.uint8)
    tiles = {
        "cat": {"correct": [(tile, "ok")] * 5, "error": [(tile, "bad")]},
        "dog": {"error": [(tile, "bad")] * 2},
    }
    sheet = _read(correct_error_mosaic(tiles, tmp_path / "ce.png", "title", per_side=2))
    size = 96  # 16 px upscaled to the 96 px minimum
    top = _TITLE_H + _HEADER_H
    assert sheet.shape[1] == _LABEL_W + 4 * (size + 2 * _BORDER + _GAP) - _GAP + _PAD

    def frame(r: int, c: int):
        y, x = _origin(r, c, size, size, top=top)
        return tuple(sheet[y, x])

    assert [frame(0, c) for c in range(4)] == [GREEN, GREEN, RED, (255, 255, 255)]
    assert [frame(1, c) for c in range(4)] == [(255, 255, 255)] * 2 + [RED, RED]


def test_probe_mosaic_puts_correct_predictions_first(tmp_path):
    n = 4
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    masks = np.zeros((n, 8, 8), dtype=bool)
    labels, preds = [0, 0, 0, 1], [1, 0, 0, 1]  # class 0: error first in probe order
    out = probe_mosaic(
        rgb, rng.random((n, 8, 8)), masks, labels, preds, [0.1] * n, ["a", "b"], tmp_path / "p.png"
    )
    sheet = _read(out)
    size = 96  # 8 px × 12

    def frame(r: int, c: int):
        y, x = _origin(r, c, size, size)
        return tuple(sheet[y, x])

    assert [frame(0, c) for c in range(3)] == [GREEN, GREEN, RED]
    assert frame(1, 0) == GREEN


def test_ranking_mosaic_wraps_rows_and_writes_empty(tmp_path):
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    items = [(image, np.zeros((8, 8)), None, f"#{i}\nscore") for i in range(7)]
    sheet = _read(ranking_mosaic(items, tmp_path / "r.png", cols=3, legend="how to read"))
    cell_h = 96 + 2 * _BORDER + 2 * _LINE_H
    width = _PAD + 3 * (96 + 2 * _BORDER + _GAP) - _GAP + _PAD
    footer = _footer(width, "how to read", SALIENCY_BAR)  # the colour bar and the legend
    assert sheet.shape[:2] == (3 * (cell_h + _GAP) - _GAP + _PAD + footer.shape[0], width)
    assert (_read(ranking_mosaic([], tmp_path / "e.png", "t")) < 128).any()
