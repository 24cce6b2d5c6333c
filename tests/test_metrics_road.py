"""ROAD and ARCC: the vectorised imputer against grad-cam's NoisyLinearImputer, ROAD scores
against grad-cam's ROAD classes, ARCC against grad-cam's formula, and the paper's point that
trivial maps score low on ROAD / ARCC ("How to Evaluate and Refine your CAM" §3.3)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_grad_cam.metrics import road as gc_road
from pytorch_grad_cam.metrics.arcc import ARCC
from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget
from torch import nn

import sage.metrics.road_imputation as imputation_mod
from sage.metrics.faithfulness import adcc_scores
from sage.metrics.road import arcc, noisy_linear_impute, percentile_keep_masks, road_scores
from sage.models import create_backbone
from sage.saliency.methods import create_method
from sage.saliency.normalize import minmax

PERCENTILES = [20, 40, 60, 80]


def gc_impute(image: torch.Tensor, removed: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # spsolve's MatrixRankWarning on an all-removed plane
        return gc_road.NoisyLinearImputer(noise=0.0)(image, (~removed).float())


def masks_for(h: int, w: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Removed-pixel masks: scattered, CAM-like blobs, borders, a big block, nearly all."""
    blob = F.interpolate(torch.rand(1, 1, 4, 3, generator=gen), size=(h, w), mode="bilinear")[0, 0]
    block = torch.zeros(h, w, dtype=torch.bool)
    block[h // 5 :, w // 6 :] = True  # touches the bottom and right borders
    border = torch.zeros(h, w, dtype=torch.bool)
    border[:2] = border[-2:] = True
    border[:, :3] = border[:, -1:] = True
    nearly_all = torch.ones(h, w, dtype=torch.bool)
    nearly_all[h // 2, w // 3] = nearly_all[0, w - 1] = False
    return {
        "random": torch.rand(h, w, generator=gen) < 0.5,
        "blob_top80": blob >= blob.flatten().quantile(0.2),
        "blob_bottom20": blob < blob.flatten().quantile(0.2),
        "big_block": block,
        "border_frame": border,
        "nearly_all": nearly_all,
        "all": torch.ones(h, w, dtype=torch.bool),
        "none": torch.zeros(h, w, dtype=torch.bool),
    }


# ---------------------------------------------------------------------------- imputation


@pytest.mark.parametrize("size", [(16, 16), (32, 24)])
def test_imputation_matches_grad_cam(size):
    h, w = size
    gen = torch.Generator().manual_seed(h * w)
    masks = masks_for(h, w, gen)
    images = torch.randn(len(masks), 3, h, w, generator=gen)
    removed = torch.stack(list(masks.values()))
    ours = noisy_linear_impute(images, removed)
    for i, name in enumerate(masks):
        ref = gc_impute(images[i], removed[i])
        err = (ours[i] - ref).abs().max().item()
        assert err < 1e-4, f"{name}: max abs difference {err:.2e}"
        # known pixels are untouched, bit for bit
        assert torch.equal(ours[i][:, ~removed[i]], images[i][:, ~removed[i]]), name


def test_imputation_float64_is_tighter():
    gen = torch.Generator().manual_seed(3)
    h, w = 32, 24
    images = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    masks = masks_for(h, w, gen)
    removed = torch.stack([masks["blob_top80"], masks["nearly_all"]])
    ours = noisy_linear_impute(images, removed, tol=1e-10)
    assert ours.dtype == torch.float64
    for i in range(2):
        ref = gc_impute(images[i].float(), removed[i]).double()
        assert (ours[i] - ref).abs().max().item() < 1e-5  # ref is float32 at the end


def test_imputed_pixel_is_the_weighted_mean_of_its_neighbours():
    gen = torch.Generator().manual_seed(5)
    images = torch.randn(1, 1, 5, 5, generator=gen)
    removed = torch.zeros(1, 5, 5, dtype=torch.bool)
    removed[0, 2, 2] = True  # interior: weights 1/6 and 1/12 sum to 1
    removed[0, 0, 0] = True  # corner: 2·(1/6) + 1/12 = 5/12, renormalised
    out = noisy_linear_impute(images, removed)[0, 0]
    x = images[0, 0]
    interior = (x[1, 2] + x[3, 2] + x[2, 1] + x[2, 3]) / 6 + (
        x[1, 1] + x[1, 3] + x[3, 1] + x[3, 3]
    ) / 12
    corner = ((x[0, 1] + x[1, 0]) / 6 + x[1, 1] / 12) / (5 / 12)
    assert abs(out[2, 2] - interior) < 1e-6
    assert abs(out[0, 0] - corner) < 1e-6


def test_batched_imputation_equals_per_image():
    gen = torch.Generator().manual_seed(7)
    h, w = 32, 24
    masks = masks_for(h, w, gen)
    removed = torch.stack(list(masks.values()))
    images = torch.randn(len(masks), 3, h, w, generator=gen)
    together = noisy_linear_impute(images, removed)
    chunked = noisy_linear_impute(images, removed, chunk_size=3)
    for i in range(len(masks)):
        alone = noisy_linear_impute(images[i : i + 1], removed[i : i + 1])
        torch.testing.assert_close(together[i : i + 1], alone, atol=2e-5, rtol=0)
    torch.testing.assert_close(together, chunked, atol=2e-5, rtol=0)


def test_fine_grid_in_parts_gives_the_same_imputation(monkeypatch):
    """The CPU path can split the fine grid of a chunk into cache-sized parts sharing one
    coarse hierarchy; forcing several parts must not change the result."""
    gen = torch.Generator().manual_seed(8)
    h, w = 40, 36
    masks = masks_for(h, w, gen)
    removed = torch.stack(list(masks.values()))
    images = torch.randn(len(masks), 3, h, w, generator=gen)
    whole = noisy_linear_impute(images, removed)
    monkeypatch.setattr(imputation_mod, "_CPU_PART_ELEMS", 3 * h * w * 3)  # 3 images per part
    parts = noisy_linear_impute(images, removed, chunk_size=8)
    torch.testing.assert_close(parts, whole, atol=2e-5, rtol=0)


def test_multigrid_preconditioner_is_symmetric_positive_definite():
    """PCG is only valid with a symmetric positive-definite preconditioner: check the V-cycle
    (an odd and an even side, border-touching holes, fine grid in parts) numerically."""
    gen = torch.Generator().manual_seed(4)
    h, w = 45, 38
    coarse = torch.rand(2, 1, 5, 4, generator=gen)
    u = (F.interpolate(coarse, size=(h, w), mode="bilinear") > 0.35).double()
    mg = imputation_mod._Multigrid(u, 1, 1)  # two fine parts, coarse grids 23×19, 12×10 and 6×5
    assert len(mg.parts) == 2 and len(mg.levels) == 3

    def apply(x):
        for k, part in enumerate(mg.parts):
            part.r.zero_()
            part.r[..., 1:-1, 1:-1] = x[k : k + 1] * u[k : k + 1]
        mg.vcycle()
        return torch.cat([part.z[..., 1:-1, 1:-1] for part in mg.parts])

    a, b = torch.randn(2, 2, 1, h, w, generator=gen, dtype=torch.float64) * u
    ab, ba = (a * apply(b)).sum(), (b * apply(a)).sum()
    assert abs(ab - ba) < 1e-10 * abs(ab)
    assert (a * apply(a)).sum() > 0


def test_skinny_images_are_imputed():
    gen = torch.Generator().manual_seed(9)
    for h, w in [(2, 700), (1, 300), (600, 1)]:
        images = torch.randn(2, 3, h, w, generator=gen)
        removed = torch.rand(2, h, w, generator=gen) < 0.7
        ours = noisy_linear_impute(images, removed)
        assert (ours[0] - gc_impute(images[0], removed[0])).abs().max() < 1e-4


def test_noise_is_added_to_removed_pixels_after_solving():
    gen = torch.Generator().manual_seed(11)
    h, w = 48, 40
    images = torch.randn(4, 3, h, w, generator=gen)
    removed = torch.rand(4, h, w, generator=gen) < 0.6
    clean = noisy_linear_impute(images, removed)
    noisy = noisy_linear_impute(images, removed, 0.05, torch.Generator().manual_seed(0))
    again = noisy_linear_impute(images, removed, 0.05, torch.Generator().manual_seed(0))
    assert torch.equal(noisy, again)  # reproducible with a generator
    diff = (noisy - clean).permute(1, 0, 2, 3)  # (C, N, H, W)
    assert torch.equal(diff[:, ~removed], torch.zeros_like(diff[:, ~removed]))
    residual = diff[:, removed]
    assert abs(residual.std().item() - 0.05) < 0.0025
    assert abs(residual.mean().item()) < 0.0025


def test_imputation_rejects_bad_input():
    with pytest.raises(ValueError, match="removed must be"):
        noisy_linear_impute(torch.zeros(2, 3, 8, 8), torch.zeros(2, 8, 7, dtype=torch.bool))
    bad = torch.zeros(1, 3, 8, 8)
    bad[0, 0, 0, 0] = math.nan
    with pytest.raises(ValueError, match="NaN"):
        noisy_linear_impute(bad, torch.ones(1, 8, 8, dtype=torch.bool))


# ------------------------------------------------------------------------------ ROAD


def test_keep_masks_match_grad_cam_thresholds():
    gen = torch.Generator().manual_seed(2)
    maps = torch.rand(3, 16, 16, generator=gen)
    maps[1] = torch.round(maps[1] * 4) / 4  # heavy ties
    maps[2, :, :8] = 1.0  # half ones
    maps[2, :, 8:] = 0.0
    morf, lerf = percentile_keep_masks(maps, [10, 20, 33, 40, 60, 80])
    for i in range(3):
        for j, p in enumerate([10, 20, 33, 40, 60, 80]):
            # RemoveMostRelevantFirst builds its mask with np.percentile and keeps mask < thr
            thr = np.percentile(maps[i].numpy(), p)
            assert torch.equal(morf[i, j], maps[i] < thr)
            thr = np.percentile((1 - maps[i]).numpy(), p)
            assert torch.equal(lerf[i, j], (1 - maps[i]) < thr)
    # p = 20 removes the top 80 % (strictly: keeps 20 %, no ties in the first map)
    assert morf[0, 1].float().mean().item() == pytest.approx(0.2, abs=1 / 256)


class QuadrantNet(nn.Module):
    """10 classes decided by the top-left quadrant only: logits = W · (channel means there)."""

    def __init__(self) -> None:
        super().__init__()
        weight = torch.zeros(10, 3)
        weight[0, 0] = weight[1, 1] = weight[2, 2] = 4.0
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return x[..., : h // 2, : w // 2].mean((2, 3)) @ self.weight.T


def quadrant_images(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = 0.5 * torch.randn(b, 3, h, w, generator=gen)
    x[:, 0, : h // 2, : w // 2] += 2.0
    return x


def oracle_maps(b: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    maps = 0.25 * torch.rand(b, h, w, generator=gen)
    maps[:, : h // 2, : w // 2] += 0.75
    return maps


def grad_cam_road(model, images, scaled, targets):
    tg = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]
    cams = scaled.numpy()
    return (
        gc_road.ROADMostRelevantFirstAverage(PERCENTILES)(images, cams, tg, model),
        gc_road.ROADLeastRelevantFirstAverage(PERCENTILES)(images, cams, tg, model),
        gc_road.ROADCombined(percentiles=PERCENTILES)(images, cams, tg, model),
    )


@pytest.mark.parametrize("net", ["quadrant", "small_cnn"])
def test_road_scores_match_grad_cam(net, gc_zero_noise):
    torch.manual_seed(0)
    b, h, w = 4, 32, 24
    if net == "quadrant":
        model = QuadrantNet()
        images = quadrant_images(b, h, w)
        maps = oracle_maps(b, h, w) + 0.3 * torch.rand(b, h, w)  # imperfect rankings
    else:
        model = create_backbone("small_cnn", 5).eval()
        images = torch.randn(b, 3, h, w)
        maps = F.interpolate(torch.randn(b, 1, 4, 3), size=(h, w), mode="bilinear")[:, 0]
    targets = torch.tensor([0, 1, 2, 0])
    ours = road_scores(model, images, maps, targets, PERCENTILES, batch_size=5)
    morf, lerf, combined = grad_cam_road(model, images, minmax(maps)[0], targets)
    np.testing.assert_allclose(ours["morf"].numpy(), morf, atol=1e-4)
    np.testing.assert_allclose(ours["lerf"].numpy(), lerf, atol=1e-4)
    np.testing.assert_allclose(ours["road"].numpy(), combined, atol=1e-4)
    if net == "quadrant":  # the check is not vacuous: the scores move
        assert np.abs(morf).max() > 0.1
    assert ours["morf_curve"].shape == (b, 4) and ours["lerf_curve"].shape == (b, 4)
    torch.testing.assert_close(ours["morf_curve"].mean(1), ours["morf"])


def test_road_scores_batching_targets_and_mode():
    model = QuadrantNet().train()
    b, h, w = 3, 16, 16
    images = quadrant_images(b, h, w)
    maps = oracle_maps(b, h, w)
    one = road_scores(model, images, maps, None)  # predicted classes (all 0 here)
    assert model.training  # mode restored
    assert one["targets"].tolist() == [0, 0, 0]
    two = road_scores(model, images, maps, torch.zeros(b, dtype=torch.long), batch_size=2)
    with torch.no_grad():
        logits = model(images)
    three = road_scores(model, images, maps, None, logits=logits)  # no clean forward pass
    for key in ("morf", "lerf", "road", "before"):
        torch.testing.assert_close(one[key], two[key], atol=1e-6, rtol=0)
        torch.testing.assert_close(one[key], three[key], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match="logits must be"):
        road_scores(model, images, maps, None, logits=logits[:2])


def test_road_flat_map_is_nan_and_flagged():
    model = QuadrantNet()
    images = quadrant_images(2, 16, 16)
    maps = torch.stack([torch.full((16, 16), 0.3), oracle_maps(1, 16, 16)[0]])
    out = road_scores(model, images, maps, torch.zeros(2, dtype=torch.long))
    assert out["flat"].tolist() == [True, False]
    assert math.isnan(out["road"][0].item()) and not math.isnan(out["road"][1].item())


# ------------------------------------------------------------------------------ ARCC


def test_arcc_matches_grad_cam_formula():
    road = np.array([0.3, -0.1, 0.6, 0.0, 0.25], dtype=np.float32)
    coh = np.array([0.9, 0.8, 0.5, 0.7, 1.0], dtype=np.float32)
    com = np.array([0.2, 0.4, 0.5, 0.3, 0.0], dtype=np.float32)
    metric = ARCC(base_method=None, road_percentiles=PERCENTILES)
    metric.complexity = lambda cams: com
    metric.coherency = lambda *args: coh
    metric.road = lambda *args: road
    theirs = metric(None, None, None, None)
    ours = arcc(torch.from_numpy(road), torch.from_numpy(coh), torch.from_numpy(com))
    np.testing.assert_allclose(ours.numpy(), theirs, rtol=1e-6)
    # by hand: clip(2·0.3) = 0.6 → 3 / (1/0.9 + 1/0.8 + 1/0.6)
    assert ours[0].item() == pytest.approx(3 / (1 / 0.9 + 1 / 0.8 + 1 / 0.6), rel=1e-6)
    assert ours[1].item() < 1e-7 and ours[3].item() < 1e-7  # ROAD ≤ 0 → ≈ 0
    assert math.isnan(
        arcc(torch.tensor([math.nan]), torch.tensor([0.5]), torch.tensor([0.5])).item()
    )


# --------------------------------------------------------------------- the paper's point


def test_trivial_maps_score_low_on_road_and_arcc():
    """§3.3: a map that covers the decisive region by position (left_half here) fools Average
    Drop and ADCC but ROAD and ARCC rank it — and every sanity baseline — below a genuinely
    faithful map. The model decides on the top-left quadrant only, so the oracle map (that
    quadrant) is faithful. The reference HalfCAM on a trained model: test_metrics_reference."""
    model = QuadrantNet()
    b, h, w = 4, 32, 32
    images = quadrant_images(b, h, w)
    targets = torch.zeros(b, dtype=torch.long)
    oracle = oracle_maps(b, h, w)

    def fixed(model, imgs, tgts):
        return oracle

    scores = {}
    for name, method in [
        ("oracle", fixed),
        ("left_half", create_method("left_half")),
        ("half", create_method("half")),
        ("ones_but_one", create_method("ones_but_one")),
        ("random", create_method("random")),
        ("centre_gaussian", create_method("centre_gaussian")),
    ]:
        maps = method(model, images, targets)
        faith = adcc_scores(model, images, maps, targets, method)
        road = road_scores(model, images, maps, targets, noise=0)
        scores[name] = {
            "average_drop": faith["average_drop"].mean().item(),
            "adcc": faith["adcc"].mean().item(),
            "road": road["road"].mean().item(),
            "arcc": arcc(road["road"], faith["coherency"], faith["complexity"]).mean().item(),
        }
    ora, half = scores["oracle"], scores["left_half"]
    # left_half fools Average Drop (it beats the faithful map) and ADCC (close to it) ...
    assert half["average_drop"] <= ora["average_drop"]
    assert half["adcc"] > ora["adcc"] - 0.15
    # ... but ROAD / ARCC put every baseline clearly below the faithful map,
    assert ora["road"] > 0.3 and ora["arcc"] > 0.7
    for name in ("left_half", "half", "ones_but_one", "random", "centre_gaussian"):
        assert scores[name]["road"] < 0.7 * ora["road"], (name, scores)
        assert scores[name]["arcc"] < ora["arcc"] - 0.15, (name, scores)
    # and ARCC separates half from the faithful map more than ADCC does
    assert ora["arcc"] - half["arcc"] > ora["adcc"] - half["adcc"]
    # (left_half keeps the decisive quadrant, so ROAD gives it partial credit; the others ≈ 0
    # or less)
    assert scores["ones_but_one"]["road"] < 0 and scores["ones_but_one"]["arcc"] < 1e-6
    # (HalfCAM keeps one pixel per order: here the 0 sits in the decisive quadrant, so MoRF
    # keeps its evidence and LeRF does not; ROAD comes out negative, ARCC 0)
    assert scores["half"]["road"] < 0 and scores["half"]["arcc"] < 1e-6
    for name in ("random", "centre_gaussian"):
        assert abs(scores[name]["road"]) < 0.05 and scores[name]["arcc"] < 0.1, (name, scores)
