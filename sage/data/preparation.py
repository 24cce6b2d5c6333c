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

from tqdm import tqdm

from ..errors import SageError
from ..maskers import Masker, build_masker
from .labels import LabelMapping, load_mapping
from .prepare_worker import VariantWriter, init_worker, process_chunk
from .prepared import dataset_dirname, split_gaps
from .readers import read_raw, source_labels
from .splits import assign_splits
from .synth import generate
from .synth_settings import prepared_key, raw_dir, synth_config
from .variants import IMAGENET_FILL, VARIANTS

log = logging.getLogger(__name__)

MAX_EXAMPLES = 20  # paths listed per skip reason in summary.json


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


def chunk_size(n_images: int, n_workers: int, batch_size: int) -> int:
    """Images per task: the masker's batch, smaller with workers so each gets 32+ tasks and
    the last ones end together (a 32-image chunk of 640x480 images is ~2.5 s of one core
    idling at the end)."""
    if n_workers <= 1:
        return batch_size
    return max(1, min(batch_size, -(-n_images // (n_workers * 32))))


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
    with ProcessPoolExecutor(n_workers, ctx, init_worker, (dict(masker_cfg),)) as pool:
        yield pool


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
    writers = {v: VariantWriter(run_dir / dataset_dirname(ds["name"], v), v) for v in variants}
    skips, kept = SkipLog(), []
    progress = tqdm(total=len(rows), desc=f"prepare {ds['name']}", disable=not show_progress)
    n_workers = resolve_workers(workers, len(rows), masker_cfg)
    step = chunk_size(len(rows), n_workers, batch_size)
    chunks = [
        [SimpleNamespace(**row._asdict()) for row in rows.iloc[s : s + step].itertuples()]
        for s in range(0, len(rows), step)
    ]
    work = partial(
        process_chunk,
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
