"""Benchmark: the whole pipeline at the size of real SF3D (generate, prepare, train, explain).

Real SF3D has 22,424 labelled 640x480 images of 26 drivers. This script generates SynthDrivers
``synth-sf3d`` at that size (default 2,243 images per class = 22,430 labelled, plus the
unlabelled ``imgs/test`` images the SF3D reader leaves out, 26 subjects, 640x480; reused when
already generated with the same settings), then runs each stage as its own process, exactly as
a user would:

* ``generate``: ``python -m sage.data.synth`` (two rendering processes);
* ``prepare``: ``python -m sage.prepare`` with ``prepare.workers=auto``, all four variants;
* ``train``: ``python train.py model=resnet18`` (``--model``; random weights, 224 px, CPU),
  one epoch limited to ``--train-batches`` batches of 32 (and ``--val-batches`` validation
  batches), no validation callback, no test pass;
* ``explain``: ``python explain.py`` on the test split of the ``full`` variant, GradCAM with
  ``metrics=[alignment]``.

Per stage: images, seconds, images/s, peak RSS (the sum over the stage's process tree, polled
every 0.1 s, and the largest single process from ``os.wait4``), output size on disk (allocated
blocks) and file count; explain also its files per saliency method. Then prepare serially
and with ``workers=auto`` on the first ``--speed-images-per-class`` images of each class of the
same tree (``benchmarks/prepare_speed.py --from-raw``, interleaved), and on all of them with
``--speed-full``. Writes ``<root>/scale.json`` and ``<root>/scale.md`` and prints the table.

    python benchmarks/scale.py                       # full size: tens of minutes on 2 cores
    python benchmarks/scale.py --images-per-class 20 --size 96 72 --train-batches 1 --skip-speed
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
BATCH = 32  # train batch size (the train config's default)


def _tree_rss(proc: psutil.Process) -> int:
    """Resident bytes of ``proc`` and all its descendants now (0 for a vanished process)."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.Error):  # a worker that just exited
            total += p.memory_info().rss
    return total


def run_stage(name: str, argv: list[str], logs: Path) -> dict:
    """Run ``argv`` as a child process; return its seconds and peak RSS (tree sum and largest
    single process). Its output goes to ``logs/<name>.log``; a failure ends the benchmark
    with the log's last lines."""
    logs.mkdir(parents=True, exist_ok=True)
    log = logs / f"{name}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    peak = [0]
    done = threading.Event()
    with open(log, "w") as out:
        start = time.perf_counter()
        child = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        proc = psutil.Process(child.pid)

        def poll() -> None:  # the workers' memory counts too: the tree, not the parent alone
            while not done.wait(0.1):
                peak[0] = max(peak[0], _tree_rss(proc))

        watcher = threading.Thread(target=poll, daemon=True)
        watcher.start()
        # wait4 rather than Popen.wait: it returns the child's own rusage (ru_maxrss in KiB on
        # Linux: the largest of the child and the descendants it reaped)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - start
        done.set()
        watcher.join()
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise SystemExit(f"stage {name} failed (exit {child.returncode}); {log}:\n{tail}")
    return {
        "seconds": seconds,
        "peak_rss_mb": max(peak[0], usage.ru_maxrss * 1024) / 2**20,
        "peak_rss_process_mb": usage.ru_maxrss / 1024,
    }


def disk_usage(path: Path, *, part_of: str | None = None) -> tuple[int, int]:
    """(bytes allocated on disk, files) under ``path``; with ``part_of`` only the files whose
    relative path names it (a saliency method's shards, overlays, mosaics, tables)."""
    size = files = 0
    for base, _, names in os.walk(path):
        rel = Path(base).relative_to(path).parts
        for name in names:
            if part_of is not None and not any(part_of in p for p in (*rel, name)):
                continue
            st = os.lstat(os.path.join(base, name))
            size += st.st_blocks * 512
            files += 1
    return size, files


def _count_lines(path: Path) -> int:
    with open(path) as f:
        return sum(1 for _ in f)


def _row(stage: str, images: int, timing: dict, out: tuple[int, int], note: str) -> dict:
    return {
        "stage": stage,
        "images": images,
        "seconds": timing["seconds"],
        "images_per_s": images / timing["seconds"],
        "peak_rss_mb": timing["peak_rss_mb"],
        "peak_rss_process_mb": timing["peak_rss_process_mb"],
        "disk_mb": out[0] / 2**20,
        "files": out[1],
        "note": note,
    }


