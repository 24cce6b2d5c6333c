"""Localisation / alignment metrics (docs/metrics.md §4; RIVAL10 appendix E; Explanation Alignment §3)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import average_precision_score

from sage.metrics.alignment import (
    ALIGNMENT_METRICS,
    alignment_scores,
    average_precision,
    delta_density,
    explanation_alignment,
    iou,
    pointing_game,
    rank_spurious_candidates,
    saliency_precision,
    saliency_recall,
    threshold,
)
from sage.plots.ranking import ranking_mosaic

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _mask_tl() -> torch.Tensor:
    """4×4 region: the top-left 2×2 block."""
    m = torch.zeros(1, 4, 4, dtype=torch.bool)
    m[0, :2, :2] = True
    return m


def _map_a() -> torch.Tensor:
    """Raw map whose min-max version is raw / 4:

    s = [[1, .75, 0, 0], [.5, .25, 0, 0], [0, 0, 0, .5], [0, 0, 0, 0]]
    Four pixels of s inside the top-left 2×2 region (mass 2.5), one outside (0.5), Σs = 3.
    """
    return torch.tensor(
        [[[4.0, 3.0, 0.0, 0.0], [2.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0]]]
    )


# ----------------------------------------------------------------- threshold and IoU


def test_threshold_at_half_and_mean_std():
    s = torch.zeros(1, 4, 4)
    s[0, 0, 0] = s[0, 0, 1] = s[0, 1, 0] = s[0, 3, 3] = 1.0
    s[0, 2, 3] = s[0, 1, 1] = 0.5
    # tau = 0.5 keeps all six non-zero pixels.
    assert threshold(s, 0.5).sum().item() == 6
    # mean = 5/16, E[s²] = 4.5/16, std = sqrt(0.28125 − 0.09765625) ≈ 0.4285 → thr ≈ 0.7410:
    # only the four ones survive.
    thr = 5 / 16 + math.sqrt(4.5 / 16 - (5 / 16) ** 2)
    assert thr == pytest.approx(0.74098, abs=1e-5)
    b = threshold(s, "mean_std")
    assert b.sum().item() == 4
    assert torch.equal(b, s >= thr)
    # IoU with the top-left 2×2 region: at 0.5 inter 4 / union 6; at mean+std 3 / 5.
    assert iou(s, _mask_tl(), tau=0.5).item() == pytest.approx(4 / 6)
    assert iou(s, _mask_tl(), tau="mean_std").item() == pytest.approx(3 / 5)


def test_threshold_min_max_scales_first_and_rejects_bad_tau():
    raw = torch.tensor([[[10.0, 11.0], [12.0, 14.0]]])  # s = [[0, .25], [.5, 1]]
    assert threshold(raw, 0.5).tolist() == [[[False, False], [True, True]]]
    with pytest.raises(ValueError, match="mean_std"):
        threshold(raw, "median")
    with pytest.raises(ValueError, match="tau"):
        threshold(raw, float("nan"))


def test_iou_hand_computed_and_rival10_printed_variant():
    # b = s ≥ 0.5 = {(0,0), (0,1), (1,0), (2,3)}: inter 3, union 5.
    assert iou(_map_a(), _mask_tl()).item() == pytest.approx(0.6)
    # RIVAL10 appendix E as printed: Σ(m⊙b) / (Σm + Σb) = 3 / (4 + 4).
    assert iou(_map_a(), _mask_tl(), denominator="sum").item() == pytest.approx(0.375)
    with pytest.raises(ValueError, match="denominator"):
        iou(_map_a(), _mask_tl(), denominator="dice")


def test_empty_region_is_nan_for_every_metric_and_skipped_by_ea_means():
    """Alignment with an empty region is undefined: NaN everywhere (a recorded skip), so a
    missing part never enters EA means as a 0."""
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    assert math.isnan(iou(_map_a(), empty).item())
    assert math.isnan(iou(_map_a(), empty, tau=1.5).item())
    assert math.isnan(iou(_map_a(), empty, tau=1.5, denominator="sum").item())
    scores = alignment_scores(_map_a(), {"empty": empty, "tl": _mask_tl()})
    assert all(math.isnan(v.item()) for v in scores["empty"].values())
    assert not any(math.isnan(v.item()) for v in scores["tl"].values())
    frame = pd.DataFrame(
        [
            {"image_id": "a", "region": "r", "method": "m", "iou": 0.6},
            {"image_id": "b", "region": "r", "method": "m", "iou": float("nan")},
        ]
    )
    ea = explanation_alignment(frame, metrics=["iou"])
    assert ea["EA_IoU"].item() == pytest.approx(0.6) and ea["n_iou"].item() == 1


# ---------------------------------------------------------------------- pointing game


def test_pointing_game_hit_miss_and_tolerance():
    m = _mask_tl()
    assert pointing_game(_map_a(), m).item() == 1.0  # argmax (0, 0) is inside
    far = torch.zeros(1, 4, 4)
    far[0, 3, 1] = 5.0  # argmax (3, 1): nearest region pixel (1, 1) at distance exactly 2
    assert pointing_game(far, m).item() == 0.0
    assert pointing_game(far, m, tolerance=1).item() == 0.0
    assert pointing_game(far, m, tolerance=2).item() == 1.0  # d ≤ r: a hit
    assert pointing_game(far, m, tolerance=2, strict=True).item() == 0.0  # TorchRay: d² < r²
    assert pointing_game(far, m, tolerance=3, strict=True).item() == 1.0
    diag = torch.zeros(1, 4, 4)
    diag[0, 3, 3] = 1.0  # distance to (1, 1) is sqrt(8) ≈ 2.83
    assert pointing_game(diag, m, tolerance=2).item() == 0.0
    assert pointing_game(diag, m, tolerance=2.9).item() == 1.0
    with pytest.raises(ValueError, match="tolerance"):
        pointing_game(far, m, tolerance=-1)


def test_pointing_game_ties_first_or_any():
    m = _mask_tl()
    tie = torch.zeros(2, 4, 4)
    tie[0, 0, 3] = tie[0, 1, 0] = 7.0  # first max outside, second inside
    tie[1, 3, 3] = tie[1, 2, 3] = 7.0  # both maxima outside
    assert pointing_game(tie, m.expand(2, 4, 4), ties="any").tolist() == [1.0, 0.0]
    assert pointing_game(tie, m.expand(2, 4, 4), ties="first").tolist() == [0.0, 0.0]
    # all ones but one: the first max (0, 1) is inside the top-left region; with "any" every
    # non-empty region is a hit, which is why "first" is the default
    obo = torch.ones(1, 4, 4)
    obo[0, 0, 0] = 0
    br = torch.zeros(1, 4, 4, dtype=torch.bool)
    br[0, 3, 3] = True
    assert pointing_game(obo, br, ties="first").item() == 0.0
    assert pointing_game(obo, br, ties="any").item() == 1.0
    # tolerance with ties: a tied max within 1 px of the region counts
    assert pointing_game(tie[1:], m, tolerance=1.5, ties="any").item() == 0.0
    near = torch.zeros(1, 4, 4)
    near[0, 3, 3] = near[0, 2, 2] = 1.0
    assert pointing_game(near, m, tolerance=1.5, ties="any").item() == 1.0
    assert pointing_game(near, m, tolerance=1.5, ties="first").item() == 1.0  # (2, 2) first
    with pytest.raises(ValueError, match="ties"):
        pointing_game(near, m, ties="random")


def test_pointing_game_uses_raw_map_and_first_max_in_row_major_order():
    m = _mask_tl()
    tie = torch.zeros(2, 4, 4)
    tie[0, 0, 3] = tie[0, 1, 0] = 7.0  # first max (0, 3) is outside the region → miss
    tie[1, 0, 0] = tie[1, 3, 3] = 7.0  # first max (0, 0) is inside → hit
    assert pointing_game(tie, m.expand(2, 4, 4)).tolist() == [0.0, 1.0]
    # Negative raw values: the argmax of the raw map, not of |S|.
    neg = torch.full((1, 4, 4), -1.0)
    neg[0, 3, 3] = -9.0
    neg[0, 0, 0] = -0.5
    assert pointing_game(neg, m).item() == 1.0


def test_pointing_game_tolerance_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(6, 12, 15, generator=g)
    masks = torch.rand(6, 12, 15, generator=g) > 0.93
    got = pointing_game(maps, masks, tolerance=3)
    for i in range(6):
        y0, x0 = divmod(int(maps[i].argmax()), 15)
        ys, xs = np.nonzero(masks[i].numpy())
        hit = bool(((ys - y0) ** 2 + (xs - x0) ** 2 <= 9).any())
        assert got[i].item() == float(hit)


def test_pointing_game_empty_region_is_nan():
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    assert math.isnan(pointing_game(_map_a(), empty, tolerance=5).item())
    assert math.isnan(pointing_game(_map_a(), empty, ties="any").item())


# ----------------------------------------------------------------------- Δ densities


def test_delta_density_exact_value_and_ratio_variant():
    # inside: 2.5 / 4 = 0.625; outside: 0.5 / 12 = 1/24.
    assert delta_density(_map_a(), _mask_tl()).item() == pytest.approx(0.625 - 1 / 24)
    assert delta_density(_map_a(), _mask_tl(), combine="ratio").item() == pytest.approx(15.0)
    with pytest.raises(ValueError, match="combine"):
        delta_density(_map_a(), _mask_tl(), combine="log")


def test_delta_density_nan_for_empty_or_full_region():
    empty = torch.zeros(1, 4, 4, dtype=torch.bool)
    assert math.isnan(delta_density(_map_a(), empty).item())
    assert math.isnan(delta_density(_map_a(), ~empty).item())
    assert math.isnan(delta_density(_map_a(), ~empty, combine="ratio").item())
    # All saliency inside the region: the printed ratio is +inf, the difference is finite.
    inside = torch.zeros(1, 4, 4)
    inside[0, 0, 0] = 1.0
    assert delta_density(inside, _mask_tl(), combine="ratio").item() == math.inf
    assert delta_density(inside, _mask_tl()).item() == pytest.approx(0.25)


# ---------------------------------------------------------------- average precision


def test_average_precision_hand_computed():
    # Descending scores / labels: 1 T, .75 T, {.5 T, .5 F}, .25 T, 0 × 11 F.
    # AP = .25·1 + .25·1 + .25·(3/4) + .25·(4/5) = 0.8875 (the tied .5 pair is one threshold).
    assert average_precision(_map_a(), _mask_tl()).item() == pytest.approx(0.8875)
    expected = average_precision_score(
        _mask_tl().flatten().numpy(), (_map_a() / 4).flatten().numpy()
    )
    assert expected == pytest.approx(0.8875)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("levels", [None, 3, 8])
def test_average_precision_matches_sklearn(dtype, levels):
    rng = np.random.default_rng(1 if levels is None else levels)
    b, h, w = 12, 9, 11
    maps = rng.normal(size=(b, h, w))
    if levels is not None:  # quantised maps: many tied scores
        maps = np.round((maps - maps.min()) * levels / np.ptp(maps))
    masks = rng.random((b, h, w)) < rng.uniform(0.05, 0.9, size=(b, 1, 1))
    masks[0] = True  # a full region: AP = 1
    masks[1] = False
    masks[1, 0, 0] = True  # a single positive
    got = average_precision(torch.tensor(maps, dtype=dtype), torch.from_numpy(masks))
    assert got.dtype == dtype
    for i in range(b):
        s = (maps[i] - maps[i].min()) / np.ptp(maps[i])
        want = average_precision_score(masks[i].ravel(), s.ravel())
        assert got[i].item() == pytest.approx(want, abs=1e-6)


def test_average_precision_nan_for_empty_region():
    out = average_precision(
        _map_a().expand(2, 4, 4), torch.stack([_mask_tl()[0], torch.zeros(4, 4, dtype=torch.bool)])
    )
    assert out[0].item() == pytest.approx(0.8875)
    assert math.isnan(out[1].item())


# ---------------------------------------------------------- saliency precision / recall


def test_saliency_precision_exact():
    assert saliency_precision(_map_a(), _mask_tl()).item() == pytest.approx(2.5 / 3)
    assert math.isnan(saliency_precision(_map_a(), torch.zeros(1, 4, 4, dtype=torch.bool)).item())


def test_saliency_recall_exact():
    # Σs = 3, 75% = 2.25. Descending cumulative mass 1, 1.75, 2.25 reaches 2.25 at a 0.5
    # pixel (inclusive), so τ* = 0.5 and both tied 0.5 pixels are kept:
    # b = {(0,0), (0,1), (1,0), (2,3)} → 3 of the 4 region pixels.
    assert saliency_recall(_map_a(), _mask_tl()).item() == pytest.approx(0.75)
    # 50% = 1.5 is reached at the 0.75 pixel: b = {(0,0), (0,1)} → 2 / 4.
    assert saliency_recall(_map_a(), _mask_tl(), mass=0.5).item() == pytest.approx(0.5)
    # 100% keeps every pixel with positive s: 4 / 4.
    assert saliency_recall(_map_a(), _mask_tl(), mass=1.0).item() == pytest.approx(1.0)
    # A tiny mass keeps only the maximum.
    assert saliency_recall(_map_a(), _mask_tl(), mass=0.1).item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="mass"):
        saliency_recall(_map_a(), _mask_tl(), mass=0.0)
    assert math.isnan(saliency_recall(_map_a(), torch.zeros(1, 4, 4, dtype=torch.bool)).item())


# -------------------------------------------------------------- degenerate inputs, devices


def test_flat_and_non_finite_maps_are_nan_for_every_metric():
    maps = torch.stack([torch.full((4, 4), 3.0), _map_a()[0], _map_a()[0]])
    maps[2, 1, 1] = float("nan")
    masks = _mask_tl().expand(3, 4, 4)
    for name, fn in ALIGNMENT_METRICS.items():
        out = fn(maps, masks)
        assert math.isnan(out[0].item()), name
        assert not math.isnan(out[1].item()), name
        assert math.isnan(out[2].item()), name
    assert not threshold(maps, 0.5)[0].any()
    assert not threshold(maps, "mean_std")[0].any()


def test_bad_masks_are_clear_errors():
    with pytest.raises(ValueError, match="shape"):
        iou(_map_a(), torch.zeros(1, 4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="binary"):
        saliency_precision(_map_a(), torch.full((1, 4, 4), 0.5))
    with pytest.raises(ValueError, match="batched"):
        average_precision(_map_a()[0], _mask_tl()[0])


@pytest.mark.parametrize("device", DEVICES)
def test_dtypes_and_devices(device):
    m = _mask_tl().to(device)
    for dtype, out_dtype in [
        (torch.float64, torch.float64),
        (torch.float32, torch.float32),
        (torch.float16, torch.float32),
        (torch.int64, torch.float32),
    ]:
        maps = _map_a().to(device=device, dtype=dtype)
        scores = alignment_scores(maps, {"fg": m, "fg_float": m.double()})
        for region in ("fg", "fg_float"):
            got = {k: v.item() for k, v in scores[region].items()}
            for v in scores[region].values():
                assert v.dtype == out_dtype
                assert v.device.type == device
            assert got == pytest.approx(
                {
                    "iou": 0.6,
                    "pointing_game": 1.0,
                    "delta_density": 0.625 - 1 / 24,
                    "average_precision": 0.8875,
                    "saliency_precision": 2.5 / 3,
                    "saliency_recall": 0.75,
                }
            )


# ----------------------------------------------------------- registry and batching


def test_alignment_scores_match_single_functions_and_per_image_calls():
    g = torch.Generator().manual_seed(3)
    maps = torch.randn(5, 10, 13, generator=g, dtype=torch.float64)
    fg = torch.rand(5, 10, 13, generator=g) > 0.6
    masks = {"fg": fg, "bg": ~fg}
    opts = {"tau": "mean_std", "tolerance": 2, "mass": 0.6, "combine": "ratio"}
    scores = alignment_scores(maps, masks, **opts)
    assert list(scores) == ["fg", "bg"]
    for region, mask in masks.items():
        assert list(scores[region]) == list(ALIGNMENT_METRICS)
        for name, fn in ALIGNMENT_METRICS.items():
            batched = fn(maps, mask, **opts)
            torch.testing.assert_close(scores[region][name], batched, equal_nan=True)
            single = torch.cat([fn(maps[i : i + 1], mask[i : i + 1], **opts) for i in range(5)])
            torch.testing.assert_close(batched, single, equal_nan=True)


def test_registry_rejects_unknown_options():
    with pytest.raises(TypeError, match="unknown alignment option"):
        ALIGNMENT_METRICS["iou"](_map_a(), _mask_tl(), taus=0.5)
    with pytest.raises(TypeError, match="unknown alignment option"):
        alignment_scores(_map_a(), {"fg": _mask_tl()}, radius=3)
    # Options meant for other metrics are passed on only where they belong.
    assert ALIGNMENT_METRICS["saliency_precision"](
        _map_a(), _mask_tl(), tau=0.9, tolerance=3
    ).item() == pytest.approx(2.5 / 3)


# ---------------------------------------------------------------------- sanity baselines


def test_perfect_map_beats_half_baseline():
    h = w = 16
    mask = torch.zeros(1, h, w, dtype=torch.bool)
    mask[0, 4:12, 9:14] = True  # an object on the right
    perfect = mask.double()
    half = torch.zeros(1, h, w, dtype=torch.float64)
    half[0, :, : w // 2] = 1.0  # the `half` baseline: left half ones
    p = {k: v.item() for k, v in alignment_scores(perfect, {"fg": mask})["fg"].items()}
    assert p["iou"] == 1.0
    assert p["pointing_game"] == 1.0
    assert p["average_precision"] == pytest.approx(1.0)
    assert p["saliency_precision"] == 1.0
    assert p["saliency_recall"] == 1.0
    assert p["delta_density"] == 1.0
    b = {k: v.item() for k, v in alignment_scores(half, {"fg": mask})["fg"].items()}
    assert b["iou"] < p["iou"]
    assert b["average_precision"] < p["average_precision"]
    assert b["iou"] == 0.0  # the object lies in the right half
    assert b["pointing_game"] == 0.0
    assert b["average_precision"] == pytest.approx(mask.float().mean().item())  # chance level


# -------------------------------------------------------------------------- aggregation


def test_explanation_alignment_on_hand_made_frame():
    frame = pd.DataFrame(
        {
            "image_id": ["a", "b", "c", "a", "b", "c"],
            "method": ["gradcam"] * 3 + ["saliency"] * 3,
            "region": ["fg"] * 6,
            "iou": [0.5, 1.0, np.nan, 0.1, 0.2, 0.3],
            "pointing_game": [1.0, 0.0, 1.0, 0.0, 0.0, 1.0],
            "delta_density": [0.2, 0.4, np.nan, -0.1, 0.0, 0.1],
        }
    )
    ea = explanation_alignment(frame)
    assert list(ea.columns) == [
        "method",
        "region",
        "n_images",
        "EA_IoU",
        "n_iou",
        "EA_PG",
        "n_pointing_game",
        "EA_delta_density",
        "n_delta_density",
    ]
    row = ea.set_index("method").loc["gradcam"]
    assert row["n_images"] == 3
    assert row["EA_IoU"] == pytest.approx(0.75)
    assert row["n_iou"] == 2
    assert row["EA_PG"] == pytest.approx(2 / 3)
    assert row["EA_delta_density"] == pytest.approx(0.3)
    row = ea.set_index("method").loc["saliency"]
    assert row["EA_IoU"] == pytest.approx(0.2)
    assert row["EA_PG"] == pytest.approx(1 / 3)
    assert row["n_pointing_game"] == 3
    # Other groupings and explicit metric lists.
    by_region = explanation_alignment(frame, by="region", metrics=["iou"])
    assert by_region["EA_IoU"].item() == pytest.approx((0.5 + 1.0 + 0.1 + 0.2 + 0.3) / 5)
    with pytest.raises(KeyError, match="model"):
        explanation_alignment(frame, by=("model",))
    with pytest.raises(ValueError, match="no alignment metric"):
        explanation_alignment(frame[["method", "region"]])


def test_rank_spurious_candidates_order_and_ties():
    frame = pd.DataFrame(
        {
            "image_id": ["e", "d", "c", "b", "a", "f"],
            "delta_density": [0.3, -0.2, 0.1, -0.2, np.nan, 0.0],
            "label": ["x"] * 6,
        }
    )
    ranked = rank_spurious_candidates(frame, k=3)
    assert ranked["image_id"].tolist() == ["b", "d", "f"]  # -0.2 tie broken by image_id
    assert ranked["rank"].tolist() == [1, 2, 3]
    assert "label" in ranked.columns
    everything = rank_spurious_candidates(frame, k=20)
    assert everything["image_id"].tolist() == ["b", "d", "f", "c", "e"]  # NaN dropped
    assert rank_spurious_candidates(frame, metric="delta_density", k=1)["image_id"].item() == "b"
    with pytest.raises(KeyError, match="iou"):
        rank_spurious_candidates(frame, metric="iou")
    with pytest.raises(ValueError, match="k"):
        rank_spurious_candidates(frame, k=0)


# -------------------------------------------------------------------------------- plot


def test_ranking_mosaic_writes_png(tmp_path):
    rng = np.random.default_rng(0)
    items = []
    for i in range(7):
        image = rng.integers(0, 255, size=(32, 40, 3), dtype=np.uint8)
        sal = rng.random((32, 40))
        mask = np.zeros((32, 40), dtype=bool)
        mask[8:24, 10:30] = True
        items.append((image, sal, mask, f"img{i}\nΔ={-0.1 * i:.2f} c{i % 3}"))
    out = ranking_mosaic(items, tmp_path / "rank.png", title="lowest Δ density", cols=3)
    assert out == tmp_path / "rank.png"
    assert out.stat().st_size > 1000
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    empty = ranking_mosaic([], tmp_path / "empty.png")
    assert empty.stat().st_size > 0
    with pytest.raises(ValueError, match="saliency shape"):
        ranking_mosaic([(items[0][0], np.zeros((5, 5)), None, "x")], tmp_path / "bad.png")
