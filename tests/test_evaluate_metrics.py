"""Evaluation building blocks on hand-made predictions: metrics, FP/FN, ROC, clustering, grid."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from sage.evaluation.classification import (
    classification_metrics,
    fp_fn_lists,
    per_class_table,
    roc_data,
)
from sage.evaluation.clustering import (
    assign_clusters,
    cluster_summary,
    confidence_bins,
    pooled_by_bin,
    token_stability,
)
from sage.evaluation.grid import grid_key, markdown_table, matrices, write_grid

# Eight images, four classes (class 3 never occurs and is never predicted).
#   true:        0    0    0    1    1    2    2    2
#   predicted:   0    0    1    1    1    2    2    0
#   confidence: .9   .7   .9   .5   .7   .9   .5   .5
LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2])
PRED = np.array([0, 0, 1, 1, 1, 2, 2, 0])
CONF = np.array([0.9, 0.7, 0.9, 0.5, 0.7, 0.9, 0.5, 0.5])
CLASSES = ["c0", "c1", "c2", "c3"]


def _probs() -> np.ndarray:
    probs = np.repeat(((1 - CONF) / 3)[:, None], 4, axis=1)
    probs[np.arange(8), PRED] = CONF
    return probs


def test_metrics_match_hand_computation_and_sklearn():
    m = classification_metrics(LABELS, _probs(), ece_bins=5)
    # confusion (rows true): [[2,1,0],[0,2,0],[1,0,2]] -> TP 2,2,2 of 8
    assert m["acc"] == pytest.approx(6 / 8)
    # precision 2/3, 2/3, 1; recall 2/3, 1, 2/3; F1 2/3, 4/5, 4/5 (class 3 absent: skipped)
    assert m["precision_macro"] == pytest.approx(7 / 9)
    assert m["recall_macro"] == pytest.approx(7 / 9)
    assert m["f1_macro"] == pytest.approx(34 / 45)
    assert m["precision_weighted"] == pytest.approx(19 / 24)
    assert m["recall_weighted"] == pytest.approx(6 / 8)
    assert m["f1_weighted"] == pytest.approx(6 / 8)
    for avg in ("macro", "weighted"):
        assert m[f"f1_{avg}"] == pytest.approx(f1_score(LABELS, PRED, average=avg))
        assert m[f"precision_{avg}"] == pytest.approx(precision_score(LABELS, PRED, average=avg))
        assert m[f"recall_{avg}"] == pytest.approx(recall_score(LABELS, PRED, average=avg))
    # ECE, 5 bins: (.8,1] {.9 ok, .9 wrong, .9 ok} |2/3-.9|; (.6,.8] {.7, .7 ok} |1-.7|;
    # (.4,.6] {.5 ok, .5 ok, .5 wrong} |2/3-.5|  ->  (3·.2333 + 2·.3 + 3·.1667) / 8
    assert m["ece"] == pytest.approx(1.8 / 8, abs=1e-6)
    assert m["support"] == 8


def test_roc_aucs_by_hand_and_against_sklearn():
    probs = _probs()
    roc = roc_data(LABELS, probs)
    # class 1: positives score .5 and .7; negatives .033 .1 .9 .033 .167 .167 -> 10 of 12 pairs
    assert roc.auc_per_class[1] == pytest.approx(10 / 12)
    for c in range(3):
        assert roc.auc_per_class[c] == pytest.approx(roc_auc_score(c == LABELS, probs[:, c]))
    assert math.isnan(roc.auc_per_class[3]) and roc.per_class[3] is None  # no positives
    assert roc.auc_macro == pytest.approx(np.mean(roc.auc_per_class[:3]))
    onehot = LABELS[:, None] == np.arange(4)
    assert roc.auc_micro == pytest.approx(roc_auc_score(onehot.ravel(), probs.ravel()))
    fpr, tpr = roc.macro
    assert fpr[0] == 0 and fpr[-1] == 1 and tpr[-1] == pytest.approx(1)
    assert classification_metrics(LABELS, probs)["auc_macro"] == pytest.approx(roc.auc_macro)


def test_per_class_fp_fn_counts_rates_and_image_lists():
    table = per_class_table(LABELS, _probs(), CLASSES).set_index("class")
    assert table.loc["c0", ["support", "predicted", "tp", "fp", "fn", "tn"]].tolist() == [
        3,
        3,
        2,
        1,
        1,
        4,
    ]
    assert table.loc["c0", "fp_rate"] == pytest.approx(1 / 5)  # FP / (FP + TN)
    assert table.loc["c0", "fn_rate"] == pytest.approx(1 / 3)  # FN / support
    assert table.loc["c1", "precision"] == pytest.approx(2 / 3)
    assert table.loc["c2", "recall"] == pytest.approx(2 / 3)
    # a class with no images and no predictions: undefined rates are NaN, not 0
    assert np.isnan(table.loc["c3", ["precision", "recall", "fn_rate", "auc"]].astype(float)).all()
    assert table.loc["c3", "fp_rate"] == 0

    frame = pd.DataFrame(
        {
            "image_id": [f"i{i}" for i in range(8)],
            "true_idx": LABELS,
            "pred_idx": PRED,
            "confidence": CONF,
        }
    )
    lists = fp_fn_lists(frame, CLASSES)
    got = {(r["class"], r["kind"], r["image_id"]) for r in lists.to_dict("records")}
    assert got == {("c0", "fn", "i2"), ("c1", "fp", "i2"), ("c2", "fn", "i7"), ("c0", "fp", "i7")}
    row = lists[(lists["class"] == "c0") & (lists.kind == "fn")].iloc[0]
    assert (row.true, row.predicted) == ("c0", "c1")


def test_metrics_reject_bad_predictions():
    from sage.errors import SageError

    with pytest.raises(SageError, match="NaN"):
        classification_metrics(LABELS, np.full((8, 4), np.nan))
    with pytest.raises(SageError, match="labels outside"):
        classification_metrics(LABELS + 4, _probs())
    with pytest.raises(SageError, match="empty"):
        classification_metrics(np.zeros(0, int), np.zeros((0, 4)))


def test_confidence_bins_ties_and_order():
    # two distinct values -> two bins, not four; equal values share their bin
    bins, k = confidence_bins([0.5, 0.9, 0.5, 0.9, 0.5], bins=4)
    assert k == 2 and bins.tolist() == [0, 1, 0, 1, 0]
    bins, k = confidence_bins([0.7, 0.7, 0.7], bins=4)
    assert k == 1 and bins.tolist() == [0, 0, 0]
    assert confidence_bins([], bins=4)[1] == 0
    # four clear groups, shuffled: bins follow the groups' confidence, lowest = 0
    conf = [0.95, 0.31, 0.62, 0.3, 0.93, 0.6, 0.1, 0.12, 0.61, 0.94]
    bins, k = confidence_bins(conf, bins=4)
    assert k == 4
    assert bins.tolist() == [3, 1, 2, 1, 3, 2, 0, 0, 2, 3]
    # many ties: bins are intervals (non-decreasing along sorted confidences), ties unsplit
    conf = np.array([0.1, 0.1, 0.2, 0.2, 0.2, 0.3, 0.8, 0.8, 0.9, 0.95, 0.95])
    bins, k = confidence_bins(conf, bins=4)
    assert k == 4 and (np.diff(bins[np.argsort(conf, kind="stable")]) >= 0).all()
    for value in np.unique(conf):
        assert len(set(bins[conf == value])) == 1
    again, _ = confidence_bins(conf, bins=4)
    assert (again == bins).all()  # seeded


def _frame(true, correct, conf):
    return pd.DataFrame(
        {
            "image_id": [f"i{i}" for i in range(len(true))],
            "true": true,
            "true_idx": [int(t[1:]) for t in true],
            "correct": correct,
            "confidence": conf,
        }
    )


def test_clusters_record_fewer_bins_for_tiny_classes_and_pool_only_full_groups():
    # c0: 8 correct with 4+ distinct confidences, 1 error; c1: 2 correct (tied), no errors
    conf = [0.3, 0.35, 0.5, 0.55, 0.7, 0.75, 0.9, 0.95, 0.6, 0.8, 0.8]
    true = ["c0"] * 9 + ["c1"] * 2
    correct = [True] * 8 + [False] + [True] * 2
    clustered, record = assign_clusters(_frame(true, correct, conf), bins=4)
    rec = record.set_index(["class", "outcome"])
    assert rec.loc[("c0", "correct"), "k_used"] == 4
    assert rec.loc[("c0", "error"), "k_used"] == 1
    assert rec.loc[("c1", "correct"), ["n", "distinct", "k_used"]].tolist() == [2, 1, 1]
    assert ("c1", "error") not in rec.index  # no errors: no group, nothing invented
    assert clustered.bin[:8].tolist() == [0, 0, 1, 1, 2, 2, 3, 3]

    pooled = pooled_by_bin(clustered, record, bins=4).set_index(["outcome", "bin"])
    assert pooled.loc[("correct", 0), "n"] == 2 and pooled.loc[("correct", 0), "share"] == 0.25
    assert pooled.loc[("correct", 0), "excluded"] == 2  # c1's two images
    assert pooled.loc[("error", 0), "n"] == 0 and pooled.loc[("error", 0), "excluded"] == 1


def test_cluster_summary_saliency_statistics():
    true = ["c0"] * 4
    clustered, _ = assign_clusters(_frame(true, [True] * 4, [0.2, 0.2, 0.9, 0.9]), bins=4)
    masses = np.array([[4.0, 3, 2, 1], [4, 3, 1, 2], [1, 1, 1, 1], [2, 2, 2, 2]])
    saliency = {
        "gradcam": {
            "a_fg": np.array([0.2, 0.4, 0.9, 0.5]),
            "a_bg": np.array([0.8, 0.6, 0.1, 0.5]),
            "zero": np.array([False, False, False, True]),  # left out of every statistic
            "mass_2x2": masses,
        }
    }
    summary = cluster_summary(clustered, saliency).set_index("bin")
    assert summary.loc[0, "gradcam/fg_mass"] == pytest.approx(0.3)
    assert summary.loc[1, "gradcam/fg_mass"] == pytest.approx(0.9)
    assert summary.loc[1, "gradcam/zero_maps"] == 1
    assert math.isnan(summary.loc[1, "gradcam/stability_2x2"])  # one valid image only
    centre = masses[:2].mean(0)
    expected = np.mean([spearmanr(masses[i], centre)[0] for i in range(2)])
    assert summary.loc[0, "gradcam/stability_2x2"] == pytest.approx(expected)
    assert summary.loc[0, "gradcam/dispersion_2x2"] > 0


def test_token_stability_bounds():
    same = np.tile([0.4, 0.3, 0.2, 0.1], (3, 1))
    stab, disp = token_stability(same)
    assert stab == pytest.approx(1) and disp == pytest.approx(0, abs=1e-12)
    assert all(math.isnan(v) for v in token_stability(same[:1]))


def test_grid_key_matrices_and_markdown(tmp_path):
    a = grid_key(["r1", "r2"], ["t1", "t2"], "test", "best")
    assert a == grid_key(["r2", "r1"], ["t2", "t1"], "test", "best")  # order-free
    assert a != grid_key(["r1", "r2"], ["t1", "t2"], "val", "best")
    assert a != grid_key(["r1", "r2"], ["t1", "t2"], "test", "last")
    assert a != grid_key(["r1", "r2"], ["t1", "t2"], "test", "best", limit=5)

    cells = pd.DataFrame(
        {
            "row": ["sf3d/bbox", "sf3d/bbox", "sf3d/seg"],
            "column": ["d100/bbox", "d100/full", "d100/full"],
            "acc": [0.5, 0.25, 0.75],
            "ece": [0.1, 0.2, 0.3],
        }
    )
    rows, cols = ["sf3d/bbox", "sf3d/seg"], ["d100/bbox", "d100/full"]
    acc = matrices(cells, rows, cols)["acc"]
    assert acc.loc["sf3d/seg", "d100/full"] == 0.75 and np.isnan(acc.loc["sf3d/seg", "d100/bbox"])
    assert markdown_table(acc) == (
        "| trained on \\ target | d100/bbox | d100/full |\n"
        "|---|---:|---:|\n"
        "| sf3d/bbox | 0.500 | 0.250 |\n"
        "| sf3d/seg | n/a | 0.750 |"
    )
    mats, headline = write_grid(cells, rows, cols, tmp_path)
    assert set(mats) == {"acc", "ece"}
    payload = json.loads((tmp_path / "acc.json").read_text())
    assert payload["values"] == [[0.5, 0.25], [None, 0.75]] and payload["rows"] == rows
    assert pd.read_csv(tmp_path / "ece.csv", index_col=0).loc["sf3d/seg", "d100/full"] == 0.3
    assert (tmp_path / "heatmap_acc.png").stat().st_size > 0
    assert "**Accuracy**" in headline and "**ECE" in headline


def test_equal_row_labels_are_disambiguated():
    from pathlib import Path

    from sage.evaluation.selection import SourceModel, unique_labels

    def model(key, backbone, label="synth-sf3d/bbox"):
        return SourceModel(key, key, key, Path("x.ckpt"), backbone, [], None, None, None, label)

    a, b, c = (
        model("a" * 32, "small_cnn"),
        model("b" * 32, "small_cnn"),
        model("c" * 32, "resnet18"),
    )
    d = model("d" * 32, "small_cnn", "synth-sf3d/seg")
    unique_labels([a, b, c, d], explicit=set())
    assert c.label == "synth-sf3d/bbox [resnet18]"  # the backbone alone tells it apart
    assert a.label == "synth-sf3d/bbox [small_cnn aaaaaaaa]"
    assert b.label == "synth-sf3d/bbox [small_cnn bbbbbbbb]"
    assert d.label == "synth-sf3d/seg"  # unique labels stay as they are
