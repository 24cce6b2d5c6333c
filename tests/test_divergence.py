"""Model divergence, library level: distances on hand-computed cases, the hypothesis test on
constructed pairs (identical models -> undefined; saliency moving to the background exactly
where predictions flip -> supported) and bootstrap coverage in a simulation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from scipy.spatial.distance import jensenshannon

from sage.divergence.behaviour import (
    behaviour_frame,
    behaviour_summary,
    flip_matrix,
    js_divergence,
    js_terms,
    per_class_table,
)
from sage.divergence.embedding import embedding_matrix, fit_pca
from sage.divergence.hypothesis import (
    across_pairs,
    correlate,
    partial_spearman,
    pearson_rows,
    spearman_rows,
    verdict,
)
from sage.divergence.report import fg_bg_table, markdown_table, measure_label
from sage.divergence.saliency import (
    cosine_distance,
    map_divergence,
    rms_distance,
    spearman_distance,
    ssim_distance,
    token_divergence,
    token_stats,
)
from sage.saliency.normalize import normalize_batch
from sage.saliency.tokens import tokenize_grids

# ---------------------------------------------------------------- distances, by hand


def test_js_hand_cases_and_scipy():
    p = torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.2, 0.8]], dtype=torch.float64)
    q = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.2, 0.8]], dtype=torch.float64)
    js = js_divergence(p, q)
    # disjoint supports: 1 bit; [.5,.5] vs [1,0]: m = [.75,.25],
    # ½(.5·log2(.5/.75) + .5·log2(.5/.25)) + ½ log2(1/.75) = 0.311278
    assert js[0].item() == pytest.approx(1.0)
    assert js[1].item() == pytest.approx(
        0.5 * (0.5 * math.log2(0.5 / 0.75) + 0.5 * 1.0) + 0.5 * math.log2(1 / 0.75)
    )
    assert js[2].item() == 0.0  # equal distributions: exactly zero, not rounding noise
    for row in range(3):
        ref = jensenshannon(p[row].numpy(), q[row].numpy(), base=2) ** 2
        assert js[row].item() == pytest.approx(ref, abs=1e-12)
    terms = js_terms(p, q)
    assert (terms >= 0).all() and torch.allclose(terms.sum(1), js)


def test_map_divergence_splits_js_into_fg_and_bg_exactly():
    pdf_a = torch.zeros(3, 6, 6, dtype=torch.float64)
    pdf_b = torch.zeros(3, 6, 6, dtype=torch.float64)
    mask = torch.zeros(3, 6, 6, dtype=torch.bool)
    mask[:, :, :3] = True  # left half is the foreground
    pdf_a[0, 0, 0] = 1  # a on a foreground pixel, b on a background pixel: JS = 1 bit,
    pdf_b[0, 0, 5] = 1  # half of it on each side
    pdf_a[1] = pdf_b[1] = 1 / 36  # identical maps
    pdf_a[2, 2, 1], pdf_b[2, 2, 1] = 0.5, 0.25  # a second case: random spread
    pdf_a[2, 4, 4], pdf_b[2, 4, 4] = 0.5, 0.75
    out = map_divergence(pdf_a, pdf_b, pdf_a, pdf_b, mask, torch.tensor([False, False, False]))
    assert out["js_map"][0].item() == pytest.approx(1.0)
    assert (out["js_fg"][0].item(), out["js_bg"][0].item()) == pytest.approx((0.5, 0.5))
    assert out["fg_share"][0].item() == pytest.approx(0.5)
    assert out["js_map"][1].item() == 0 and out["ssim_dist"][1].item() == 0
    assert math.isnan(out["fg_share"][1].item())  # no divergence: no share to speak of
    assert torch.allclose(out["js_fg"] + out["js_bg"], out["js_map"])
    ref = jensenshannon(pdf_a[2].flatten().numpy(), pdf_b[2].flatten().numpy(), base=2) ** 2
    assert out["js_map"][2].item() == pytest.approx(ref)
    # a flagged (all-zero) map on either side: every divergence NaN, never a number
    flagged = map_divergence(pdf_a, pdf_b, pdf_a, pdf_b, mask, torch.tensor([True, False, True]))
    assert all(math.isnan(v[0].item()) and math.isnan(v[2].item()) for v in flagged.values())
    assert flagged["js_map"][1].item() == 0


def test_ssim_distance_hand_case():
    zeros, ones = torch.zeros(1, 8, 8), torch.ones(1, 8, 8)
    # μx = 0, μy = 1, no variance, data range 1: SSIM = C1 / (1 + C1), C1 = (0.01·1)²
    c1 = 0.01**2
    assert ssim_distance(zeros, ones).item() == pytest.approx(1 - c1 / (1 + c1))
    x = torch.rand(2, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.equal(ssim_distance(x, x), torch.zeros(2, dtype=torch.float64))
    assert (ssim_distance(x, x.flip(0)) > 0).all()


def test_spearman_rms_and_cosine_distances_by_hand():
    a = torch.tensor([[1.0, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], [0, 0, 0, 0]])
    b = torch.tensor([[4.0, 3, 2, 1], [1, 3, 2, 4], [1, 2, 3, 4], [1, 2, 3, 4]])
    d = spearman_distance(a, b)
    # reversed ranking: ρ = -1 -> 2; one swap: ρ = 1 - 6·2/(4·15) = 0.8 -> 0.2; same -> 0
    assert d[:3].tolist() == pytest.approx([2.0, 0.2, 0.0])
    assert math.isnan(d[3].item())  # a constant side has no ranking
    u = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    v = torch.tensor([[0.0, 1.0], [2.0, 2.0], [1.0, 0.0]])
    assert rms_distance(u, v).tolist() == pytest.approx([1.0, 1.0, math.sqrt(0.5)])
    cos = cosine_distance(u, v)
    assert cos[:2].tolist() == pytest.approx([1.0, 0.0]) and math.isnan(cos[2].item())


def test_token_distances_zero_for_identical_tokens_and_nan_for_flagged_maps():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(4, 16, 16, generator=g)
    mask = torch.zeros(4, 16, 16, dtype=torch.bool)
    mask[:, 4:12, 4:12] = True
    sb = normalize_batch(maps, mask)
    tok = tokenize_grids(sb.pdf, mask, [(2, 2), (4, 4)])
    other = tokenize_grids(normalize_batch(maps.flip(2), mask).pdf, mask, [(2, 2), (4, 4)])
    stats_ = {k: token_stats([tok[k], other[k]]) for k in tok}
    invalid = torch.tensor([False, False, False, True])
    same = token_divergence(tok, tok, stats_, invalid)
    assert {"spearman_4x4_fg", "patch_kl_2x2_bg", "euclid_4x4_whole", "cosine_2x2_fg"} <= set(same)
    for name, v in same.items():
        assert torch.isnan(v[3]), name
        assert torch.allclose(v[:3], torch.zeros(3, dtype=v.dtype), atol=1e-9), name
    moved = token_divergence(tok, other, stats_, invalid)
    assert (moved["euclid_4x4_whole"][:3] > 0).all()
    # the standardisation: every (region, feature) of the pooled tokens has mean 0, std 1
    mean, std = stats_["4x4"]
    pooled = torch.cat([tok["4x4"], other["4x4"]]).permute(0, 2, 3, 1, 4).reshape(-1, 3, 6)
    z = (pooled.double() - mean) / std
    assert torch.allclose(z.mean(0), torch.zeros(3, 6, dtype=torch.float64), atol=1e-9)


# ---------------------------------------------------------------- behaviour


def test_behaviour_frame_flips_and_aggregates():
    labels = np.array([0, 0, 1, 1, 2])
    pa = np.eye(3)[[0, 1, 1, 0, 1]] * 0.7 + 0.1  # a predicts 0 1 1 0 1
    pb = np.eye(3)[[0, 0, 2, 1, 0]] * 0.7 + 0.1  # b predicts 0 0 2 1 0
    frame = behaviour_frame([f"i{k}" for k in range(5)], labels, pa, pb, ["x", "y", "z"])
    assert frame.disagree.tolist() == [False, True, True, True, True]
    assert frame.flip.tolist() == [
        "both_correct",
        "fixed",
        "broken",
        "fixed",
        "different_wrong",
    ]
    assert frame.js_pred[0] == 0 and (frame.js_pred[1:] > 0).all()
    flips = flip_matrix(frame, ["x", "y", "z"])
    assert flips.loc["y", "x"] == 2 and flips.loc["x", "x"] == 1 and flips.to_numpy().sum() == 5
    summary = behaviour_summary(frame)
    assert summary["disagreement"] == pytest.approx(0.8)
    assert summary["acc_a"] == pytest.approx(0.4) and summary["acc_b"] == pytest.approx(0.6)
    assert summary["flip/fixed"] == pytest.approx(0.4)
    per_class = per_class_table(frame, ["x", "y", "z"])
    assert per_class.n.tolist() == [2, 2, 1]
    assert per_class.disagreement.tolist() == pytest.approx([0.5, 1.0, 1.0])


# ---------------------------------------------------------------- the hypothesis test


def test_rank_and_pearson_rows_match_scipy_with_ties():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 5, size=(4, 30)).astype(float)  # many ties
    y = x + rng.normal(size=(4, 30))
    for row in range(4):
        assert spearman_rows(x[row], y[row]) == pytest.approx(stats.spearmanr(x[row], y[row])[0])
        assert pearson_rows(x[row], y[row]) == pytest.approx(stats.pearsonr(x[row], y[row])[0])
    assert np.isnan(spearman_rows(np.ones(5), np.arange(5.0)))


def _pair_maps(n: int, moved: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Map divergences of a constructed pair: b's saliency goes to the background on ``moved``."""
    g = torch.Generator().manual_seed(seed)
    size = 16
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    mask = (xx < size // 2).expand(n, size, size)  # foreground: the left half

    def blob(cx: torch.Tensor) -> torch.Tensor:
        cy = 8 + torch.randn(n, generator=g)
        return torch.exp(-((yy - cy[:, None, None]) ** 2 + (xx - cx[:, None, None]) ** 2) / 8)

    fg_x = 4 + 0.5 * torch.randn(n, generator=g)
    maps_a = blob(fg_x)
    maps_b = maps_a + 0.02 * torch.rand(n, size, size, generator=g)  # small differences
    bg = blob(12 + 0.5 * torch.randn(n, generator=g))
    maps_b[torch.from_numpy(moved)] = bg[torch.from_numpy(moved)]
    sa, sb = normalize_batch(maps_a, mask), normalize_batch(maps_b, mask)
    out = map_divergence(sa.pdf, sb.pdf, sa.minmax, sb.minmax, mask, sa.zero | sb.zero)
    return {k: v.numpy() for k, v in out.items()} | {
        "a_fg_a": sa.a_fg.numpy(),
        "a_fg_b": sb.a_fg.numpy(),
    }


def _pair_probs(n: int, flipped: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    logits = rng.normal(size=(n, 4))
    logits[np.arange(n), labels] += 3
    pa = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    logits_b = logits + 0.05 * rng.normal(size=(n, 4))
    logits_b[flipped, (labels[flipped] + 1) % 4] += 6  # b predicts another class there
    pb = np.exp(logits_b) / np.exp(logits_b).sum(1, keepdims=True)
    return pa, pb


def test_identical_models_give_zero_divergence_and_an_undefined_verdict():
    n = 40
    none = np.zeros(n, bool)
    pa, _ = _pair_probs(n, none, 0)
    maps = _pair_maps(n, none, 0)
    sal = {k: np.zeros(n) for k in ("js_map", "ssim_dist")}  # identical maps: exact zeros
    frame = behaviour_frame([str(i) for i in range(n)], pa.argmax(1), pa, pa.copy(), list("abcd"))
    assert (frame.js_pred == 0).all() and not frame.disagree.any()
    corr = correlate(frame.js_pred.to_numpy(), sal | {"js_fg": maps["js_fg"]}, n_boot=100)
    assert corr.status.eq("undefined: no behavioural divergence").all()
    assert corr.spearman.isna().all() and corr.spearman_lo.isna().all()
    status, line = verdict(corr.iloc[0], 0.05)
    assert status == "undefined" and line.startswith("undefined: no behavioural divergence")
    # rounding noise below the floor is not divergence either
    noisy = correlate(np.full(n, 1e-13) * np.arange(n), {"js_map": maps["js_map"]}, n_boot=50)
    assert noisy.status.iloc[0] == "undefined: no behavioural divergence"
    # and saliency that does not diverge is called so (behaviour diverging)
    beh = np.linspace(0, 1, n)
    flat = correlate(beh, {"js_map": np.zeros(n)}, n_boot=50)
    assert flat.status.iloc[0] == "undefined: no saliency divergence"


def test_saliency_moving_to_the_background_where_predictions_flip_is_supported():
    n = 80
    rng = np.random.default_rng(5)
    flipped = rng.random(n) < 0.25
    pa, pb = _pair_probs(n, flipped, 1)
    maps = _pair_maps(n, flipped, 1)
    frame = behaviour_frame([str(i) for i in range(n)], pa.argmax(1), pa, pb, list("abcd"))
    assert frame.disagree.to_numpy().tolist() == flipped.tolist()
    corr = correlate(
        frame.js_pred.to_numpy(),
        {k: maps[k] for k in ("js_map", "js_fg", "js_bg", "ssim_dist")},
        n_boot=500,
        alpha=0.05,
        rng=np.random.default_rng(0),
    ).set_index("measure")
    head = corr.loc["js_map"]
    assert head.status == "ok" and head.spearman > 0.5 and head.spearman_lo > 0
    assert head.spearman_p < 1e-6 and head.pearson_lo > 0
    status, line = verdict(head.to_dict() | {"measure": "js_map"}, 0.05)
    assert status == "supported"
    assert line.startswith("supported at α=0.05: Spearman ρ=")
    assert line.endswith("between JS(pred) and JS(S̃) over 80 images")
    assert f"{head.spearman:.2f} [{head.spearman_lo:.2f}, {head.spearman_hi:.2f}]" in line
    # the divergence lives on the background of the flipped images
    table = fg_bg_table(
        frame.assign(**{k: maps[k] for k in ("js_fg", "js_bg", "a_fg_a", "a_fg_b")})
    )
    by = table.set_index("group")
    assert by.loc["class differs", "js_bg"] > 5 * by.loc["same class", "js_bg"]
    # JS is symmetric (the moved mass diverges on both sides); A_bg gives the direction
    assert by.loc["class differs", "fg_share"] == pytest.approx(0.5, abs=0.05)
    assert by.loc["class differs", "a_bg_b"] > 0.8 > 0.2 > by.loc["class differs", "a_bg_a"]
    assert by.loc["same class", "a_bg_b"] < 0.2
    # same numbers with the same seed
    again = correlate(
        frame.js_pred.to_numpy(),
        {"js_map": maps["js_map"]},
        n_boot=500,
        rng=np.random.default_rng(0),
    )
    assert again.spearman_lo.iloc[0] == head.spearman_lo
    # and unrelated saliency movements are not "supported"
    shuffled = correlate(
        frame.js_pred.to_numpy(),
        {"js_map": _pair_maps(n, rng.random(n) < 0.25, 2)["js_map"]},
        n_boot=500,
        rng=np.random.default_rng(0),
    )
    assert verdict(shuffled.iloc[0], 0.05)[0] == "not supported"
    # a significant negative association is "not supported", and said to run the other way
    status, line = verdict(
        {"n": 80, "status": "ok", "spearman": -0.3, "spearman_lo": -0.45, "spearman_hi": -0.1},
        0.05,
    )
    assert status == "not supported" and line.endswith("they move in opposite directions)")
    assert line.startswith("not supported at α=0.05: Spearman ρ=-0.30 [-0.45, -0.10] between")


def test_bootstrap_intervals_cover_the_true_correlation():
    rho, n, sims = 0.5, 120, 150
    rng = np.random.default_rng(11)
    cov = np.array([[1, rho], [rho, 1]])
    true_spearman = 6 / np.pi * np.arcsin(rho / 2)  # for a bivariate normal
    hits = {"pearson": 0, "spearman": 0}
    for _ in range(sims):
        xy = rng.multivariate_normal([0, 0], cov, size=n)
        row = correlate(xy[:, 0], {"y": xy[:, 1]}, n_boot=400, alpha=0.1, rng=rng).iloc[0]
        hits["pearson"] += row.pearson_lo <= rho <= row.pearson_hi
        hits["spearman"] += row.spearman_lo <= true_spearman <= row.spearman_hi
    # nominal 90 %; with 150 simulations the standard error of the coverage is ~2.5 %
    for kind, h in hits.items():
        assert 0.82 <= h / sims <= 0.97, (kind, h / sims)


def test_partial_spearman_separates_the_part_that_tracks_behaviour():
    rng = np.random.default_rng(2)
    n = 200
    fg = rng.random(n)
    bg = rng.random(n)
    beh = fg + 0.2 * rng.random(n)
    carried = partial_spearman(beh, fg, bg, n_boot=300, rng=rng)
    other = partial_spearman(beh, bg, fg, n_boot=300, rng=rng)
    assert carried["estimate"] > 0.8 and carried["lo"] > 0.7
    assert abs(other["estimate"]) < 0.2 and other["lo"] < 0 < other["hi"]


def test_across_pairs_pair_means_and_pooled():
    rng = np.random.default_rng(4)
    n, pairs = 60, 3
    level = np.array([0.1, 0.3, 0.6])  # pairs diverge more or less, in both senses
    sal = level + 0.05 * rng.random((n, pairs))
    beh = level + 0.05 * rng.random((n, pairs))
    res = across_pairs(beh, sal, n_boot=200, rng=rng).set_index("level")
    assert res.loc["pair_means", "n"] == 3 and res.loc["pooled", "n"] == n * pairs
    assert res.loc["pair_means", "spearman"] == pytest.approx(1.0)
    assert res.loc["pooled", "spearman_lo"] > 0.5
    assert verdict(res.loc["pooled"].to_dict(), 0.05, unit="points")[0] == "supported"
    two = across_pairs(beh[:, :2], sal[:, :2], n_boot=50).set_index("level")
    assert two.loc["pair_means", "status"].startswith("undefined")


# ---------------------------------------------------------------- embedding and report


def test_embedding_and_pca():
    g = torch.Generator().manual_seed(0)
    mask = torch.ones(6, 16, 16, dtype=torch.bool)
    mask[:, :, :8] = False
    tok = tokenize_grids(
        normalize_batch(torch.rand(6, 16, 16, generator=g), mask).pdf, mask, [(2, 2), (4, 4)]
    )
    st = {k: token_stats([t]) for k, t in tok.items()}
    x = embedding_matrix(tok, st)
    assert x.shape == (6, 3 * 5 * (4 + 16))  # regions × features × cells over both grids
    x[2] = np.nan
    z, explained, d = fit_pca(x, 10, 0)
    assert d == 5 and z.shape == (6, 5) and np.isnan(z[2]).all()
    assert np.all(np.diff(explained) <= 1e-12) and explained.sum() <= 1 + 1e-9


def test_markdown_and_labels():
    frame = pd.DataFrame({"a": ["x|y"], "b": [np.nan], "c": [0.12345], "n": [3]})
    assert markdown_table(frame).splitlines()[2] == "| x\\|y | n/a | 0.123 | 3 |"
    assert measure_label("euclid_4x4_fg") == "token euclid 4x4 fg"
    assert measure_label("patch_kl_8x8_whole") == "token patch KL 8x8 whole"
    assert measure_label("js_map") == "JS(S̃)"
