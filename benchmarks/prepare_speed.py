"""Benchmark: prepare with worker processes against the serial run, on generated SynthDrivers.

Generates SynthDrivers (``--images-per-class``, cached), then prepares all four variants
serially and with ``--workers`` processes, interleaved (serial, parallel, serial, ...) so load
bursts hit both sides; reports the fastest and median of each and their ratio, and checks
that both runs wrote the same meta.csv and annotations (tests/test_prepare.py compares every
file). Usage:

    python benchmarks/prepare_speed.py [--images-per-class 200] [--workers 2] [--repeats 2]
        [--size 640 480] [--n-subjects 26] [--root DIR] [--out FILE.json]
        [--from-raw outputs/benchmarks/scale/outputs/data/raw/synth-sf3d-KEY/synth-sf3d]

``--from-raw`` takes the first ``--images-per-class`` images of each class of an already
generated synth-sf3d tree (``synth_meta.csv`` order, where the subjects take turns, so every
subject is in the subset) as hard links, and prepares them as an SF3D copy: the same images
as that tree's, nothing rendered.

Writes outputs/benchmarks/prepare_speed.json (or ``--out``).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from sage.compose import compose_task
from sage.data.preparation import prepare_dataset, resolve_workers
from sage.data.synth import META, generate
from sage.data.synth_settings import raw_dir, synth_config


def subset_tree(src: Path, per_class: int, parent: Path) -> Path:
    """Hard-linked SF3D copy of the first ``per_class`` images per class of synth-sf3d tree
    ``src`` (with its ``_masks``/``_parts`` siblings) under ``parent``; reused when complete."""
    dest = parent / src.name
    listing = dest / "driver_imgs_list.csv"
    if listing.is_file():  # written last
        return dest
    meta = pd.read_csv(src / META)
    chosen = meta[meta["split"] == "train"].groupby("class", sort=False).head(per_class)
    for rel in chosen["path"]:
        for suffix, name in (("", rel), ("_masks", None), ("_parts", None)):
            name = name or str(Path(rel).with_suffix(".png"))
            target = parent / f"{src.name}{suffix}" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                os.link(src.with_name(src.name + suffix) / name, target)
    legend = src.with_name(src.name + "_parts") / "legend.json"
    (parent / f"{src.name}_parts" / "legend.json").write_bytes(legend.read_bytes())
    (dest / "imgs" / "test").mkdir(parents=True, exist_ok=True)
    names = set(zip(chosen["class"], chosen["path"].map(lambda r: Path(r).name), strict=True))
    rows = pd.read_csv(src / "driver_imgs_list.csv")
    keep = [(c, i) in names for c, i in zip(rows["classname"], rows["img"], strict=True)]
    rows[keep].to_csv(listing, index=False, lineterminator="\n")
    return dest


def _busy(_: int) -> int:
    """Pure CPU work on a 640x480 image-sized array (compression, like PNG encoding)."""
    frame = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    return sum(len(zlib.compress((frame + k).tobytes(), 1)) for k in range(40))


def machine_ceiling(workers: int, tasks: int = 8) -> float:
    """Speed-up of ``workers`` spawned processes over one on work with no serial part at all:
    the most any parallel prepare can get on this machine right now (vCPUs shared with other
    tenants or hyperthreads give less than ``workers``x)."""
    start = time.perf_counter()
    for k in range(tasks):
        _busy(k)
    serial = time.perf_counter() - start
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(_busy, range(workers))  # start-up is not what is measured here
        start = time.perf_counter()
        pool.map(_busy, range(tasks), chunksize=1)
        parallel = time.perf_counter() - start
    return serial / parallel


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images-per-class", type=int, default=200)
    ap.add_argument("--workers", default="auto", help="an int, or auto (what prepare uses)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--size", type=int, nargs="+", default=[128], help="side, or W H")
    ap.add_argument("--n-subjects", type=int, default=20)
    ap.add_argument("--root", default="outputs/benchmarks/prepare_speed")
    ap.add_argument("--out", default="outputs/benchmarks/prepare_speed.json")
    ap.add_argument("--from-raw", help="a generated synth-sf3d root to take the images from")
    args = ap.parse_args()
    root = Path(args.root).resolve()
    size = args.size[0] if len(args.size) == 1 else f"[{args.size[0]},{args.size[1]}]"
    cfg = compose_task(
        "prepare",
        [
            f"paths.root_dir={root}",
            f"dataset.synth.images_per_class={args.images_per_class}",
            f"dataset.synth.n_subjects={args.n_subjects}",
            f"dataset.synth.size={size}",
        ],
        output_dir=str(root / "run"),
    )
    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    if args.from_raw:  # an SF3D copy of images already rendered
        parent = root / f"raw-subset-{args.images_per_class}"
        ds.update(
            synth=None,
            raw_root=str(subset_tree(Path(args.from_raw), args.images_per_class, parent)),
        )
    else:  # generation is not part of the comparison (cached; rendered on every core)
        generate(raw_dir(ds), synth_config(ds), workers=os.cpu_count() or 1)
    n_raw = 10 * args.images_per_class
    workers = args.workers if args.workers == "auto" else int(args.workers)
    n_parallel = resolve_workers(workers, n_raw, {"name": "gt"})
    times: dict[int, list[float]] = {1: [], n_parallel: []}
    ceiling: list[float] = []
    for repeat in range(args.repeats):
        for w in times:
            start = time.perf_counter()
            prepare_dataset(ds, workers=w, run_name=f"w{w}-r{repeat}", show_progress=False)
            times[w].append(time.perf_counter() - start)
        ceiling.append(machine_ceiling(n_parallel))
    runs = Path(ds["prepared_root"]) / "runs"
    compared = [f"{v}/{f}" for v in ("full", "seg") for f in ("meta.csv", "annotations/via.json")]
    written = {
        w: [(runs / f"w{w}-r0/{ds['name']}-{f}").read_bytes() for f in compared] for w in times
    }
    n_images = written[1][0].count(b"\n") - 1
    # each repeat wrote a full prepared copy (~5 GB per 1,000 640x480 images and 2 runs):
    # compared, they are not needed, and a few benchmark runs would fill the disk
    shutil.rmtree(runs, ignore_errors=True)
    serial, parallel = min(times[1]), min(times[n_parallel])
    result = {
        "images": n_images,
        "size": None if args.from_raw else args.size,  # --from-raw: the tree's own size
        "from_raw": args.from_raw,
        "workers": n_parallel,
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "serial_s": {"min": serial, "median": statistics.median(times[1]), "all": times[1]},
        "parallel_s": {
            "min": parallel,
            "median": statistics.median(times[n_parallel]),
            "all": times[n_parallel],
        },
        "speedup_min": serial / parallel,
        "speedup_median": statistics.median(times[1]) / statistics.median(times[n_parallel]),
        "images_per_s": {"serial": n_images / serial, "parallel": n_images / parallel},
        "identical": written[1] == written[n_parallel],
        # what this machine gives a job with no serial part at all, measured between repeats
        "machine_ceiling": {"max": max(ceiling), "median": statistics.median(ceiling)},
        "share_of_ceiling": (serial / parallel) / max(ceiling),
        "compared": compared,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"prepare, {n_images} images x 4 variants, {os.cpu_count()} CPUs: serial {serial:.1f} s "
        f"({n_images / serial:.0f} img/s), {n_parallel} workers {parallel:.1f} s "
        f"({n_images / parallel:.0f} img/s): {serial / parallel:.2f}x faster (median "
        f"{result['speedup_median']:.2f}x); identical output: {result['identical']}; "
        f"machine ceiling (no serial part) {max(ceiling):.2f}x (median "
        f"{statistics.median(ceiling):.2f}x)"
    )


if __name__ == "__main__":
    main()
