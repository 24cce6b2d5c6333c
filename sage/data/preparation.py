"""The prepare step: raw layout -> labels -> splits -> one masker pass -> four variants (§2.3).

Each call writes a new timestamped run directory and then moves the canonical
``<prepared_root>/<dataset>-<variant>`` symlinks to it (SynthDrivers: ``...-<settings key>``,
one link per generator/split/mapping setting, see :mod:`.synth_settings`), so a prepared
dataset is never modified after it is written and re-running prepare is safe. Every image
the masker cannot segment (or that cannot be decoded) is left out of *all* variants, so they
share image_ids and splits, and is listed in ``summary.json`` with the reason.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from ..errors import SageError
from ..maskers import Masker, build_masker, mask_box
from .annotations import mask_polygon, via_entry, yolo_box_line, yolo_polygon_line
from .labels import LabelMapping, load_mapping
from .prepared import META_COLUMNS, SPLITS, dataset_dirname, split_gaps
from .readers import read_raw, source_labels
from .splits import assign_splits
from .synth import generate
from .synth_settings import prepared_key, raw_dir, synth_config
from .variants import IMAGENET_FILL, VARIANTS, Sample, make_variants

log = logging.getLogger(__name__)

MAX_EXAMPLES = 20  # paths listed per skip reason in summary.json
MOSAIC_EXAMPLES = 4
# Variant images: zlib level 1 with the run-length strategy. PIL's default (level 6, default
# strategy) spent ~0.35 s per 640x480 image, most of prepare's time; this is ~7x faster and
# the files are no larger (PNG is lossless: the pixels are the same). Masks and parts, which
# are small and flat, keep PIL's default.
_PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


def ensure_raw(ds: Mapping) -> Path:
    """The raw root of dataset config ``ds``; SynthDrivers are generated (cached) on demand."""
    if ds.get("raw_root") is None:
        raise SageError(
            f"dataset {ds['name']} has no data root; pass dataset.root=/path/to/images "
            "(a folder of class subfolders)"
        )
    raw_root = Path(ds["raw_root"])
    if ds.get("synth"):
        return generate(raw_dir(ds), synth_config(ds))
    if not raw_root.is_dir():
        raise SageError(
            f"data root {raw_root} does not exist (dataset {ds['name']}); "
            f"set dataset.raw_root=/path/to/{ds['name']}"
        )
    return raw_root


class SkipLog:
    """Images left out of the prepared dataset, by reason, with example paths."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, path: str, detail: str = "") -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        examples = self.examples.setdefault(reason, [])
        if len(examples) < MAX_EXAMPLES:
            examples.append(f"{path}: {detail}" if detail else path)

    def as_dict(self) -> dict:
        return {r: {"count": n, "examples": self.examples[r]} for r, n in self.counts.items()}


def folder_mapping(labels: Sequence[str], name: str) -> LabelMapping:
    """The identity mapping over a reader's source labels (``dataset.mapping: null``): each
    class folder is a class, its name both the code and the display name, in sorted order.
    Merging, renaming or dropping classes takes a mapping file (``sage/data/labels.py``)."""
    labels = sorted(labels)
    if not labels:
        raise SageError(f"dataset {name}: no class folders holding images")
    return LabelMapping(
        name=f"{name}-class-folders",
        unified={c: c for c in labels},
        forward={c: c for c in labels},
    )


def _full_frame_variants(masker: Masker, variants: Sequence[str]) -> dict[str, str]:
    """Variants left out because ``masker`` has no real masks, with the reason: a box around
    the whole frame, or a cut-out of it, is the full image again."""
    if getattr(masker, "real_masks", True):
        return {}
    if "full" not in variants:
        raise SageError(
            f"masker {masker.name} has no masks, so only the full variant can be prepared "
            f"(asked: {list(variants)}); add full to prepare.variants or use a real masker"
        )
    reason = f"masker {masker.name} has no masks: the variant would be the full image"
    return {v: reason for v in variants if v != "full"}


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


