"""The prepare step: raw layout -> label mapping -> splits -> prepared dataset (DESIGN §2.3).

Each call writes a new timestamped run directory and then moves the canonical
``<prepared_root>/<dataset>-<variant>`` symlink to it, so a prepared dataset is never
modified after it is written and re-running prepare is safe.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from tqdm import tqdm

from ..errors import SageError
from .labels import load_mapping
from .prepared import META_COLUMNS, SPLITS, dataset_dirname
from .readers import read_raw, source_labels
from .splits import assign_splits
from .synth import SynthConfig, generate

MAX_EXAMPLES = 20  # paths listed per skip reason in summary.json


def ensure_raw(ds: Mapping) -> Path:
    """The raw root of dataset config ``ds``; SynthDrivers are generated (cached) on demand."""
    raw_root = Path(ds["raw_root"])
    synth = ds.get("synth")
    if synth:
        cfg = SynthConfig(**dict(synth))
        root = generate(raw_root.parent, cfg)
        if root != raw_root:
            raise SageError(f"dataset.raw_root={raw_root} must end in the domain name {cfg.domain}")
        return root
    if not raw_root.is_dir():
        raise SageError(
            f"data root {raw_root} does not exist (dataset {ds['name']}); "
            f"set dataset.raw_root=/path/to/{ds['name']}"
        )
    return raw_root


def _load_rgb(path: str) -> np.ndarray:
    with Image.open(path) as im:
        im.load()  # decode now so a truncated file fails here, not later in training
        return np.asarray(im.convert("RGB"))


def _load_mask(path: str, shape: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as im:
        mask = np.asarray(im.convert("L")) > 127
    if mask.shape != shape:
        raise ValueError(f"mask size {mask.shape[::-1]} differs from image size {shape[::-1]}")
    return mask


def _bbox(mask: np.ndarray) -> str:
    ys, xs = np.nonzero(mask)
    return f"{xs.min()} {ys.min()} {xs.max() + 1} {ys.max() + 1}"


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


def _write_variant_dir(out: Path, rows: pd.DataFrame, classes: list[str], names: list[str]) -> None:
    (out / "index").mkdir(parents=True, exist_ok=True)
    rows[META_COLUMNS].to_csv(out / "meta.csv", index=False)
    for split in SPLITS:
        ids = rows.loc[rows["split"] == split, "image_id"]
        (out / "index" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    (out / "classes.json").write_text(json.dumps({"classes": classes, "names": names}, indent=2))


def _point_symlink(link: Path, target: Path) -> None:
    """Atomically (re)point ``link`` at ``target`` (relative, so the tree can move)."""
    tmp = link.with_name(f".{link.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(os.path.relpath(target, link.parent))
    if link.exists() and not link.is_symlink():
        raise SageError(f"{link} exists and is not a symlink; move it away")
    os.replace(tmp, link)


def _counts(rows: pd.DataFrame) -> dict:
    table = rows.groupby(["split", "label_name"]).size()
    return {s: {c: int(n) for c, n in table[s].items()} for s in SPLITS if s in table.index}


def prepare_dataset(
    ds: Mapping,
    *,
    variants: Sequence[str] = ("full",),
    run_name: str | None = None,
    show_progress: bool = True,
) -> dict[str, Path]:
    """Prepare dataset config ``ds``; return ``{variant: canonical path}``.

    ``ds`` needs ``name``, ``reader``, ``raw_root``, ``mapping``, ``prepared_root`` and
    ``split`` (see ``conf/dataset``); ``reader_options`` and ``synth`` are optional.
    """
    unknown = sorted(set(variants) - {"full"})
    if unknown:
        raise SageError(f"unknown variants {unknown}; this step writes: full")
    raw_root = ensure_raw(ds)
    df = read_raw(ds["reader"], raw_root, **dict(ds.get("reader_options") or {}))
    reader_report = df.attrs.get("report", {})
    mapping = load_mapping(ds["mapping"])
    mapping.validate(source_labels(ds["reader"], raw_root))
    df, mapping_report = mapping.apply(df)
    if "num_classes" in ds and int(ds["num_classes"]) != len(mapping.classes):
        raise SageError(
            f"dataset.num_classes={ds['num_classes']} but mapping {mapping.name!r} "
            f"has {len(mapping.classes)} classes"
        )
    df, split_report = assign_splits(df, ds["split"])

    prepared_root = Path(ds["prepared_root"])
    run_name = run_name or time.strftime("prepare-%Y%m%d-%H%M%S") + f"-{time.time_ns() % 10**6:06d}"
    run_dir = prepared_root / "runs" / run_name
    skips = SkipLog()
    outs = {v: run_dir / dataset_dirname(ds["name"], v) for v in variants}
    for out in outs.values():
        for sub in ("images", "masks", "parts"):
            (out / sub).mkdir(parents=True, exist_ok=True)

    kept, bboxes, fg_fracs = [], [], []
    rows = df.reset_index(drop=True)
    for row in tqdm(rows.itertuples(), total=len(rows), desc=f"prepare {ds['name']}",
                    disable=not show_progress):
        try:
            rgb = _load_rgb(row.source_path)
        except Exception as err:  # PIL raises many types for corrupt files
            skips.add("corrupt_image", row.source_path, f"{type(err).__name__}: {err}")
            continue
        mask = None
        if isinstance(row.mask_path, str):
            try:
                mask = _load_mask(row.mask_path, rgb.shape[:2])
            except Exception as err:
                skips.add("bad_mask", row.mask_path, f"{type(err).__name__}: {err}")
                continue
            if not mask.any():
                skips.add("empty_foreground", row.source_path)
                continue
        for out in outs.values():
            suffix = Path(row.source_path).suffix.lower()
            shutil.copyfile(row.source_path, out / "images" / f"{row.image_id}{suffix}")
            if mask is not None:
                Image.fromarray((mask * 255).astype(np.uint8)).save(out / "masks" / f"{row.image_id}.png")
            if isinstance(row.parts_path, str):
                shutil.copyfile(row.parts_path, out / "parts" / f"{row.image_id}.png")
        kept.append(row.Index)
        bboxes.append(_bbox(mask) if mask is not None else "")
        fg_fracs.append(float(mask.mean()) if mask is not None else float("nan"))

    rows = rows.loc[kept].copy()
    rows["bbox"], rows["fg_fraction"] = bboxes, fg_fracs
    if rows.empty:
        raise SageError(f"no usable image in {raw_root}; skipped: {skips.counts}")
    fg = rows["fg_fraction"].dropna()
    for variant, out in outs.items():
        _write_variant_dir(out, rows, mapping.classes, [mapping.unified[c] for c in mapping.classes])
        summary = {
            "dataset": ds["name"],
            "variant": variant,
            "raw_root": str(raw_root),
            "n_images": len(rows),
            "counts": _counts(rows),
            "reader": reader_report,
            "mapping": {"name": mapping.name, **mapping_report, "reverse": mapping.reverse},
            "splits": split_report,
            "skipped": skips.as_dict(),
            "fg_pixel_fraction": {"mean": float(fg.mean()), "min": float(fg.min()),
                                  "max": float(fg.max())} if len(fg) else None,
            "fg_bg_pixel_ratio": float(fg.mean() / (1 - fg.mean())) if len(fg) else None,
            "config": json.loads(json.dumps(dict(ds), default=str)),
            "seed": ds["split"].get("seed", 0),
        }
        (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return {v: _link(prepared_root, ds["name"], v, out) for v, out in outs.items()}


def _link(prepared_root: Path, name: str, variant: str, out: Path) -> Path:
    link = prepared_root / dataset_dirname(name, variant)
    _point_symlink(link, out)
    return link
