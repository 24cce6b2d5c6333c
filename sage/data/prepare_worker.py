"""What prepare's worker processes run: load, mask and write chunks of images, then finish
each variant directory (meta.csv, index, VIA, summary, mosaics).

Kept apart from :mod:`.preparation`, whose readers and splits import scikit-learn and more:
a spawned worker imports this module to unpickle its task, and this one imports in about a
quarter of the time (no scikit-learn, readers or tqdm: 1.5 s against 5.7 s on a loaded 2-core
machine), start-up that the parallel run pays before its workers do any work. Everything
here writes files of one image, or one variant,
alone, so the workers never touch the same file.
"""

from __future__ import annotations

import io
import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from PIL import Image

from ..errors import SageError
from ..maskers import Masker, build_masker, mask_box
from .annotations import mask_polygon, via_entry, yolo_box_line, yolo_polygon_line
from .prepared import META_COLUMNS, SPLITS
from .variants import Sample, make_variants

MOSAIC_EXAMPLES = 4
# Variant images: zlib level 1 with the run-length strategy. PIL's default (level 6, default
# strategy) spent ~0.35 s per 640x480 image, most of prepare's time; this is ~7x faster and
# the files are no larger (PNG is lossless: the pixels are the same). Masks and parts, which
# are small and flat, keep PIL's default.
_PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def _load_rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        im.load()  # decode now so a truncated file fails here, not later in training
        return np.asarray(im.convert("RGB"))


def _load_parts(path: object, shape: tuple[int, int]) -> np.ndarray | None:
    if not isinstance(path, str):
        return None
    with Image.open(path) as im:
        parts = np.asarray(im)
    if parts.shape != shape:
        raise ValueError(f"part labels {path} have size {parts.shape[::-1]}, image {shape[::-1]}")
    return parts


def _write_rgb_png(path: Path, rgb: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]), _PNG_FAST)
    if not ok:
        raise SageError(f"could not encode {path.name} as PNG")
    path.write_bytes(data.tobytes())


def _label_png(array: np.ndarray, shared: dict, *, binary: bool) -> bytes:
    """PNG bytes of a mask (``binary``: 0/255) or part-label image, encoded once per array."""
    key = ("png", id(array), binary)
    if key not in shared:
        buf = io.BytesIO()
        Image.fromarray(array.astype(np.uint8) * 255 if binary else array).save(buf, "PNG")
        shared[key] = buf.getvalue()
    return shared[key]


def _write_variant(
    out: Path, variant: str, row, sample: Sample, shared: dict
) -> tuple[str, dict, str, float]:
    """Write one image of one variant (image, mask, parts, YOLO files) under ``out``; return
    what the writer books: the VIA entry, the box and the foreground fraction. Runs in the
    prepare workers; every file it writes belongs to this image alone.

    ``shared`` holds what this image's variants have in common: full and seg share their
    mask and parts arrays, as do bbox and bboxseg, so each is encoded (and outlined) once.
    """
    image_id = row.image_id
    if variant == "full":  # keep the source bytes: no re-encoding loss
        image_file = out / "images" / f"{image_id}{Path(row.source_path).suffix.lower()}"
        shutil.copyfile(row.source_path, image_file)
    else:  # PNG: a lossy codec would bleed the fill into the foreground edge
        image_file = out / "images" / f"{image_id}.png"
        _write_rgb_png(image_file, sample.image)
    (out / "masks" / f"{image_id}.png").write_bytes(_label_png(sample.mask, shared, binary=True))
    if sample.parts is not None:
        parts = _label_png(sample.parts, shared, binary=False)
        (out / "parts" / f"{image_id}.png").write_bytes(parts)
    geometry = ("geometry", id(sample.mask))
    if geometry not in shared:
        shared[geometry] = mask_box(sample.mask), mask_polygon(sample.mask), sample.mask.mean()
    box, polygon, fg_fraction = shared[geometry]
    shape = sample.mask.shape
    (out / "annotations/yolo" / f"{image_id}.txt").write_text(yolo_box_line(box, shape))
    if len(polygon) >= 3:
        (out / "annotations/yolo_seg" / f"{image_id}.txt").write_text(
            yolo_polygon_line(polygon, shape)
        )
    key, entry = via_entry(image_file.name, image_file.stat().st_size, box, polygon, row.label_name)
    return key, entry, " ".join(map(str, box)), float(fg_fraction)