def _write_variant(out: Path, variant: str, row, sample: Sample) -> tuple[str, dict, str, float]:
    """Write one image of one variant (image, mask, parts, YOLO files) under ``out``; return
    what the writer books: the VIA entry, the box and the foreground fraction. Runs in the
    prepare workers; every file it writes belongs to this image alone."""
    image_id = row.image_id
    if variant == "full":  # keep the source bytes: no re-encoding loss
        image_file = out / "images" / f"{image_id}{Path(row.source_path).suffix.lower()}"
        shutil.copyfile(row.source_path, image_file)
    else:  # PNG: a lossy codec would bleed the fill into the foreground edge
        image_file = out / "images" / f"{image_id}.png"
        _write_rgb_png(image_file, sample.image)
    Image.fromarray(sample.mask.astype(np.uint8) * 255).save(out / "masks" / f"{image_id}.png")
    if sample.parts is not None:
        Image.fromarray(sample.parts).save(out / "parts" / f"{image_id}.png")
    box, shape = mask_box(sample.mask), sample.mask.shape
    polygon = mask_polygon(sample.mask)
    (out / "annotations/yolo" / f"{image_id}.txt").write_text(yolo_box_line(box, shape))
    if len(polygon) >= 3:
        (out / "annotations/yolo_seg" / f"{image_id}.txt").write_text(
            yolo_polygon_line(polygon, shape)
        )
    key, entry = via_entry(image_file.name, image_file.stat().st_size, box, polygon, row.label_name)
    return key, entry, " ".join(map(str, box)), float(sample.mask.mean())


