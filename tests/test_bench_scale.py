"""The scale benchmark (benchmarks/scale.py) at a tiny size: every stage runs as its own
process, the table has its columns, and explain's files per saliency method stay bounded
(one shard per batch, a fixed number of overlays), whatever the number of images."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = ["generate", "prepare", "train", "explain"]
COLUMNS = {
    "stage",
    "images",
    "seconds",
    "images_per_s",
    "peak_rss_mb",
    "peak_rss_process_mb",
    "disk_mb",
    "files",
    "note",
}


@pytest.mark.slow
def test_scale_benchmark_tiny(tmp_path):
    argv = [
        sys.executable,
        str(ROOT / "benchmarks" / "scale.py"),
        "--images-per-class", "20",
        "--size", "80", "60",
        "--n-subjects", "5",
        "--model", "small_cnn",
        "--input-size", "64",
        "--train-batches", "1",
        "--val-batches", "1",
        "--explain-batch", "8",
        "--skip-speed",
        "--root", str(tmp_path),
    ]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    result = json.loads((tmp_path / "scale.json").read_text())
    rows = result["stages"]
    assert [r["stage"] for r in rows] == STAGES
    for r in rows:
        assert r.keys() >= COLUMNS
        assert r["images"] > 0 and r["seconds"] > 0 and r["files"] > 0
        assert r["peak_rss_mb"] >= r["peak_rss_process_mb"] > 10
    by_stage = {r["stage"]: r for r in rows}
    assert by_stage["generate"]["images"] == 205  # 10 x 20 labelled + 5 unlabelled test images
    assert by_stage["prepare"]["images"] == 200
    assert by_stage["train"]["images"] == 32
    n_test = by_stage["explain"]["images"]
    # one shard per batch of 8, at most 24 overlays and a handful of tables and mosaics
    assert by_stage["explain"]["files_per_method"]["gradcam"] <= -(-n_test // 8) + 24 + 8
    table = (tmp_path / "scale.md").read_text()
    assert table.count("\n| ") == len(STAGES) + 1  # header and one row per stage
    assert "images/s" in table and "peak RSS" in table
    assert "80x60" in by_stage["generate"]["note"]