def process_chunk(
    rows: list,
    masker: Masker | None = None,
    *,
    variants: tuple[str, ...],
    margin: float,
    fill: tuple[int, ...],
    outs: Mapping[str, Path],
) -> list[tuple]:
    """Load, mask and write one chunk of images; return its events in order:
    ``("skip", reason, path, detail)`` or ``("kept", index, image_id, {variant: record})``."""
    masker = masker or _WORKER["masker"]
    events: list[tuple] = []
    chunk, images = [], []
    for row in rows:
        try:
            images.append(_load_rgb(row.source_path))
            chunk.append(row)
        except Exception as err:  # PIL raises many types for corrupt files
            events.append(
                ("skip", "corrupt_image", row.source_path, f"{type(err).__name__}: {err}")
            )
    results = masker(images, chunk) if chunk else []
    for row, image, result in zip(chunk, images, results, strict=True):
        if result.failure is not None:
            reason, _, detail = result.failure.partition(": ")
            events.append(("skip", f"masker_{reason}", row.source_path, detail))
            continue
        try:
            parts = _load_parts(row.parts_path, image.shape[:2])
        except Exception as err:
            events.append(
                ("skip", "bad_parts", str(row.parts_path), f"{type(err).__name__}: {err}")
            )
            continue
        produced = make_variants(
            Sample(image, result.mask, parts), result.box, variants, margin, fill
        )
        shared: dict = {}  # keyed by id(): the arrays stay alive in ``produced`` meanwhile
        records = {v: _write_variant(outs[v], v, row, out, shared) for v, out in produced.items()}
        events.append(("kept", row.Index, row.image_id, records))
    return events


# The masker of a prepare worker process, built once from its config by _init_worker.
_WORKER: dict[str, Masker] = {}


def init_worker(masker_cfg: Mapping) -> None:
    cv2.setNumThreads(1)  # the pool is the parallelism; OpenCV's own threads would oversubscribe
    _WORKER["masker"] = build_masker(dict(masker_cfg))


class VariantWriter:
    """One variant's output directory; books what :func:`_write_variant` wrote for each image."""

    def __init__(self, out: Path, variant: str) -> None:
        self.out, self.variant = out, variant
        for sub in (
            "images",
            "masks",
            "parts",
            "annotations/yolo",
            "annotations/yolo_seg",
            "mosaics",
        ):
            (out / sub).mkdir(parents=True, exist_ok=True)
        self.bbox: dict[str, str] = {}
        self.fg_fraction: dict[str, float] = {}
        self.via: dict[str, dict] = {}

    def add(self, image_id: str, record: tuple[str, dict, str, float]) -> None:
        """Book one written image (the record :func:`_write_variant` returned)."""
        key, entry, box, fg_fraction = record
        self.via[key] = entry
        self.bbox[image_id] = box
        self.fg_fraction[image_id] = fg_fraction

    def finish(
        self, rows: pd.DataFrame, classes: list[str], names: list[str], summary: dict
    ) -> None:
        rows = rows.copy()
        rows["bbox"] = rows["image_id"].map(self.bbox)
        rows["fg_fraction"] = rows["image_id"].map(self.fg_fraction)
        (self.out / "index").mkdir(exist_ok=True)
        rows[META_COLUMNS].to_csv(self.out / "meta.csv", index=False)
        for split in SPLITS:
            ids = rows.loc[rows["split"] == split, "image_id"]
            (self.out / "index" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
        (self.out / "classes.json").write_text(
            json.dumps({"classes": classes, "names": names}, indent=2)
        )
        (self.out / "annotations/via.json").write_text(json.dumps(self.via))
        fg = rows["fg_fraction"]
        summary = {
            **summary,
            "variant": self.variant,
            "n_images": len(rows),
            "counts": _counts(rows),
            "fg_pixel_fraction": {"mean": fg.mean(), "min": fg.min(), "max": fg.max()},
            "fg_bg_pixel_ratio": float(fg.mean() / max(1e-12, 1 - fg.mean())),
        }
        (self.out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
        self._mosaics(rows, dict(zip(classes, names, strict=True)))

    def _mosaics(self, rows: pd.DataFrame, names: dict[str, str]) -> None:
        examples = {
            cls: [
                next((self.out / "images").glob(f"{i}.*"))
                for i in group["image_id"].head(MOSAIC_EXAMPLES)
            ]
            for cls, group in rows.sort_values(["split", "image_id"]).groupby(
                "label_name", sort=True
            )
        }
        title = f"{self.out.name} ({len(rows)} images)"
        from ..plots.mosaics import class_distribution, class_mosaic  # matplotlib: not in workers

        class_mosaic(examples, self.out / "mosaics" / "classes.png", title, names=names)
        class_distribution(rows, self.out / "mosaics" / "distribution.png", title)


def _counts(rows: pd.DataFrame) -> dict:
    table = rows.groupby(["split", "label_name"]).size()
    return {s: {c: int(n) for c, n in table[s].items()} for s in SPLITS if s in table.index}
