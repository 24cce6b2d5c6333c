"""RIVAL10 §5.1 relative foreground sensitivity: RFS, iRFS, grey background, noise handling."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from sage.metrics.rfs import (
    DEFAULT_SIGMAS,
    aggregate_rfs,
    grey_background_accuracy,
    relative_sensitivity,
    rfs,
)

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
H = W = 16
LABELS = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1])  # 5 of class 0, 3 of class 1


def fg_mask(b=8):
    m = torch.zeros(b, H, W, dtype=torch.bool)
    m[:, 4:12, 4:12] = True  # central object
    return m


def to_norm(px):
    mu = torch.tensor(MEAN).view(1, 3, 1, 1)
    sd = torch.tensor(STD).view(1, 3, 1, 1)
    return (px - mu) / sd


def to_pixels(x):
    mu = torch.tensor(MEAN).view(1, 3, 1, 1)
    sd = torch.tensor(STD).view(1, 3, 1, 1)
    return x * sd + mu


def make_images(labels=LABELS):
    """Class 0: background 0.4, object 0.4; class 1: background 0.6, object 0.6 (pixel space)."""
    b = labels.shape[0]
    level = torch.where(labels == 0, 0.4, 0.6).view(b, 1, 1, 1)
    px = level.expand(b, 3, H, W).clone()
    return to_norm(px), fg_mask(b)


class RegionModel(nn.Module):
    """Class 1 iff the mean pixel of a fixed 2×2 region exceeds ``thr`` (pixel space)."""

    def __init__(self, rows, cols, thr=0.45):
        super().__init__()
        self.rows, self.cols, self.thr = rows, cols, thr
        self.w = nn.Parameter(torch.tensor(20.0))

    def forward(self, x):
        v = to_pixels(x)[:, :, self.rows, self.cols].mean((1, 2, 3)) - self.thr
        return torch.stack([-v, v], 1) * self.w


def background_model():
    return RegionModel(slice(0, 2), slice(0, 2))  # top-left corner: background only


def foreground_model():
    return RegionModel(slice(7, 9), slice(7, 9))  # centre: object only


class ConstModel(nn.Module):
    def __init__(self, cls):
        super().__init__()
        self.cls = cls

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 2)
        logits[:, self.cls] = 2.0
        return logits


class NoisyRegionProb(nn.Module):
    """True-class (0) probability ``p_clean`` if a region is constant, ``p_noisy`` if not."""

    def __init__(self, region_mask, p_clean, p_noisy):
        super().__init__()
        self.region = region_mask
        self.p_clean, self.p_noisy = p_clean, p_noisy

    def forward(self, x):
        px = to_pixels(x)
        vals = px[:, :, self.region]  # (B, 3, n)
        noisy = (vals.amax(-1) - vals.amin(-1)).amax(-1) > 1e-4
        p = torch.where(noisy, self.p_noisy, self.p_clean).double()
        return torch.stack([p.log(), (1 - p).log()], 1)


class Recorder(nn.Module):
    def __init__(self):
        super().__init__()
        self.inputs = []

    def forward(self, x):
        self.inputs.append(x.detach().clone())
        return torch.zeros(x.shape[0], 2)


# ---------------------------------------------------------------------- formula


def test_relative_sensitivity_formula_and_zero_denominator():
    assert float(relative_sensitivity(0.5, 1.0)) == pytest.approx(0.5 / (2 * 0.25))  # ā = .75
    assert float(relative_sensitivity(0.2, 0.4)) == pytest.approx(0.2 / 0.6)  # ā = .3
    assert float(relative_sensitivity(0.9, 0.3)) == pytest.approx(-0.6 / 0.8)
    assert float(relative_sensitivity(1.0, 1.0)) == 0.0
    assert float(relative_sensitivity(0.0, 0.0)) == 0.0
    assert float(relative_sensitivity(1.0, 0.0)) == -1.0
    t = relative_sensitivity(torch.tensor([0.0, 1.0, 0.25]), torch.tensor([0.0, 1.0, 0.75]))
    assert t.tolist() == pytest.approx([0.0, 0.0, 0.5])  # ā = .5: 0.5 / (2·0.5)


# ---------------------------------------------------------------------- RFS sign


def test_background_model_has_negative_rfs():
    images, masks = make_images()
    res = rfs(background_model(), images, masks, LABELS, MEAN, STD)
    assert res["clean_accuracy"] == 1.0
    # noise on the object never reaches the corner: a_fg = 1; background noise flips some
    assert res["a_fg"] == 1.0 and res["a_bg"] < 1.0
    assert res["rfs"] < 0
    assert res["rfs"] == pytest.approx(-1.0)  # (a − 1) / (2·(1 − (1 + a)/2)) = −1
    assert res["sigmas"].shape == (7,)
    assert torch.allclose(res["sigmas"], torch.tensor(DEFAULT_SIGMAS, dtype=torch.float64))
    assert torch.equal(res["acc_fg_per_sigma"], torch.ones(7, dtype=torch.float64))
    assert res["acc_bg_per_sigma"].shape == (7,) and res["acc_bg_per_sigma"][-1] < 1
    assert res["a_bg"] == pytest.approx(float(res["acc_bg_per_sigma"].mean()))
    assert res["rfs_per_sigma"].shape == (7,) and bool((res["rfs_per_sigma"] <= 0).all())
    assert res["per_image"]["acc_fg"].shape == (8,)
    assert res["irfs"] < 0


def test_foreground_model_has_positive_rfs():
    images, masks = make_images()
    res = rfs(foreground_model(), images, masks, LABELS, MEAN, STD)
    assert res["a_bg"] == 1.0 and res["a_fg"] < 1.0
    assert res["rfs"] > 0
    assert res["rfs"] == pytest.approx(1.0)
    assert res["irfs"] > 0
    assert res["a_mean"] == pytest.approx((res["a_fg"] + res["a_bg"]) / 2)
    expected_per_sigma = relative_sensitivity(res["acc_fg_per_sigma"], res["acc_bg_per_sigma"])
    assert torch.allclose(res["rfs_per_sigma"], expected_per_sigma)
    assert res["rfs_sigma_mean"] == pytest.approx(float(expected_per_sigma.mean()))


@pytest.mark.parametrize("cls", [0, 1])
def test_always_right_or_always_wrong_gives_zero(cls):
    images, masks = make_images()
    targets = torch.zeros(8, dtype=torch.long)
    res = rfs(ConstModel(cls), images, masks, targets, MEAN, STD, trials=2)
    expected_acc = 1.0 if cls == 0 else 0.0
    assert res["a_fg"] == res["a_bg"] == expected_acc
    assert res["rfs"] == 0.0 and res["rfs_sigma_mean"] == 0.0
    assert torch.equal(res["rfs_per_sigma"], torch.zeros(7, dtype=torch.float64))
    # constant probabilities: p_fg = p_bg, numerator 0
    assert torch.allclose(res["per_image"]["irfs"], torch.zeros(8, dtype=torch.float64))


# ---------------------------------------------------------------------- iRFS


def test_irfs_hand_cases():
    images, masks = make_images()
    targets = torch.zeros(8, dtype=torch.long)
    # reads the background: p = 0.9 while it is clean, 0.3 once it is noisy
    model = NoisyRegionProb(~masks[0], 0.9, 0.3)
    res = rfs(model, images, masks, targets, MEAN, STD, trials=2)
    assert torch.allclose(
        res["per_image"]["p_fg"], torch.full((8,), 0.9, dtype=torch.float64), atol=1e-6
    )
    assert torch.allclose(
        res["per_image"]["p_bg"], torch.full((8,), 0.3, dtype=torch.float64), atol=1e-6
    )
    hand = (0.3 - 0.9) / (2 * min(0.6, 0.4))  # = −0.75
    assert torch.allclose(
        res["per_image"]["irfs"], torch.full((8,), hand, dtype=torch.float64), atol=1e-5
    )
    assert torch.allclose(
        res["per_image"]["irfs_per_sigma"], torch.full((8, 7), hand, dtype=torch.float64), atol=1e-5
    )
    assert res["irfs"] == pytest.approx(-0.75, abs=1e-5)
    # reads the object: p = 0.7 clean, 0.2 noisy -> (0.7 − 0.2) / (2·0.45)
    res = rfs(NoisyRegionProb(masks[0], 0.7, 0.2), images, masks, targets, MEAN, STD)
    assert res["irfs"] == pytest.approx(0.5 / 0.9, abs=1e-5)


# ---------------------------------------------------------------------- grey background


def test_grey_background_accuracy():
    images, masks = make_images()
    # background model, threshold .45: a 0.5 background reads as class 1 -> right on 3/8
    res = grey_background_accuracy(background_model(), images, masks, LABELS, MEAN, STD)
    assert res["clean_accuracy"] == 1.0
    assert res["accuracy"] == pytest.approx(3 / 8)
    assert res["per_image"]["correct"].tolist() == [False] * 5 + [True] * 3
    # the normalisation mean (ImageNet, mean colour 0.449 < .45) reads as class 0 -> 5/8
    res = grey_background_accuracy(
        background_model(), images, masks, LABELS, MEAN, STD, grey="mean"
    )
    assert res["accuracy"] == pytest.approx(5 / 8)
    # an explicit grey level
    res = grey_background_accuracy(background_model(), images, masks, LABELS, MEAN, STD, grey=0.2)
    assert res["accuracy"] == pytest.approx(5 / 8)
    # the object model does not care
    assert (
        grey_background_accuracy(foreground_model(), images, masks, LABELS, MEAN, STD)["accuracy"]
        == 1.0
    )
    # and rfs reports it too
    assert rfs(background_model(), images, masks, LABELS, MEAN, STD)[
        "grey_background_accuracy"
    ] == pytest.approx(3 / 8)


def test_grey_background_pixels_are_grey_in_pixel_space():
    images, masks = make_images()
    rec = Recorder()
    grey_background_accuracy(rec, images, masks, LABELS, MEAN, STD)
    px = to_pixels(rec.inputs[0])
    m = masks[:, None].expand_as(px)
    assert torch.allclose(px[~m], torch.full_like(px[~m], 0.5), atol=1e-6)
    assert torch.allclose(px[m], to_pixels(images)[m], atol=1e-6)


# ---------------------------------------------------------------------- noise handling


def test_noise_is_pixel_space_region_limited_and_clipped():
    images, masks = make_images()
    rec = Recorder()
    rfs(rec, images, masks, LABELS, MEAN, STD, sigmas=(1.0,), grey=None)
    x = rec.inputs[0]
    assert x.shape == (16, 3, H, W)  # fg and bg copies of one level go through together
    px = to_pixels(x)
    orig = to_pixels(images)
    assert px.min() >= -1e-5 and px.max() <= 1 + 1e-5
    m = masks[:, None].expand_as(orig)
    fg, bg = px[:8], px[8:]
    # σ = 1 around 0.4/0.6: about a third of the noisy pixels are clipped to 0 or to 1
    assert (fg[m] < 1e-5).float().mean() > 0.1 and (fg[m] > 1 - 1e-5).float().mean() > 0.1
    assert (bg[~m] < 1e-5).float().mean() > 0.1 and (bg[~m] > 1 - 1e-5).float().mean() > 0.1
    # noise only where it belongs
    assert torch.allclose(fg[~m], orig[~m], atol=1e-5)
    assert torch.allclose(bg[m], orig[m], atol=1e-5)
    # one noise tensor shared by both copies (paper: n ⊙ m and n ⊙ (1 − m))
    assert not torch.allclose(fg[m], orig[m])


def test_noise_std_is_sigma_in_pixel_units():
    images, masks = make_images()
    rec = Recorder()
    sigma = 0.05  # no clipping around 0.4 / 0.6
    rfs(rec, images, masks, LABELS, MEAN, STD, sigmas=(sigma,), grey=None)
    diff = to_pixels(rec.inputs[0][:8]) - to_pixels(images)
    m = masks[:, None].expand_as(diff)
    assert diff[m].std().item() == pytest.approx(sigma, rel=0.1)


def test_seed_determinism_and_batching():
    images, masks = make_images()
    model = background_model()
    a = rfs(model, images, masks, LABELS, MEAN, STD, trials=2, seed=3)
    b = rfs(model, images, masks, LABELS, MEAN, STD, trials=2, seed=3, batch_size=3)
    c = rfs(model, images, masks, LABELS, MEAN, STD, trials=2, seed=4)
    for key in ("p_fg", "p_bg", "acc_bg_per_sigma", "irfs_per_sigma"):
        assert torch.equal(a["per_image"][key], b["per_image"][key])
    assert a["rfs"] == b["rfs"] and a["a_bg"] == b["a_bg"]
    assert not torch.equal(a["per_image"]["p_bg"], c["per_image"]["p_bg"])


def test_trials_and_mode_restored():
    images, masks = make_images()
    model = background_model().train()
    rec = Recorder()
    rfs(rec, images, masks, LABELS, MEAN, STD, sigmas=(0.1, 0.2), trials=3, grey=None)
    assert len(rec.inputs) == 2 * 3 + 1  # levels × trials, plus the clean pass
    res = rfs(model, images, masks, LABELS, MEAN, STD, trials=3)
    assert model.training
    # accuracies are fractions of 3 trials per level
    frac = res["per_image"]["acc_bg_per_sigma"] * 3
    assert torch.allclose(frac, frac.round())


def test_aggregate_pools_images():
    images, masks = make_images()
    model = background_model()
    r1 = rfs(model, images[:5], masks[:5], LABELS[:5], MEAN, STD, seed=1)
    r2 = rfs(model, images[5:], masks[5:], LABELS[5:], MEAN, STD, seed=2)
    pooled = aggregate_rfs([r1, r2])
    acc_bg = torch.cat([r1["per_image"]["acc_bg"], r2["per_image"]["acc_bg"]])
    assert pooled["a_bg"] == pytest.approx(float(acc_bg.mean()))
    assert pooled["rfs"] == pytest.approx(
        float(relative_sensitivity(pooled["a_fg"], pooled["a_bg"]))
    )
    assert pooled["grey_background_accuracy"] == pytest.approx(3 / 8)
    assert pooled["per_image"]["irfs"].shape == (8,)


def test_bad_masks_are_rejected():
    images, masks = make_images()
    with pytest.raises(ValueError, match="binary"):
        rfs(background_model(), images, masks.float() * 0.5, LABELS, MEAN, STD)
    with pytest.raises(ValueError, match="shape"):
        rfs(background_model(), images, masks[:, :8], LABELS, MEAN, STD)
    # (B, 1, H, W) masks are accepted
    res = rfs(background_model(), images, masks[:, None], LABELS, MEAN, STD, sigmas=(0.1,))
    assert not math.isnan(res["rfs"])