def _process_chunk(
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
        records = {v: _write_variant(outs[v], v, row, out) for v, out in produced.items()}
        events.append(("kept", row.Index, row.image_id, records))
    return events


# The masker of a prepare worker process, built once from its config by _init_worker.
_WORKER: dict[str, Masker] = {}


def _init_worker(masker_cfg: Mapping) -> None:
    cv2.setNumThreads(1)  # the pool is the parallelism; OpenCV's own threads would oversubscribe
    _WORKER["masker"] = build_masker(dict(masker_cfg))


def resolve_workers(workers: int | str, n_images: int, masker_cfg: Mapping | None) -> int:
    """Worker processes: ``auto`` is one per core for 256+ images (below that, starting them
    costs more than it saves). A masker given as an object runs in this process."""
    if masker_cfg is None:
        return 1
    if workers == "auto":
        return min(os.cpu_count() or 1, 8) if n_images >= 256 else 1
    if not isinstance(workers, int) or workers < 1:
        raise SageError(f"prepare.workers must be a positive integer or 'auto', got {workers!r}")
    return workers


@contextmanager
def _pool(masker_cfg: Mapping | None, n_workers: int) -> Iterator[ProcessPoolExecutor | None]:
    """Worker processes for prepare, or ``None`` to work in this process.

    Spawned, not forked: the parent may hold torch/OpenMP threads (prepare runs inside
    training on first use), which a forked child can deadlock on.
    """
    if n_workers <= 1:
        yield None
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(n_workers, ctx, _init_worker, (dict(masker_cfg),)) as pool:
        yield pool


class _VariantWriter:
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


def _point_symlink(link: Path, target: Path) -> None:
    """Atomically (re)point ``link`` at ``target`` (relative, so the tree can move)."""
    if link.exists() and not link.is_symlink():
        raise SageError(f"{link} exists and is not a symlink; move it away")
    tmp = link.with_name(f".{link.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target, link.parent))
    os.replace(tmp, link)


def prepare_dataset(
    ds: Mapping,
    *,
    variants: Sequence[str] = VARIANTS,
    masker: Masker | Mapping | None = None,
    margin: float = 0.1,
    fill: Sequence[int] = IMAGENET_FILL,
    batch_size: int = 32,
    run_name: str | None = None,
    show_progress: bool = True,
    workers: int | str = "auto",
) -> dict[str, Path]:
    """Prepare dataset config ``ds`` in every variant; return ``{variant: canonical path}``.

    ``ds`` needs ``name``, ``reader``, ``raw_root``, ``mapping``, ``prepared_root`` and
    ``split`` (see ``sage/conf/dataset``); ``reader_options`` and ``synth`` are optional. The masker
    defaults to ``gt`` (masks shipped with the dataset). ``workers``: processes that load,
    mask and write images (``auto``: one per core for 256+ images); the output is identical to
    a serial run's.
    """
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        raise SageError(f"unknown variants {unknown or '[]'}; known: {list(VARIANTS)}")
    masker_cfg = (
        {"name": "gt"} if masker is None else dict(masker) if isinstance(masker, Mapping) else None
    )
    if masker_cfg is not None:
        masker = build_masker(masker_cfg)
    skipped_variants = _full_frame_variants(masker, variants)
    variants = [v for v in variants if v not in skipped_variants]
    for variant, reason in skipped_variants.items():
        log.warning("prepared %s: no %s variant (%s)", ds["name"], variant, reason)
    raw_root = ensure_raw(ds)
    df = read_raw(ds["reader"], raw_root, **dict(ds.get("reader_options") or {}))
    reader_report = df.attrs.get("report", {})
    vocabulary = source_labels(ds["reader"], raw_root)
    if ds.get("mapping") is None:  # no mapping file: the class folders are the classes
        mapping = folder_mapping(vocabulary, ds["name"])
    else:
        mapping = load_mapping(ds["mapping"])
    mapping.validate(vocabulary)
    df, mapping_report = mapping.apply(df)
    if ds.get("num_classes") is not None and int(ds["num_classes"]) != len(mapping.classes):
        raise SageError(
            f"dataset.num_classes={ds['num_classes']} but mapping {mapping.name!r} "
            f"has {len(mapping.classes)} classes"
        )
    df, split_report = assign_splits(df, ds["split"])
    rows = df.reset_index(drop=True)

    prepared_root = Path(ds["prepared_root"])
    run_name = run_name or time.strftime("prepare-%Y%m%d-%H%M%S") + f"-{time.time_ns() % 10**6:06d}"
    run_dir = prepared_root / "runs" / run_name
    writers = {v: _VariantWriter(run_dir / dataset_dirname(ds["name"], v), v) for v in variants}
    skips, kept = SkipLog(), []
    progress = tqdm(total=len(rows), desc=f"prepare {ds['name']}", disable=not show_progress)
    chunks = [
        [SimpleNamespace(**row._asdict()) for row in rows.iloc[s : s + batch_size].itertuples()]
        for s in range(0, len(rows), batch_size)
    ]
    n_workers = resolve_workers(workers, len(rows), masker_cfg)
    work = partial(
        _process_chunk,
        variants=tuple(variants),
        margin=margin,
        fill=tuple(fill),
        outs={v: w.out for v, w in writers.items()},
    )
    # results come back in chunk order, so the output (and the skip log) is the serial one
    with _pool(masker_cfg, n_workers) as pool:
        results = pool.map(work, chunks) if pool else (work(chunk, masker) for chunk in chunks)
        for chunk, events in zip(chunks, results, strict=True):
            for event in events:
                if event[0] == "skip":
                    skips.add(*event[1:])
                else:
                    _, index, image_id, records = event
                    for variant, record in records.items():
                        writers[variant].add(image_id, record)
                    kept.append(index)
            progress.update(len(chunk))
        progress.close()

        rows = rows.loc[kept]
        if rows.empty:
            raise SageError(
                f"no usable image in {raw_root} (masker {masker.name}); skipped: {skips.counts}"
            )
        summary = {
            "dataset": ds["name"],
            "raw_root": str(raw_root),
            "reader": reader_report,
            "mapping": {**mapping_report, "reverse": mapping.reverse},
            "splits": split_report,
            "masker": masker_cfg or {"name": masker.name},
            # False: the masks are the whole frame (masker none); region metrics are skipped
            "has_masks": bool(getattr(masker, "real_masks", True)),
            "skipped_variants": skipped_variants,
            "variant_options": {"margin": margin, "fill": list(fill)},
            "skipped": skips.as_dict(),
            "n_skipped": sum(skips.counts.values()),
            "config": json.loads(json.dumps(dict(ds), default=str)),
            "seed": ds["split"].get("seed", 0),
        }
        classes = mapping.classes
        names = [mapping.unified[c] for c in classes]
        links = {}
        key = prepared_key(ds)
        legend = Path(f"{raw_root}_parts") / "legend.json"  # part names travel with the parts
        summary["gaps"] = split_gaps(rows, classes)
        for gap in summary["gaps"]:
            log.warning(
                "prepared %s: %s (training will refuse it unless data.allow_gaps=true)",
                ds["name"],
                gap,
            )
        # each variant's meta, index and mosaics: independent, so in the workers too
        finishing = [
            pool.submit(w.finish, rows, classes, names, summary) if pool else None
            for w in writers.values()
        ]
        for (variant, writer), job in zip(writers.items(), finishing, strict=True):
            if job is None:
                writer.finish(rows, classes, names, summary)
            else:
                job.result()
            if legend.is_file():
                shutil.copyfile(legend, writer.out / "parts" / "legend.json")
            links[variant] = prepared_root / dataset_dirname(ds["name"], variant, key)
            _point_symlink(links[variant], writer.out)
    return links
