"""Normalisation, fg/bg mass, tokens and token analyses (docs/metrics.md §2, §3) on hand-built maps."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.stats import spearmanr

from sage.plots.tokens import plot_token_grid
from sage.saliency.normalize import fg_bg_mass, minmax, normalize_batch, relu_pdf
from sage.saliency.token_analysis import compare_tables, fg_bg_ratio, patch_kl, spearman
from sage.saliency.tokens import (
    FEATURES,
    REGIONS,
    cell_bounds,
    tokenize,
    tokenize_grids,
    tokens_to_frame,
)

MASS, MEAN, MAX, COM_Y, COM_X, FGFRAC = range(6)
WHOLE, FG, BG = range(3)


def _centres(n: int) -> torch.Tensor:
    """Cell centres of n equal bands, normalised: (2k+1)/(2n)."""
    return (2 * torch.arange(n, dtype=torch.float32) + 1) / (2 * n)


# ---------------------------------------------------------------- normalisation (§3.1)


def test_relu_pdf_removes_negatives_and_sums_to_one():
    maps = torch.tensor([[[-1.0, 2.0], [0.0, 6.0]]])
    pdf, zero = relu_pdf(maps)
    assert torch.equal(pdf, torch.tensor([[[0.0, 0.25], [0.0, 0.75]]]))
    assert pdf.sum().item() == pytest.approx(1.0)
    assert zero.tolist() == [False]


def test_relu_pdf_flags_all_zero_all_negative_and_nonfinite_maps():
    maps = torch.stack(
        [
            torch.zeros(3, 3),
            -torch.ones(3, 3),
            torch.full((3, 3), float("nan")),
            torch.ones(3, 3),
        ]
    )
    maps[3, 0, 0] = float("inf")  # a single inf would otherwise give inf/inf = NaN
    pdf, zero = relu_pdf(maps)
    assert zero.tolist() == [True, True, True, True]
    assert torch.equal(pdf, torch.zeros_like(pdf))
    assert not pdf.isnan().any()


def test_relu_pdf_dtypes_and_huge_values():
    half, _ = relu_pdf(torch.ones(1, 4, 4, dtype=torch.float16))
    assert half.dtype == torch.float32
    assert torch.allclose(half, torch.full((1, 4, 4), 1 / 16))
    double, _ = relu_pdf(torch.ones(1, 4, 4, dtype=torch.float64))
    assert double.dtype == torch.float64
    big, zero = relu_pdf(torch.full((1, 100, 100), 3e36))  # Σ would overflow float32
    assert not zero.item()
    assert torch.allclose(big, torch.full((1, 100, 100), 1e-4))


def test_minmax_and_flat_flag():
    maps = torch.tensor([[[-1.0, 2.0], [0.0, 6.0]], [[3.0, 3.0], [3.0, 3.0]]])
    scaled, flat = minmax(maps)
    assert torch.allclose(scaled[0], torch.tensor([[0.0, 3 / 7], [1 / 7, 1.0]]))
    assert torch.equal(scaled[1], torch.zeros(2, 2))
    assert flat.tolist() == [False, True]


def test_fg_bg_mass_hand_values():
    pdf, _ = relu_pdf(torch.tensor([[[-1.0, 2.0], [0.0, 6.0]], [[1.0, 1.0], [1.0, 1.0]]]))
    mask = torch.tensor([[[1, 1], [0, 0]], [[1, 0], [0, 0]]], dtype=torch.bool)
    a_fg, a_bg = fg_bg_mass(pdf, mask)
    assert torch.allclose(a_fg, torch.tensor([0.25, 0.25]))
    assert torch.allclose(a_bg, torch.tensor([0.75, 0.75]))
    a_fg_f, a_bg_f = fg_bg_mass(pdf, mask.float())  # {0,1} floats are accepted too
    assert torch.equal(a_fg_f, a_fg) and torch.equal(a_bg_f, a_bg)


def test_fg_bg_mass_of_flagged_map_is_zero():
    pdf, zero = relu_pdf(-torch.ones(1, 4, 4))
    a_fg, a_bg = fg_bg_mass(pdf, torch.ones(1, 4, 4, dtype=torch.bool))
    assert zero.item() and a_fg.item() == 0 and a_bg.item() == 0


def test_mask_shape_mismatch_and_soft_mask_are_errors():
    pdf = torch.full((2, 4, 4), 1 / 16)
    with pytest.raises(ValueError, match=r"mask shape \(2, 4, 5\).*\(2, 4, 4\)"):
        fg_bg_mass(pdf, torch.ones(2, 4, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="binary"):
        fg_bg_mass(pdf, torch.full((2, 4, 4), 0.5))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        relu_pdf(torch.ones(4, 4))


def test_normalize_batch_bundles_everything():
    maps = torch.tensor([[[-1.0, 2.0], [0.0, 6.0]], [[0.0, 0.0], [0.0, 0.0]]])
    masks = torch.tensor([[[1, 1], [0, 0]], [[1, 1], [0, 0]]], dtype=torch.bool)
    out = normalize_batch(maps, masks)
    assert len(out) == 2
    assert out.raw is maps
    assert out.zero.tolist() == [False, True]
    assert out.flat.tolist() == [False, True]
    assert torch.allclose(out.a_fg, torch.tensor([0.25, 0.0]))
    assert torch.allclose(out.a_bg, torch.tensor([0.75, 0.0]))
    assert torch.allclose(out.minmax[0], torch.tensor([[0.0, 3 / 7], [1 / 7, 1.0]]))


# ---------------------------------------------------------------- tokens (§3.2)


def test_cell_bounds_partition():
    assert cell_bounds(8, 4).tolist() == [0, 2, 4, 6, 8]
    assert cell_bounds(10, 4).tolist() == [0, 2, 5, 7, 10]
    assert cell_bounds(7, 4).tolist() == [0, 1, 3, 5, 7]
    assert cell_bounds(4, 4).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="size >= n"):
        cell_bounds(3, 4)


def test_single_hot_pixel():
    pdf = torch.zeros(1, 8, 8)
    pdf[0, 5, 2] = 1.0  # row 5, column 2 → cell (2, 1) of a 4×4 grid of 2×2 cells
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    t = tokenize(pdf, mask, (4, 4))
    assert t.shape == (1, 3, 4, 4, 6)
    whole = t[0, WHOLE]
    expected_mass = torch.zeros(4, 4)
    expected_mass[2, 1] = 1.0
    assert torch.equal(whole[..., MASS], expected_mass)
    assert torch.equal(whole[..., MEAN], expected_mass / 4)
    assert torch.equal(whole[..., MAX], expected_mass)
    assert whole[2, 1, COM_Y].item() == pytest.approx(5.5 / 8)
    assert whole[2, 1, COM_X].item() == pytest.approx(2.5 / 8)
    # Every other cell (and every cell of an empty region) sits at its cell centre.
    centre_y = _centres(4)[:, None].expand(4, 4).clone()
    centre_x = _centres(4)[None, :].expand(4, 4).clone()
    centre_y[2, 1], centre_x[2, 1] = 5.5 / 8, 2.5 / 8
    assert torch.allclose(whole[..., COM_Y], centre_y)
    assert torch.allclose(whole[..., COM_X], centre_x)
    # Mask is empty: fg is all zero with cell-centre centroids, bg equals whole.
    assert torch.equal(t[0, FG, ..., MASS], torch.zeros(4, 4))
    assert torch.allclose(t[0, FG, ..., COM_Y], _centres(4)[:, None].expand(4, 4))
    assert torch.equal(t[0, BG], whole)
    assert torch.equal(t[0, :, :, :, FGFRAC], torch.zeros(3, 4, 4))


def test_uniform_map():
    pdf = torch.full((1, 8, 8), 1 / 64)
    t = tokenize(pdf, torch.ones(1, 8, 8, dtype=torch.bool), (4, 4))[0, WHOLE]
    assert torch.allclose(t[..., MASS], torch.full((4, 4), 1 / 16))
    assert torch.allclose(t[..., MEAN], torch.full((4, 4), 1 / 64))
    assert torch.allclose(t[..., MAX], torch.full((4, 4), 1 / 64))
    assert torch.allclose(t[..., COM_Y], _centres(4)[:, None].expand(4, 4))
    assert torch.allclose(t[..., COM_X], _centres(4)[None, :].expand(4, 4))
    assert torch.equal(t[..., FGFRAC], torch.ones(4, 4))


def test_mask_split_uniform_map():
    # Foreground = columns 0..2 of 8: column cells hold fg fractions 1, 1/2, 0, 0.
    pdf = torch.full((1, 8, 8), 1 / 64)
    mask = torch.zeros(1, 8, 8, dtype=torch.bool)
    mask[..., :3] = True
    t = tokenize(pdf, mask, (4, 4))[0]
    row = lambda *v: torch.tensor(v).expand(4, 4)  # noqa: E731  same value down every row
    assert torch.allclose(t[FG, ..., MASS], row(4 / 64, 2 / 64, 0, 0))
    assert torch.allclose(t[BG, ..., MASS], row(0, 2 / 64, 4 / 64, 4 / 64))
    assert torch.allclose(t[FG, ..., MAX], row(1 / 64, 1 / 64, 0, 0))
    assert torch.allclose(t[BG, ..., MAX], row(0, 1 / 64, 1 / 64, 1 / 64))
    # Centroids: fg in cell column 1 is pixel column 2 only, bg is column 3; empty → centre.
    assert torch.allclose(t[WHOLE, ..., COM_X], row(1 / 8, 3 / 8, 5 / 8, 7 / 8))
    assert torch.allclose(t[FG, ..., COM_X], row(1 / 8, 2.5 / 8, 5 / 8, 7 / 8))
    assert torch.allclose(t[BG, ..., COM_X], row(1 / 8, 3.5 / 8, 5 / 8, 7 / 8))
    for region in REGIONS:
        assert torch.allclose(t[REGIONS.index(region), ..., FGFRAC], row(1, 0.5, 0, 0))


def test_mask_split_random_map_regions_add_up():
    torch.manual_seed(0)
    pdf, _ = relu_pdf(torch.randn(3, 16, 12))
    mask = torch.zeros(3, 16, 12, dtype=torch.bool)
    mask[..., :6] = True  # left half fg
    t = tokenize(pdf, mask, (4, 4))
    # Whole = fg + bg for mass and mean; whole max = max of fg and bg maxima.
    assert torch.allclose(t[:, FG, ..., MASS] + t[:, BG, ..., MASS], t[:, WHOLE, ..., MASS])
    assert torch.allclose(t[:, FG, ..., MEAN] + t[:, BG, ..., MEAN], t[:, WHOLE, ..., MEAN])
    assert torch.equal(torch.maximum(t[:, FG, ..., MAX], t[:, BG, ..., MAX]), t[:, WHOLE, ..., MAX])
    # fg tokens are zero on the bg side (cell columns 2, 3) and bg on the fg side.
    assert torch.equal(t[:, FG, :, 2:, : MAX + 1], torch.zeros(3, 4, 2, 3))
    assert torch.equal(t[:, BG, :, :2, : MAX + 1], torch.zeros(3, 4, 2, 3))
    assert torch.allclose(t[:, WHOLE, ..., MASS].sum((1, 2)), torch.ones(3))
    assert torch.allclose(
        t[:, FG, ..., MASS].sum((1, 2)) + t[:, BG, ..., MASS].sum((1, 2)), torch.ones(3)
    )
    expected_fgfrac = torch.tensor([1.0, 1.0, 0.0, 0.0]).expand(3, 3, 4, 4)
    assert torch.equal(t[..., FGFRAC], expected_fgfrac)


def _reference_tokens(pdf: torch.Tensor, mask: torch.Tensor, p: int, q: int) -> torch.Tensor:
    """Cell-by-cell loop: the obvious (slow) definition (docs/metrics.md §3), for comparison."""
    b, h, w = pdf.shape
    ys, xs = cell_bounds(h, p).tolist(), cell_bounds(w, q).tolist()
    m = mask.to(pdf.dtype)
    regions = torch.stack([pdf, pdf * m, pdf * (1 - m)], 1)
    out = torch.zeros(b, 3, p, q, 6, dtype=pdf.dtype)
    yy = (torch.arange(h, dtype=pdf.dtype) + 0.5) / h
    xx = (torch.arange(w, dtype=pdf.dtype) + 0.5) / w
    for i in range(p):
        for j in range(q):
            cell = regions[..., ys[i] : ys[i + 1], xs[j] : xs[j + 1]]
            mass = cell.sum((-1, -2))
            area = cell.shape[-1] * cell.shape[-2]
            cy = (cell.sum(-1) * yy[ys[i] : ys[i + 1]]).sum(-1)
            cx = (cell.sum(-2) * xx[xs[j] : xs[j + 1]]).sum(-1)
            centre_y = (ys[i] + ys[i + 1]) / 2 / h
            centre_x = (xs[j] + xs[j + 1]) / 2 / w
            out[:, :, i, j, MASS] = mass
            out[:, :, i, j, MEAN] = mass / area
            out[:, :, i, j, MAX] = cell.amax((-1, -2))
            out[:, :, i, j, COM_Y] = torch.where(mass > 0, cy / mass.clamp_min(1e-30), centre_y)
            out[:, :, i, j, COM_X] = torch.where(mass > 0, cx / mass.clamp_min(1e-30), centre_x)
            frac = m[:, ys[i] : ys[i + 1], xs[j] : xs[j + 1]].sum((-1, -2)) / area
            out[:, :, i, j, FGFRAC] = frac[:, None]
    return out


def test_uneven_partition_10x7_on_4x4():
    # Rows [0,2,5,7,10] → heights 2,3,2,3; columns [0,1,3,5,7] → widths 1,2,2,2.
    heights = torch.tensor([2.0, 3.0, 2.0, 3.0])
    widths = torch.tensor([1.0, 2.0, 2.0, 2.0])
    area = heights[:, None] * widths[None, :]
    uniform = torch.full((1, 10, 7), 1 / 70)
    t = tokenize(uniform, torch.ones(1, 10, 7, dtype=torch.bool), (4, 4))[0, WHOLE]
    assert torch.allclose(t[..., MASS], area / 70)  # every pixel counted exactly once
    assert torch.allclose(t[..., MEAN], torch.full((4, 4), 1 / 70))
    cell_sizes = t[..., MASS] / t[..., MEAN]
    assert torch.allclose(cell_sizes, area)
    assert cell_sizes.sum().item() == pytest.approx(70)
    centre_y = torch.tensor([1.0, 3.5, 6.0, 8.5]) / 10
    centre_x = torch.tensor([0.5, 2.0, 4.0, 6.0]) / 7
    assert torch.allclose(t[..., COM_Y], centre_y[:, None].expand(4, 4))
    assert torch.allclose(t[..., COM_X], centre_x[None, :].expand(4, 4))

    torch.manual_seed(1)
    pdf, _ = relu_pdf(torch.randn(4, 10, 7))
    mask = torch.rand(4, 10, 7) > 0.5
    got = tokenize(pdf, mask, (4, 4))
    assert torch.allclose(got[:, WHOLE, ..., MASS].sum((1, 2)), torch.ones(4))
    assert torch.allclose(got, _reference_tokens(pdf, mask, 4, 4), atol=1e-6)


def test_grid_larger_than_map_is_an_error():
    with pytest.raises(ValueError, match="size >= n"):
        tokenize(torch.full((1, 3, 8), 1 / 24), torch.ones(1, 3, 8, dtype=torch.bool), (4, 4))


def test_batch_equals_each_image_alone():
    torch.manual_seed(2)
    pdf, _ = relu_pdf(torch.randn(5, 24, 20))
    pdf[3] = 0  # a flagged zero map in the middle of the batch
    mask = torch.rand(5, 24, 20) > 0.3
    batch = tokenize_grids(pdf, mask, grids=((4, 4), (8, 8), (3, 5)))
    assert set(batch) == {"4x4", "8x8", "3x5"}
    for key, grid in (("4x4", (4, 4)), ("8x8", (8, 8)), ("3x5", (3, 5))):
        alone = torch.cat([tokenize(pdf[i : i + 1], mask[i : i + 1], grid) for i in range(5)])
        assert torch.allclose(batch[key], alone, atol=1e-7)
        assert torch.allclose(batch[key], _reference_tokens(pdf, mask, *grid), atol=1e-6)
    assert torch.equal(batch["4x4"][3, ..., : MAX + 1], torch.zeros(3, 4, 4, 3))


def test_float64_stays_float64():
    torch.manual_seed(3)
    pdf64, _ = relu_pdf(torch.randn(2, 16, 16, dtype=torch.float64))
    mask = torch.rand(2, 16, 16) > 0.5
    t64 = tokenize(pdf64, mask, (4, 4))
    assert t64.dtype == torch.float64
    assert torch.allclose(t64, _reference_tokens(pdf64, mask, 4, 4), atol=1e-12)
    t32 = tokenize(pdf64.float(), mask, (4, 4))
    assert t32.dtype == torch.float32
    assert torch.allclose(t32.double(), t64, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    torch.manual_seed(4)
    maps = torch.randn(3, 32, 24)
    masks = torch.rand(3, 32, 24) > 0.5
    cpu = normalize_batch(maps, masks)
    gpu = normalize_batch(maps.cuda(), masks.cuda())
    assert gpu.pdf.device.type == "cuda" and gpu.a_fg.device.type == "cuda"
    assert torch.allclose(gpu.a_fg.cpu(), cpu.a_fg, atol=1e-6)
    tok_cpu = tokenize_grids(cpu.pdf, masks)
    tok_gpu = tokenize_grids(gpu.pdf, masks.cuda())
    for key in tok_cpu:
        assert tok_gpu[key].device.type == "cuda"
        assert torch.allclose(tok_gpu[key].cpu(), tok_cpu[key], atol=1e-6)


def test_works_under_inference_mode_then_with_grad():
    pdf = torch.full((1, 12, 12), 1 / 144)
    mask = torch.ones(1, 12, 12, dtype=torch.bool)
    with torch.inference_mode():
        tokenize(pdf, mask, (6, 6))  # first call builds (and caches) the plan here
    leaf = pdf.clone().requires_grad_(True)
    tokenize(leaf, mask, (6, 6))[..., MASS].sum().backward()
    assert torch.allclose(leaf.grad, torch.full_like(pdf, 2.0))  # whole + (fg + bg)


def test_tokens_to_frame_layout():
    pdf = torch.zeros(2, 4, 4)
    pdf[0, 0, 3] = 1.0  # image a: cell (0, 1) of a 2×2 grid
    pdf[1, 3, 0] = 1.0  # image b: cell (1, 0)
    mask = torch.zeros(2, 4, 4, dtype=torch.bool)
    mask[:, :2] = True  # top half fg
    tokens = tokenize(pdf, mask, (2, 2))
    df = tokens_to_frame(tokens, "2x2", ["a", "b"], split="test", variant="seg", model_run="r1")
    assert list(df.columns) == [
        "image_id",
        "split",
        "variant",
        "model_run",
        "grid",
        "region",
        "cell_row",
        "cell_col",
        *FEATURES,
    ]
    assert len(df) == 2 * 3 * 2 * 2
    assert (df["split"] == "test").all() and (df["grid"] == "2x2").all()
    assert df["region"].iloc[:4].tolist() == ["whole"] * 4
    assert df["cell_row"].iloc[:4].tolist() == [0, 0, 1, 1]
    assert df["cell_col"].iloc[:4].tolist() == [0, 1, 0, 1]
    hot = df[df["mass"] > 0][["image_id", "region", "cell_row", "cell_col"]]
    assert hot.values.tolist() == [
        ["a", "whole", 0, 1],
        ["a", "fg", 0, 1],
        ["b", "whole", 1, 0],
        ["b", "bg", 1, 0],
    ]
    assert df["fgfrac"].tolist() == ([1.0, 1.0, 0.0, 0.0] * 6)
    # The mass column reshapes back to the tensor.
    back = df["mass"].to_numpy().reshape(2, 3, 2, 2)
    assert np.array_equal(back, tokens[..., MASS].numpy())
    with pytest.raises(ValueError, match="image_ids"):
        tokens_to_frame(tokens, "2x2", ["a"])
    with pytest.raises(ValueError, match="overwrite"):
        tokens_to_frame(tokens, "2x2", ["a", "b"], region="x")


# ---------------------------------------------------------------- analyses (§3.2)


def test_patch_kl_hand_values():
    a = torch.tensor([[[1.0, 0.0], [0.0, 0.0]], [[0.5, 0.5], [0.0, 0.0]]])
    b = torch.full((2, 2, 2), 0.25)
    assert torch.allclose(patch_kl(a, a), torch.zeros(2), atol=1e-7)
    # eps = 0.1: p = (1.1, .1, .1, .1)/1.4 = (11, 1, 1, 1)/14 against q = 1/4 each.
    expected = 11 / 14 * math.log(11 / 14 * 4) + 3 / 14 * math.log(1 / 14 * 4)
    assert patch_kl(a[:1], b[:1], eps=0.1).item() == pytest.approx(expected, rel=1e-6)
    # eps = 0: empty cells of a contribute nothing: KL = 2 · 0.5·log(0.5/0.25) = log 2.
    assert patch_kl(a[1:], b[1:], eps=0.0).item() == pytest.approx(math.log(2), rel=1e-6)
    assert patch_kl(b[1:], a[1:], eps=0.0).item() == math.inf


def test_spearman_matches_scipy_with_ties():
    gen = torch.Generator().manual_seed(5)
    a = torch.randint(0, 4, (8, 4, 4), generator=gen).float()  # many ties
    b = torch.randint(0, 4, (8, 4, 4), generator=gen).float()
    c = torch.rand(8, 8, 8, generator=gen)
    d = c + 0.3 * torch.rand(8, 8, 8, generator=gen)
    for x, y in ((a, b), (c, d), (a, c[:, :4, :4])):
        got = spearman(x, y)
        want = [spearmanr(x[i].flatten(), y[i].flatten()).statistic for i in range(len(x))]
        assert np.allclose(got.numpy(), want, atol=1e-6)


def test_spearman_constant_side_is_nan():
    a = torch.stack([torch.zeros(2, 2), torch.tensor([[1.0, 2.0], [3.0, 4.0]])])
    b = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[4.0, 3.0], [2.0, 1.0]]])
    rho = spearman(a, b)
    assert math.isnan(rho[0].item())
    assert rho[1].item() == pytest.approx(-1.0)


def test_fg_bg_ratio_hand_values():
    pdf = torch.full((3, 8, 8), 1 / 64)
    pdf[2] = 0  # flagged zero map: no ratio
    mask = torch.zeros(3, 8, 8, dtype=torch.bool)
    mask[0, :, :3] = True  # 24 fg pixels vs 40 bg pixels
    mask[1] = True  # all fg: bg mass 0 → 1/eps, finite
    ratio = fg_bg_ratio(tokenize(pdf, mask, (4, 4)))
    assert ratio[0].item() == pytest.approx(24 / 40)
    assert ratio[1].item() == pytest.approx(1e6, rel=1e-5)
    assert math.isnan(ratio[2].item())


def test_compare_tables():
    torch.manual_seed(6)
    mask = torch.rand(2, 8, 8) > 0.5
    pdf_a, _ = relu_pdf(torch.randn(2, 8, 8))
    pdf_b, _ = relu_pdf(torch.randn(2, 8, 8))
    grids = ((2, 2), (4, 4))
    tok_a, tok_b = tokenize_grids(pdf_a, mask, grids), tokenize_grids(pdf_b, mask, grids)
    ids = ["i0", "i1"]
    frame = lambda toks, variant: pd.concat(  # noqa: E731
        [tokens_to_frame(toks[g], g, ids, variant=variant) for g in toks], ignore_index=True
    )
    a, b = frame(tok_a, "full"), frame(tok_b, "seg")
    out = compare_tables(a, b.sample(frac=1.0, random_state=0))  # row order must not matter
    assert len(out) == 2 * 2 * 3
    assert list(out.columns) == ["image_id", "grid", "region", "n_cells", "patch_kl", "spearman"]
    for row in out.itertuples():
        r = REGIONS.index(row.region)
        i = ids.index(row.image_id)
        ma = tok_a[row.grid][i, r, ..., MASS].double()
        mb = tok_b[row.grid][i, r, ..., MASS].double()
        assert row.n_cells == ma.numel()
        assert row.patch_kl == pytest.approx(patch_kl(ma[None], mb[None]).item(), rel=1e-6)
        want = spearmanr(ma.flatten(), mb.flatten()).statistic
        assert row.spearman == pytest.approx(want, abs=1e-9) or (
            math.isnan(row.spearman) and math.isnan(want)
        )
    same = compare_tables(a, a)
    assert np.allclose(same["patch_kl"], 0, atol=1e-7)

    with pytest.raises(ValueError, match="cells the other table lacks"):
        compare_tables(a, b.iloc[1:])
    with pytest.raises(ValueError, match="several rows"):
        compare_tables(pd.concat([a, a]), b)


# ---------------------------------------------------------------- figure


def test_plot_token_grid_smoke(tmp_path):
    h, w = 60, 45  # uneven cells on both grids
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack([xx * 5 % 256, yy * 4 % 256, np.full((h, w), 90)], -1).astype(np.uint8)
    raw = torch.from_numpy(np.exp(-((yy - 20) ** 2 + (xx - 30) ** 2) / 60.0)).float()[None]
    mask = torch.zeros(1, h, w, dtype=torch.bool)
    mask[0, 10:50, 15:40] = True
    pdf, _ = relu_pdf(raw)
    toks = tokenize_grids(pdf, mask, ((4, 4), (8, 8)))
    for key, tok in toks.items():
        path = plot_token_grid(
            image, pdf[0].numpy(), tok[0].numpy(), tmp_path / f"{key}.png", title=key
        )
        assert path.exists() and path.stat().st_size > 1000
    with pytest.raises(ValueError, match="does not match"):
        plot_token_grid(image, pdf[0, :-1].numpy(), toks["4x4"][0].numpy(), tmp_path / "x.png")