def markdown(rows: list[dict]) -> str:
    """The per-stage table as GitHub markdown."""
    lines = [
        "| stage | images | s | images/s | peak RSS MB (tree / largest process) "
        "| output MB on disk | files | notes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['stage']} | {r['images']:,} | {r['seconds']:.0f} | {r['images_per_s']:.1f} "
            f"| {r['peak_rss_mb']:,.0f} / {r['peak_rss_process_mb']:,.0f} "
            f"| {r['disk_mb']:,.0f} | {r['files']:,} | {r['note']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark; return what it writes to ``<root>/scale.json``."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images-per-class", type=int, default=2243, help="x10 labelled images")
    ap.add_argument("--size", type=int, nargs=2, default=[640, 480], metavar=("W", "H"))
    ap.add_argument("--n-subjects", type=int, default=26)
    ap.add_argument("--gen-workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--train-batches", type=int, default=64, help="train batches of 32")
    ap.add_argument("--val-batches", type=int, default=8, help="validation batches of 32")
    ap.add_argument("--model", default="resnet18", help="backbone (random weights)")
    ap.add_argument("--input-size", type=int, default=224, help="model input size")
    ap.add_argument("--explain-batch", type=int, default=32, help="explain batch (= shard) size")
    ap.add_argument("--speed-images-per-class", type=int, default=400)
    ap.add_argument("--speed-repeats", type=int, default=1)
    ap.add_argument("--speed-full", action="store_true", help="also serial vs auto on all images")
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--root", default="outputs/benchmarks/scale")
    args = ap.parse_args(argv)
    load_at_start = os.getloadavg()  # other jobs on the machine slow every stage down

    root = Path(args.root).resolve()
    logs, stages = root / "logs", root / "stages"
    py = sys.executable
    size = f"[{args.size[0]},{args.size[1]}]"
    data = [
        f"paths.root_dir={root}",
        "dataset=synth_sf3d/full",
        f"dataset.synth.images_per_class={args.images_per_class}",
        f"dataset.synth.n_subjects={args.n_subjects}",
        f"dataset.synth.size={size}",
    ]
    # where generate puts the raw tree and prepare the canonical links: the settings key
    from omegaconf import OmegaConf

    from sage.compose import compose_task
    from sage.data.preparation import resolve_workers
    from sage.data.prepared import dataset_dirname
    from sage.data.synth import MANIFEST
    from sage.data.synth_settings import prepared_key, raw_dir

    cfg = compose_task("prepare", data, output_dir=str(stages / "compose"))
    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    raw = raw_dir(ds)
    rows: list[dict] = []

    # generate (cached: the seconds of the run that wrote it are kept next to the tree)
    gen_record = raw / "generate_timing.json"
    manifest = raw / "synth-sf3d" / MANIFEST
    cached = manifest.is_file()
    timing = run_stage(
        "generate",
        [py, "-m", "sage.data.synth", "--out", str(raw), "--domain", "synth-sf3d",
         "--images-per-class", str(args.images_per_class), "--size", *map(str, args.size),
         "--n-subjects", str(args.n_subjects), "--workers", str(args.gen_workers)],
        logs,
    )  # fmt: skip
    if not cached:
        gen_record.write_text(json.dumps(timing))
    elif gen_record.is_file():
        timing = json.loads(gen_record.read_text())
    n_generated = json.loads(manifest.read_text())["n_images"]
    out = (0, 0)
    for suffix in ("", "_masks", "_parts"):
        part = disk_usage(raw / f"synth-sf3d{suffix}")
        out = (out[0] + part[0], out[1] + part[1])
    note = f"{args.size[0]}x{args.size[1]} JPEG + mask + parts PNG, {args.gen_workers} processes"
    if cached:
        note += " (cached" + ("; the run that wrote it)" if gen_record.is_file() else ")")
    rows.append(_row("generate", n_generated, timing, out, note))

    # prepare: all four variants, worker pool
    timing = run_stage(
        "prepare",
        [py, "-m", "sage.prepare", *data, "prepare.workers=auto", "prepare.progress=false",
         f"hydra.run.dir={stages / 'prepare'}"],
        logs,
    )  # fmt: skip
    link = Path(ds["prepared_root"]) / dataset_dirname(ds["name"], "full", prepared_key(ds))
    run_dir = link.resolve().parent
    n_prepared = _count_lines(link / "meta.csv") - 1
    rows.append(
        _row(
            "prepare",
            n_prepared,
            timing,
            disk_usage(run_dir),
            f"4 variants, workers=auto ({resolve_workers('auto', n_prepared, {})} processes)",
        )
    )

    # train: one epoch of resnet18 on the first train batches
    n_train = min(args.train_batches * BATCH, _count_lines(link / "index" / "train.txt"))
    train_dir = stages / "train"
    timing = run_stage(
        "train",
        [py, "train.py", *data, f"model={args.model}", f"model.input_size={args.input_size}",
         "trainer=cpu", "trainer.max_epochs=1",
         f"+trainer.limit_train_batches={args.train_batches}",
         f"+trainer.limit_val_batches={args.val_batches}", "test_after_fit=false",
         "~callbacks.sage", f"hydra.run.dir={train_dir}"],
        logs,
    )  # fmt: skip
    note = (
        f"{args.model}, random weights, {args.input_size} px, 1 epoch of {args.train_batches} "
        f"batches x {BATCH} (+{args.val_batches} val batches), CPU"
    )
    rows.append(_row("train", n_train, timing, disk_usage(train_dir), note))

    # explain: the test split of the full variant, GradCAM + alignment
    n_test = _count_lines(link / "index" / "test.txt")
    explain_dir = stages / "explain"
    ckpt = train_dir / "checkpoints" / "last.ckpt"
    timing = run_stage(
        "explain",
        [py, "explain.py", f"paths.root_dir={root}", f"checkpoint={ckpt}", "cam=[gradcam]",
         "metrics=[alignment]", "split=test", f"batch_size={args.explain_batch}",
         "progress=false", f"hydra.run.dir={explain_dir}"],
        logs,
    )  # fmt: skip
    per_method = disk_usage(explain_dir, part_of="gradcam")[1]
    row = _row(
        "explain",
        n_test,
        timing,
        disk_usage(explain_dir),
        f"test split, GradCAM + alignment, batch {args.explain_batch}; "
        f"{per_method} files of method gradcam",
    )
    row["files_per_method"] = {"gradcam": per_method}
    rows.append(row)

    result: dict = {
        "date": date.today().isoformat(),
        "machine": {
            "cpus": os.cpu_count(),
            "gpu": False,
            "platform": platform.platform(),
            "python": platform.python_version(),
            "load_average_at_start": load_at_start,
        },
        "settings": vars(args),
        "stages": rows,
    }

    if not args.skip_speed:
        result["prepare_speed"] = []
        subsets = [args.speed_images_per_class] + (
            [args.images_per_class] if args.speed_full else []
        )
        for per_class in subsets:
            speed_json = root / f"prepare_speed_{per_class}.json"
            run_stage(
                f"prepare_speed_{per_class}",
                [py, "benchmarks/prepare_speed.py", "--images-per-class", str(per_class),
                 "--from-raw", str(raw / "synth-sf3d"), "--repeats", str(args.speed_repeats),
                 "--root", str(root / "speed"), "--out", str(speed_json)],
                logs,
            )  # fmt: skip
            result["prepare_speed"].append(json.loads(speed_json.read_text()))

    table = markdown(rows)
    lines = [
        f"SAGE at SF3D scale, {result['date']}, {os.cpu_count()} CPUs, no GPU "
        f"(load average at start {result['machine']['load_average_at_start'][0]:.2f})",
        "",
        table,
    ]
    for s in result.get("prepare_speed", []):
        lines.append(
            f"\nprepare serial vs workers=auto ({s['workers']} processes), {s['images']:,} images "
            f"x 4 variants: serial {s['serial_s']['min']:.0f} s, parallel "
            f"{s['parallel_s']['min']:.0f} s: {s['speedup_min']:.2f}x (identical output: "
            f"{s['identical']})"
        )
    text = "\n".join(lines) + "\n"
    (root / "scale.md").write_text(text)
    (root / "scale.json").write_text(json.dumps(result, indent=2, default=str))
    print(text)
    return result


if __name__ == "__main__":
    main()
