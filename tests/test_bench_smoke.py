"""Smoke test of the peer benchmark suite (benchmarks/peer_suite.py) and hand-checked agreements.

The suite runs in ``--quick`` mode with tiny sizes in a subprocess (as ``make bench`` runs it);
the JSON must hold every comparison row with finite agreement values. The hand checks pin the
definitions the report states: on maps with a known maximum SAGE's pointing game and Quantus'
agree, and on a maximum tied across the mask boundary they differ as documented.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

quantus = pytest.importorskip("quantus")

from sage.metrics.alignment import pointing_game, saliency_precision  # noqa: E402
from sage.saliency.normalize import normalize_batch  # noqa: E402
from sage.saliency.tokens import tokenize_grids  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"

EXPECTED_KEYS = {
    "gradcam_pipeline",
    "road",
    "arcc",
    "pointing_game",
    "relevance_mass",
    "attribution_localisation",
    "integrated_gradients",
    # the faithfulness / complexity catalogue against Quantus
    "sparseness",
    "effective_complexity",
    "rank_accuracy",
    "topk_intersection",
    "aopc_morf",
    "deletion",
}


def _quantus(metric, maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    b, h, w = maps.shape
    x = np.zeros((b, 3, h, w), dtype=np.float32)
    y = np.zeros(b, dtype=np.int64)
    out = metric(
        model=None, x_batch=x, y_batch=y, a_batch=maps, s_batch=masks[:, None], channel_first=True
    )
    return np.asarray(out, dtype=np.float64)


def test_pointing_game_known_max_agrees_with_quantus():
    maps = torch.zeros(2, 8, 8)
    maps[:, 3, 5] = 2.0  # the unique maximum
    maps[:, 6, 1] = 1.0
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[0, 2:5, 4:7] = True  # covers (3, 5): a hit
    masks[1, 5:8, 0:3] = True  # covers only the second peak: a miss
    sage = pointing_game(maps, masks).numpy()
    peer = _quantus(quantus.PointingGame(disable_warnings=True), maps.numpy(), masks.numpy())
    assert sage.tolist() == [1.0, 0.0]
    assert peer.tolist() == [1.0, 0.0]


def test_pointing_game_tie_across_the_boundary_is_the_documented_difference():
    maps = torch.zeros(1, 4, 4)
    maps[0, 0, 0] = maps[0, 3, 3] = 1.0  # tied maxima; the first (row-major) is outside
    masks = torch.zeros(1, 4, 4, dtype=torch.bool)
    masks[0, 3, 3] = True
    assert pointing_game(maps, masks).tolist() == [0.0]  # SAGE: the first argmax
    peer = _quantus(quantus.PointingGame(disable_warnings=True), maps.numpy(), masks.numpy())
    assert peer.tolist() == [1.0]  # Quantus: any pixel tied at the max


def test_relevance_mass_by_hand_matches_quantus_on_the_minmax_map():
    maps = torch.tensor([[[1.0, 3.0], [5.0, 2.0]]])  # min-max: [[0, 0.5], [1, 0.25]]
    masks = torch.tensor([[[False, True], [True, False]]])
    expected = (0.5 + 1.0) / (0.5 + 1.0 + 0.25)
    assert saliency_precision(maps, masks).item() == pytest.approx(expected)
    scaled = np.array([[[0.0, 0.5], [1.0, 0.25]]], dtype=np.float32)
    q = _quantus(quantus.RelevanceMassAccuracy(disable_warnings=True), scaled, masks.numpy())
    assert q[0] == pytest.approx(expected, rel=1e-6)


def test_numpy_peer_tokens_equal_sage_tokens(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from peers.gradcam_pipeline import numpy_fg_tokens

    gen = torch.Generator().manual_seed(0)
    maps = torch.rand(2, 30, 37, generator=gen) - 0.3  # sizes not divisible by the grids
    masks = torch.rand(2, 30, 37, generator=gen) > 0.6
    sb = normalize_batch(maps, masks)
    tokens = tokenize_grids(sb.pdf, masks)
    for i in range(2):
        a_fg, tok = numpy_fg_tokens(sb.pdf[i].double().numpy(), masks[i].numpy())
        assert a_fg == pytest.approx(sb.a_fg[i].item(), abs=1e-6)
        for grid, arr in tok.items():
            np.testing.assert_allclose(arr, tokens[grid][i].numpy(), atol=1e-6)


def test_interleaved_timing_counts_and_calibrates(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    from timing import interleaved, ratio

    calls = {"a": 0, "b": 0}

    def step(name):
        def run():
            calls[name] += 1

        return run

    t = interleaved({"a": (step("a"), 4), "b": (step("b"), 2)}, repeats=3, min_time=0.0)
    assert [len(t[k].seconds) for k in "ab"] == [3, 3]
    assert calls == {"a": 4, "b": 4}  # one warm-up + three repeats each
    assert t["a"].images == 4 and set(ratio(t["a"], t["b"])) == {"min", "median"}


@pytest.mark.slow
def test_peer_suite_quick_runs_and_agrees(tmp_path):
    cmd = [
        sys.executable,
        str(BENCH / "peer_suite.py"),
        "--quick",
        "--models", "small_cnn",
        "--size", "32",
        "--batch", "2",
        "--repeats", "1",
        "--min-time", "0",
        "--loop-images", "1",
        "--ig-steps", "2",
        "--scaling-batches", "1", "2",
        "--scaling-sizes", "32",
        "--scaling-loop-images", "1",
        "--skip-training",
        "--out", str(tmp_path),
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((tmp_path / "peer_suite.json").read_text())
    rows = {r["key"]: r for r in result["rows"]}
    assert set(rows) >= EXPECTED_KEYS
    for key in EXPECTED_KEYS:
        row = rows[key]
        assert "error" not in row, row
        gap = row["agreement"]["max_abs_diff"]
        assert gap is not None and math.isfinite(gap), (key, gap)
        for name in ("sage_over_peer", "sage_over_floor"):
            assert math.isfinite(row["ratios"][name]["min"]), (key, name)
    # where the definitions match, the scores agree (ROAD: CG imputation vs exact solve)
    for key in ("road", "arcc", "relevance_mass", "attribution_localisation"):
        assert rows[key]["agreement"]["max_abs_diff"] < 1e-4, key
    assert rows["integrated_gradients"]["agreement"]["max_abs_diff"] < 1e-6
    # no training data in a fresh out dir: the callback row is a recorded skip, not a failure
    assert "skipped" in rows["callback"]
    assert {(c["size"], c["batch"]) for c in result["scaling"]} == {(32, 1), (32, 2)}
    md = (tmp_path / "peer_suite.md").read_text()
    assert "| model | comparison |" in md and "## Scaling" in md
