"""Meta-evaluation: metric directions, the validity table on hand-computed scores, and explain's
``metrics=[..., meta]`` on SynthDrivers, where the ground-truth map must come first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_SYNTH
from sage.errors import SageError
from sage.explain import run as explain_run
from sage.metrics.directions import arrow, direction
from sage.metrics.meta_evaluation import bootstrap_mean, perturbed_copy, validity_table
from sage.saliency.methods import create_method
from sage.train import run as train_run

TIERS = {"gt": "ground_truth", "m": "method", "b": "baseline"}


def test_directions():
    assert direction("iou/fg") == 1 and direction("iou/spurious") == -1
    assert direction("saliency_precision/bg") == -1
    assert direction("iou/head") is None  # a single part: depends on the class
    assert direction("average_drop") == -1 and direction("road/morf") == -1
    assert direction("road") == 1 and direction("unknown_metric") is None
    assert direction("deletion") == -1 and direction("aopc/morf") == 1
    assert direction("rank_accuracy/fg") == 1 and direction("topk_intersection/spurious") == -1
    assert arrow("complexity") == "↓" and arrow("adcc") == "↑" and arrow("iou/head") == ""


def _frame(values: dict[str, list[float]], column: str = "iou/fg") -> pd.DataFrame:
    rows = [
        {"image_id": f"i{k}", "method": m, column: v}
        for m, vs in values.items()
        for k, v in enumerate(vs)
    ]
    return pd.DataFrame(rows)


def test_validity_table_hand_computed():
    # image 0: gt > m > b (2 of 2 pairs right); image 1: gt > m < b (1 of 2): mean 0.75
    frame = _frame({"gt": [0.9, 0.8], "m": [0.5, 0.2], "b": [0.1, 0.3]})
    row = validity_table(frame, TIERS, n_boot=200).iloc[0]
    assert row.metric == "iou/fg" and row.direction == "↑"
    assert row.mean_ground_truth == pytest.approx(0.85) and row.mean_baseline == pytest.approx(0.2)
    assert row.ordered and not row.trivial_first and row.best_map == "gt"
    assert row.pair_accuracy == pytest.approx(0.75)
    assert 0.5 <= row.pair_accuracy_lo <= 0.75 <= row.pair_accuracy_hi <= 1.0
    # the same numbers read as a lower-is-better metric: the baseline wins, and is flagged
    low = validity_table(
        _frame({"gt": [0.9, 0.8], "m": [0.5, 0.2], "b": [0.1, 0.3]}, "complexity"), TIERS
    )
    assert not low.ordered[0] and low.trivial_first[0] and low.best_map[0] == "b"
    assert low.pair_accuracy[0] == pytest.approx(0.25)


def test_ties_count_half_and_unknown_directions_are_skipped():
    frame = _frame({"gt": [0.5], "m": [0.5], "b": [0.5]})
    frame["iou/head"] = 1.0
    table = validity_table(frame, TIERS)
    assert list(table.metric) == ["iou/fg"] and table.pair_accuracy[0] == pytest.approx(0.5)


def test_resilience_and_reactivity_in_units_of_spread():
    base = _frame({"gt": [0.0, 1.0], "m": [0.0, 1.0], "b": [0.0, 1.0]})  # std 0.5
    moved = base.assign(**{"iou/fg": base["iou/fg"] + 0.1})
    far = base.assign(**{"iou/fg": 1 - base["iou/fg"]})
    row = validity_table(base, TIERS, perturbed=moved, randomised=far).iloc[0]
    assert row.noise_resilience == pytest.approx(0.2) and row.reactivity == pytest.approx(2.0)


def test_bootstrap_mean_brackets_the_mean():
    values = np.array([0.0, 1.0] * 50)
    lo, hi = bootstrap_mean(values, 2000, seed=1)
    assert lo < 0.5 < hi and hi - lo < 0.3
    assert np.isnan(bootstrap_mean(np.array([np.nan]))[0])


def test_perturbed_copy_leaves_the_original_alone():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    twin = perturbed_copy(net, 0.01, seed=0)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k])
    delta = (twin[0].weight - net[0].weight).std() / net[0].weight.std()
    assert 0.002 < float(delta) < 0.05


def test_ground_truth_method_returns_what_it_is_given():
    method = create_method("ground_truth")
    images = torch.zeros(2, 3, 8, 8)
    with pytest.raises(SageError, match="discriminative part masks"):
        method(torch.nn.Identity(), images)
    gt = torch.zeros(2, 8, 8, dtype=torch.bool)
    gt[:, 2:4, 2:4] = True
    method.provide(gt)
    assert torch.equal(method(torch.nn.Identity(), images), gt.float())


@pytest.fixture
def checkpoint(compose_cfg, tmp_path) -> Path:
    fast = [*TINY_SYNTH, "debug=fast", "model.input_size=32", "data.batch_size=8"]
    train_run(compose_cfg("train", fast))
    return next((tmp_path / "run" / "checkpoints").glob("last*.ckpt"))


def test_explain_meta_ranks_the_ground_truth_first_for_alignment(compose_cfg, checkpoint):
    cfg = compose_cfg(
        "explain",
        [
            f"checkpoint={checkpoint}",
            "cam=[gradcam,ones_but_one,random]",
            "metrics=[alignment,faithfulness,cose,meta]",  # COSE: the answer key sits it out
            "metrics.meta.n_boot=200",
            "progress=false",
            "overlays=0",
        ],
    )
    result = explain_run(cfg)
    out = Path(cfg.paths.output_dir)
    table = pd.read_csv(out / "meta_validity.csv").set_index("metric")
    # the A_fg-type mass and the pointing game credit the discriminative parts most; (Δ density
    # and IoU against the whole driver reward covering the driver instead, and need not)
    # (pointing game: GradCAM's peak may land on the parts too, a tie at 1.0 on tiny data)
    for metric in ("saliency_precision/fg", "pointing_game/fg"):
        row = table.loc[metric]
        assert row.mean_ground_truth >= max(row.mean_method, row.mean_baseline), metric
    assert table.loc["saliency_precision/fg", "best_map"] == "ground_truth"
    assert bool(table.loc["saliency_precision/fg", "ordered"])
    # known from the ARCC paper: All1s fools Average Drop; the table says so
    assert bool(table.loc["average_drop", "trivial_first"])
    assert table.reactivity.notna().any() and table.noise_resilience.notna().any()
    for name in ("perturbed", "randomised"):
        assert (out / f"metrics_{name}_model.csv").exists()
    assert "ground_truth" in set(pd.read_csv(out / "metrics.csv").method)
    pooled = json.loads((out / "pooled_metrics.json").read_text())
    assert "explain/gradcam/cose" in pooled and "explain/ground_truth/cose" not in pooled
    assert 0 <= result["explain/meta/ordered_fraction"] <= 1
