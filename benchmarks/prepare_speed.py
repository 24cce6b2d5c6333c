"""Benchmark: prepare with worker processes against the serial run, on generated SynthDrivers.

Generates SynthDrivers (``--images-per-class``, cached), then prepares all four variants
serially and with ``--workers`` processes, interleaved (serial, parallel, serial, ...) so load
bursts hit both sides; reports the fastest and median of each and their ratio, and checks
that both runs wrote the same meta.csv. Usage:

    python benchmarks/prepare_speed.py [--images-per-class 200] [--workers 2] [--repeats 2]

Writes outputs/benchmarks/prepare_speed.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

from omegaconf import OmegaConf

from sage.compose import compose_task
from sage.data.preparation import ensure_raw, prepare_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images-per-class", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--root", default="outputs/benchmarks/prepare_speed")
    args = ap.parse_args()
    root = Path(args.root).resolve()
    cfg = compose_task(
        "prepare",
        [f"paths.root_dir={root}", f"dataset.synth.images_per_class={args.images_per_class}"],
        output_dir=str(root / "run"),
    )
    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    ensure_raw(ds)  # generation is not part of the comparison
    times: dict[int, list[float]] = {1: [], args.workers: []}
    for repeat in range(args.repeats):
        for workers in times:
            start = time.perf_counter()
            prepare_dataset(
                ds, workers=workers, run_name=f"w{workers}-r{repeat}", show_progress=False
            )
            times[workers].append(time.perf_counter() - start)
    runs = root / "outputs/data/prepared/runs"
    metas = {w: (runs / f"w{w}-r0/{ds['name']}-full/meta.csv").read_bytes() for w in times}
    n_images = metas[1].count(b"\n") - 1
    serial, parallel = min(times[1]), min(times[args.workers])
    result = {
        "images": n_images,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "serial_s": {"min": serial, "median": statistics.median(times[1])},
        "parallel_s": {"min": parallel, "median": statistics.median(times[args.workers])},
        "speedup_min": serial / parallel,
        "speedup_median": statistics.median(times[1]) / statistics.median(times[args.workers]),
        "images_per_s": {"serial": n_images / serial, "parallel": n_images / parallel},
        "identical_meta": metas[1] == metas[args.workers],
    }
    out = Path("outputs/benchmarks/prepare_speed.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"prepare, {n_images} images x 4 variants, {os.cpu_count()} CPUs: serial {serial:.1f} s "
        f"({n_images / serial:.0f} img/s), {args.workers} workers {parallel:.1f} s "
        f"({n_images / parallel:.0f} img/s): {serial / parallel:.2f}x faster (median "
        f"{result['speedup_median']:.2f}x); identical output: {result['identical_meta']}"
    )


if __name__ == "__main__":
    main()
