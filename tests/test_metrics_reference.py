"""SAGE's numbers on a *trained* model equal the reference code's, and the sanity baselines
behave as "How to Evaluate and Refine your CAM" reports.

The model is a small CNN trained in the test on a task with a known answer
(:mod:`blob_task`), so the CAMs are real explanations, not maps of random weights. Each
SAGE method + SAGE metric is compared end to end with grad-cam's own method (ReLU'd,
min-max maps) + grad-cam's metric.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from blob_task import blob_batch, trained_blob_model
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, XGradCAM
from pytorch_grad_cam.metrics import road as gc_road
from pytorch_grad_cam.metrics.arcc import Coherency, Complexity
from pytorch_grad_cam.metrics.cam_mult_image import DropInConfidence, IncreaseInConfidence
from pytorch_grad_cam.utils.model_targets import (
    ClassifierOutputSoftmaxTarget,
    ClassifierOutputTarget,
)

from sage.metrics.alignment import alignment_scores, saliency_precision
from sage.metrics.faithfulness import adcc_scores
from sage.metrics.road import arcc, road_scores
from sage.saliency.methods import create_method
from sage.saliency.normalize import fg_bg_mass, relu_pdf

PERCENTILES = [20, 40, 60, 80]
GRAD_CAM = {"gradcam": GradCAM, "gradcam_plusplus": GradCAMPlusPlus, "xgradcam": XGradCAM}
BASELINES = ["half", "left_half", "ones_but_one", "random", "centre_gaussian"]


@pytest.fixture(scope="module")
def model():
    return trained_blob_model()


@pytest.fixture(scope="module")
def batch():
    return blob_batch(12, seed=7)


def test_the_model_is_trained(model):
    x, y, _ = blob_batch(64, seed=99)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() >= 0.95


def _scores(model, method, x, y, noise=0.0):
    maps = method(model, x, y)
    faith = adcc_scores(model, x, maps, y, method)
    road = road_scores(model, x, maps, y, PERCENTILES, noise=noise)
    faith["road"] = road["road"]
    faith["arcc"] = arcc(road["road"], faith["coherency"], faith["complexity"])
    return maps, faith


@pytest.mark.parametrize("name", sorted(GRAD_CAM))
def test_sage_pipeline_equals_grad_cams_on_its_own_rectified_maps(
    name, model, batch, gc_zero_noise
):
    x, y, _ = batch
    sage_method = create_method(name)
    maps, ours = _scores(model, sage_method, x, y)
    # grad-cam end to end: its CAM of the class logit (ReLU + min-max), its metrics on the
    # softmax probability (the usual pairing, and SAGE's)
    cam = GRAD_CAM[name](model=model, target_layers=[model.features[3]])
    logit_targets = [ClassifierOutputTarget(int(t)) for t in y]
    targets = [ClassifierOutputSoftmaxTarget(int(t)) for t in y]
    cams = cam(input_tensor=x, targets=logit_targets)
    with torch.no_grad():
        y_c = torch.softmax(model(x), 1).gather(1, y[:, None]).squeeze(1).numpy()
    theirs = {
        "average_drop": np.ravel(DropInConfidence()(x, cams, targets, model)) / y_c,
        "increase_in_confidence": IncreaseInConfidence()(x, cams, targets, model),
        "coherency": Coherency()(x, cams, logit_targets, model, cam),
        "complexity": Complexity()(cams),
        "road": gc_road.ROADCombined(percentiles=PERCENTILES)(x, cams, targets, model),
    }
    theirs = {k: np.ravel(v) for k, v in theirs.items()}
    t = theirs
    theirs["adcc"] = 3 / (
        1 / t["coherency"] + 1 / (1 - t["complexity"]) + 1 / (1 - t["average_drop"])
    )
    # grad-cam's ARCC class runs Coherency and ROAD with one target list (logit or softmax),
    # so its formula is applied to the components above
    theirs["arcc"] = 3 / (
        1 / (t["coherency"] + 1e-8)
        + 1 / ((1 - t["complexity"]) + 1e-8)
        + 1 / (np.clip(2 * t["road"], 0, 1) + 1e-8)
    )
    # the maps themselves: SAGE's scored map, min-max scaled, is grad-cam's
    scaled = (maps - maps.amin((1, 2), keepdim=True)) / maps.amax((1, 2), keepdim=True)
    np.testing.assert_allclose(scaled.numpy(), cams, atol=1e-4)
    assert (maps == 0).any(), "the rectified CAM has its negatives tied at 0"
    for key, value in theirs.items():
        np.testing.assert_allclose(ours[key].numpy(), np.ravel(value), atol=1e-3, err_msg=key)
    # not vacuous: where the raw map is signed (GradCAM++ weights are non-negative), scoring
    # it raw (a named option) gives other numbers
    raw_maps, raw_scores = _scores(model, create_method(name, scoring="raw"), x, y)
    if name != "gradcam_plusplus":
        assert (raw_maps < 0).any()
        assert not np.allclose(raw_scores["complexity"], ours["complexity"], atol=1e-3)


def test_scoring_is_declared_with_the_family_and_overridable():
    assert create_method("gradcam").scoring == "rectified"
    assert create_method("saliency").scoring == "abs"
    assert create_method("half").scoring == "raw"
    assert create_method("gradcam", scoring="raw").params["scoring"] == "raw"
    with pytest.raises(Exception, match="scoring"):
        create_method("gradcam", scoring="relu6")


def test_saliency_precision_of_the_rectified_map_is_a_fg(model, batch):
    x, y, masks = batch
    maps = create_method("gradcam")(model, x, y)
    has_non_positive = (maps <= 0).flatten(1).any(1)
    assert has_non_positive.all()
    pdf, _ = relu_pdf(maps)
    a_fg, _ = fg_bg_mass(pdf, masks)
    torch.testing.assert_close(saliency_precision(maps, masks), a_fg, atol=1e-6, rtol=1e-6)
    # and through the metric set's path (all regions at once)
    scores = alignment_scores(maps, {"fg": masks})
    torch.testing.assert_close(scores["fg"]["saliency_precision"], a_fg, atol=1e-6, rtol=1e-6)


@pytest.fixture(scope="module")
def by_side(model):
    """Mean scores per method for squares on the left and on the right."""
    out = {}
    for side in ("left", "right"):
        x, y, _ = blob_batch(12, seed=11, side=side)
        for name in [*GRAD_CAM, *BASELINES]:
            _, s = _scores(model, create_method(name), x, y)
            out[side, name] = {k: float(np.nanmean(v.numpy())) for k, v in s.items()}
    return out


@pytest.mark.parametrize("side", ["left", "right"])
def test_half_cam_fools_average_drop_and_adcc_but_not_road_or_arcc(by_side, side):
    """The reference HalfCAM (0.5 everywhere, one 0 and one 1) keeps most of the confidence
    (low Average Drop, ADCC near the real CAMs') wherever the object is, while ROAD and ARCC
    put it far below them."""
    half = by_side[side, "half"]
    for name in GRAD_CAM:
        cam = by_side[side, name]
        assert half["average_drop"] < 0.25
        assert half["adcc"] > 0.65
        adcc_gap = cam["adcc"] - half["adcc"]
        arcc_gap = cam["arcc"] - half["arcc"]
        assert arcc_gap > 2 * adcc_gap  # ARCC separates what ADCC barely does
        assert half["road"] < cam["road"] / 4
        assert half["arcc"] < cam["arcc"] - 0.3


def test_half_cam_does_not_depend_on_the_side_but_left_half_does(by_side):
    left, right = by_side["left", "half"], by_side["right", "half"]
    assert abs(left["average_drop"] - right["average_drop"]) < 0.1
    assert abs(left["adcc"] - right["adcc"]) < 0.05
    lh_left, lh_right = by_side["left", "left_half"], by_side["right", "left_half"]
    assert lh_left["average_drop"] < 0.1 < 0.5 < lh_right["average_drop"]


def test_random_cam_is_not_coherent(by_side):
    for side in ("left", "right"):
        assert by_side[side, "random"]["coherency"] < 0.7
        assert by_side[side, "random"]["adcc"] < by_side[side, "gradcam"]["adcc"] - 0.2


@pytest.mark.parametrize("side", ["left", "right"])
def test_every_trivial_baseline_ranks_below_gradcam_on_arcc(by_side, side):
    for name in BASELINES:
        assert by_side[side, name]["arcc"] < by_side[side, "gradcam"]["arcc"] - 0.2, name


def test_random_cam_draws_a_fresh_map_per_call_from_a_seeded_stream(model):
    x, _, _ = blob_batch(2, seed=1)
    a, b = create_method("random", seed=3), create_method("random", seed=3)
    first, second = a(model, x), a(model, x)
    assert not torch.equal(first, second)  # x and x ⊙ S get different maps
    torch.testing.assert_close(b(model, x), first)  # the stream is reproducible
    torch.testing.assert_close(b(model, x), second)


def test_half_cam_is_the_reference_map(model):
    x, _, _ = blob_batch(2, seed=1)
    half = create_method("half")(model, x)
    assert half[:, 0, 0].eq(0).all() and half[:, -1, -1].eq(1).all()
    inner = half.flatten(1)[:, 1:-1]
    assert inner.eq(0.5).all()


def test_road_noise_is_the_papers_by_default_and_seeded(model, batch):
    x, y, _ = batch
    maps = create_method("gradcam")(model, x, y)
    a = road_scores(model, x, maps, y)
    b = road_scores(model, x, maps, y)
    free = road_scores(model, x, maps, y, noise=0)
    torch.testing.assert_close(a["road"], b["road"])  # seeded: reproducible
    assert not torch.equal(a["morf"], free["morf"])  # noise is on by default
    assert not math.isnan(float(a["road"].mean()))


def test_noisy_road_of_an_image_does_not_depend_on_its_batch(model, batch):
    """The noise fields are drawn once per order and percentile from the seed, so the
    validation callback (probe batches) and explain.py (its own batches) agree."""
    x, y, _ = batch
    maps = create_method("gradcam")(model, x, y)
    whole = road_scores(model, x, maps, y)
    tail = road_scores(model, x[5:], maps[5:], y[5:])
    torch.testing.assert_close(tail["road"], whole["road"][5:], atol=1e-5, rtol=1e-4)
    other = road_scores(model, x[5:], maps[5:], y[5:], seed=1)
    assert not torch.allclose(other["morf"], tail["morf"])


def test_a_map_holding_minus_inf_is_flagged_not_scored():
    from sage.saliency.normalize import normalize_batch

    maps = torch.rand(2, 8, 8)
    maps[0, 3, 3] = -math.inf  # a ReLU would hide it
    sb = normalize_batch(maps, torch.ones(2, 8, 8, dtype=torch.bool))
    assert sb.zero.tolist() == [True, False] and sb.flat.tolist() == [True, False]
    assert sb.a_fg[0] == 0 and sb.pdf[0].sum() == 0


def test_two_empty_maps_do_not_agree_perfectly():
    from sage.saliency.token_analysis import patch_kl

    zero, some = torch.zeros(2, 4, 4), torch.rand(2, 4, 4)
    kl = patch_kl(torch.stack([zero[0], some[0]]), torch.stack([zero[1], some[1]]))
    assert math.isnan(kl[0]) and kl[1] >= 0


def test_rfs_uses_the_papers_ten_trials_and_cose_offers_clipping():
    import inspect

    from sage.metrics import rfs as rfs_mod
    from sage.metrics.suite import _cose_batch, _rfs_batch

    assert inspect.signature(rfs_mod.rfs).parameters["trials"].default == 10
    assert inspect.signature(_rfs_batch).parameters["trials"].default == 10
    assert inspect.signature(_cose_batch).parameters["clip_ssim"].default is False
