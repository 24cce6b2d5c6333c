"""Benchmark: prepare with worker processes against the serial run, on generated SynthDrivers.

Generates SynthDrivers (``--images-per-class``, cached), then prepares all four variants
serially and with ``--workers`` processes, interleaved (serial, parallel, serial, ...) so load
bursts hit both sides; reports the fastest and median of each and their ratio, and checks
that both runs wrote the same meta.csv and annotations (tests/test_prepare.py compares every
file). Usage:

    python benchmarks/prepare_speed.py [--images-per-class 200] [--workers 2] [--repeats 2]
        [--size 640 480] [--n-subjects 26] [--root DIR] [--out FILE.json]

Writes outputs/benchmarks/prepare_speed.json (or ``--out``).
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
from sage.data.preparation import prepare_dataset, resolve_workers
from sage.data.synth import generate
from sage.data.synth_settings import raw_dir, synth_config


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images-per-class", type=int, default=200)
    ap.add_argument("--workers", default="auto", help="an int, or auto (what prepare uses)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--size", type=int, nargs="+", default=[128], help="side, or W H")
    ap.add_argument("--n-subjects", type=int, default=20)
    ap.add_argument("--root", default="outputs/benchmarks/prepare_speed")
    ap.add_argument("--out", default="outputs/benchmarks/prepare_speed.json")
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
    # generation is not part of the comparison (cached; rendered on every core)
    generate(raw_dir(ds), synth_config(ds), workers=os.cpu_count() or 1)
    n_raw = 10 * args.images_per_class
    workers = args.workers if args.workers == "auto" else int(args.workers)
    n_parallel = resolve_workers(workers, n_raw, {"name": "gt"})
    times: dict[int, list[float]] = {1: [], n_parallel: []}
    for repeat in range(args.repeats):
        for w in times:
            start = time.perf_counter()
            prepare_dataset(ds, workers=w, run_name=f"w{w}-r{repeat}", show_progress=False)
            times[w].append(time.perf_counter() - start)
    runs = Path(ds["prepared_root"]) / "runs"
    compared = [f"{v}/{f}" for v in ("full", "seg") for f in ("meta.csv", "annotations/via.json")]
    written = {
        w: [(runs / f"w{w}-r0/{ds['name']}-{f}").read_bytes() for f in compared] for w in times
    }
    n_images = written[1][0].count(b"\n") - 1
    serial, parallel = min(times[1]), min(times[n_parallel])
    result = {
        "images": n_images,
        "size": args.size,
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
        "compared": compared,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(
        f"prepare, {n_images} images x 4 variants, {os.cpu_count()} CPUs: serial {serial:.1f} s "
        f"({n_images / serial:.0f} img/s), {n_parallel} workers {parallel:.1f} s "
        f"({n_images / parallel:.0f} img/s): {serial / parallel:.2f}x faster (median "
        f"{result['speedup_median']:.2f}x); identical output: {result['identical']}"
    )


if __name__ == "__main__":
    main()
