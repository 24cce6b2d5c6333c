"""COSE: transforms and their map inverses, SSIM vs skimage, consistency/sensitivity/COSE."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from sage.metrics.cose import (
    aggregate_cose,
    consistency_sensitivity,
    geometric_mean,
    harmonic_mean,
)
from sage.metrics.ssim import ssim
from sage.metrics.transforms import (
    GEOMETRIC,
    PHOTOMETRIC,
    TRANSFORMS,
    Transform,
    all_transforms,
    make_transform,
    sample_transforms,
)

MEAN = (0.5, 0.5, 0.5)
STD = (0.25, 0.25, 0.25)
C1, C2 = 0.01**2, 0.03**2  # K1, K2 with data range 1


def blob(h=32, w=32, cy=11.0, cx=19.0, s=5.0, b=2):
    y = torch.arange(h, dtype=torch.float32)[:, None]
    x = torch.arange(w, dtype=torch.float32)[None, :]
    g = torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * s**2))
    return g.expand(b, h, w).clone()


# ---------------------------------------------------------------------- transforms


def test_registry_kinds_and_sampling_is_deterministic():
    assert set(GEOMETRIC) == {"translate_x", "translate_y", "rotate", "flip_lr", "flip_ud"}
    assert set(PHOTOMETRIC) == {
        "brightness",
        "contrast",
        "color",
        "sharpness",
        "autocontrast",
        "equalize",
        "blur",
        "smooth",
    }
    a = sample_transforms(3, seed=7)
    b = sample_transforms(3, seed=7)
    c = sample_transforms(3, seed=8)
    assert a == b and a != c
    signed = [n for n, s in TRANSFORMS.items() if s.signed]
    assert len(signed) == 7
    assert len(a) == 3 * 7 + 6
    for t in a:
        spec = TRANSFORMS[t.name]
        if spec.signed:
            assert t.magnitude != 0 and abs(t.magnitude) <= spec.max_magnitude + 1e-9
            # on the 31-bin grid of TrivialAugmentWide
            step = spec.max_magnitude / 30
            assert abs(abs(t.magnitude) / step - round(abs(t.magnitude) / step)) < 1e-6
        else:
            assert t.magnitude == 0
    # three distinct magnitudes per signed op
    assert len({t.magnitude for t in a if t.name == "rotate"}) == 3
    # adding an operation does not change the others' draws
    only_rot = sample_transforms(3, seed=7, names=["rotate"])
    assert only_rot == [t for t in a if t.name == "rotate"]
    assert len(all_transforms()) == 7 * 60 + 6


def test_transform_validation():
    with pytest.raises(ValueError, match="unknown transform"):
        make_transform("shear_x", 0.1)
    with pytest.raises(ValueError, match="outside"):
        make_transform("rotate", 200)
    with pytest.raises(ValueError, match="geometric"):
        Transform("rotate", "photometric", 10.0)
    assert make_transform("rotate", -45).kind == "geometric"
    assert make_transform("rotate", -45).label == "rotate(-45)"


@pytest.mark.parametrize("name", ["flip_lr", "flip_ud"])
def test_flips_are_exact_and_all_valid(name):
    torch.manual_seed(0)
    maps = torch.rand(3, 12, 17)
    images = torch.rand(3, 3, 12, 17)
    t = make_transform(name)
    dim = -1 if name == "flip_lr" else -2
    assert torch.equal(t.apply(images), images.flip(dim))
    back, valid = t.invert_map(t.apply_map(maps))
    assert torch.equal(back, maps)
    assert valid.dtype == torch.bool and bool(valid.all())


def test_translate_is_exact_and_valid_mask_is_exactly_the_outside_band():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 32, 32)
    maps = torch.rand(2, 32, 32)
    # 14 px at 224 -> 2 px at 32 (content moves right)
    tx = make_transform("translate_x", 14.0)
    out = tx.apply(images)
    assert torch.equal(out[..., 2:], images[..., :-2])
    assert bool((out[..., :2] == 0).all())
    back, valid = tx.invert_map(tx.apply_map(maps))
    expected_valid = torch.zeros(2, 32, 32, dtype=torch.bool)
    expected_valid[..., :30] = True  # columns whose content left the image are the last 2
    assert torch.equal(valid, expected_valid)
    assert torch.equal(back[valid], maps[valid])
    assert bool((back[~valid] == 0).all())
    # -21 px at 224 -> 3 px up at 32
    ty = make_transform("translate_y", -21.0)
    out = ty.apply(images)
    assert torch.equal(out[..., :-3, :], images[..., 3:, :])
    back, valid = ty.invert_map(ty.apply_map(maps))
    assert torch.equal(valid[:, 3:, :], torch.ones(2, 29, 32, dtype=torch.bool))
    assert not bool(valid[:, :3, :].any())
    assert torch.equal(back[valid], maps[valid])
    # uint8 images keep their dtype and are shifted exactly
    u8 = (images * 255).to(torch.uint8)
    assert torch.equal(tx.apply(u8)[..., 2:], u8[..., :-2])


def test_translation_scales_with_image_size():
    t = make_transform("translate_x", 32.0)
    img = torch.zeros(1, 1, 224, 224)
    img[..., 100, 100] = 1
    assert t.apply(img)[0, 0, 100, 132] == 1  # 32 px at 224
    img = torch.zeros(1, 1, 56, 56)
    img[..., 20, 20] = 1
    assert t.apply(img)[0, 0, 20, 28] == 1  # 8 px at 56


@pytest.mark.parametrize("angle", [45.0, -90.0, 135.0, 22.5])
def test_rotate_inverse_brings_a_smooth_map_back(angle):
    maps = blob(cy=12.0, cx=21.0, s=4.0)
    t = make_transform("rotate", angle)
    moved = t.apply_map(maps)
    assert (moved - maps).abs().max() > 0.1  # it did move
    back, valid = t.invert_map(moved)
    err = (back - maps).abs()[valid]
    assert err.mean() < 0.05
    assert valid[:, 16, 16].all()  # centre always valid
    if angle in (45.0, 135.0):
        assert not valid[:, 0, 0].any() and not valid[:, 31, 31].any()  # corners left the image
    assert 0.3 < valid.float().mean() <= 1.0


def test_rotate_applies_counter_clockwise_to_images_and_maps_alike():
    img = torch.zeros(1, 1, 33, 33)
    img[..., 16, 26] = 1.0  # right of centre
    t = make_transform("rotate", 90.0)
    out = t.apply(img)
    assert out[0, 0].argmax() == 6 * 33 + 16  # now above the centre
    assert torch.equal(t.apply_map(img[:, 0]), out[:, 0])


def test_photometric_change_pixels_but_their_map_inverse_is_identity():
    torch.manual_seed(0)
    images = 0.1 + 0.8 * torch.rand(2, 3, 16, 16)
    maps = torch.rand(2, 16, 16)
    transforms = sample_transforms(1, seed=0, names=PHOTOMETRIC)
    assert {t.name for t in transforms} == set(PHOTOMETRIC)
    for t in transforms:
        out = t.apply(images)
        assert out.shape == images.shape and out.dtype == images.dtype
        assert (out - images).abs().max() > 1e-3, t.label
        assert out.min() >= 0 and out.max() <= 1
        back, valid = t.invert_map(maps)
        assert torch.equal(back, maps) and bool(valid.all())
        u8 = t.apply((images * 255).round().to(torch.uint8))
        assert u8.dtype == torch.uint8


def test_brightness_factor_is_one_plus_m():
    images = torch.full((1, 3, 4, 4), 0.4)
    assert torch.allclose(
        make_transform("brightness", 0.5).apply(images), torch.full_like(images, 0.6)
    )
    assert torch.allclose(
        make_transform("brightness", -0.5).apply(images), torch.full_like(images, 0.2)
    )


@pytest.mark.parametrize("name,pil", [("blur", "BLUR"), ("smooth", "SMOOTH")])
def test_blur_and_smooth_match_pil(name, pil):
    from PIL import Image, ImageFilter

    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (14, 15), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(a).filter(getattr(ImageFilter, pil))).astype(int)
    x = torch.from_numpy(a)[None, None].expand(1, 3, 14, 15).contiguous()
    out = make_transform(name).apply(x)[0, 0].numpy().astype(int)
    assert np.abs(out - ref).max() <= 1  # PIL rounds per pixel in integer arithmetic
    r = 2 if name == "blur" else 1
    assert np.array_equal(out[:r], a[:r]) and np.array_equal(out[:, -r:], a[:, -r:])


# ---------------------------------------------------------------------- SSIM


@pytest.mark.parametrize("rule", ["joint", "max_of_ranges"])
def test_ssim_matches_skimage_per_image(rule):
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(0)
    x = (
        torch.rand(5, 20, 24, generator=g, dtype=torch.float64)
        * torch.linspace(0.5, 3, 5)[:, None, None].double()
    )
    y = x + 0.4 * torch.rand(5, 20, 24, generator=g, dtype=torch.float64) - 0.3
    got = ssim(x, y, data_range=rule)
    for i in range(5):
        a, b = x[i].numpy(), y[i].numpy()
        if rule == "joint":
            r = max(a.max(), b.max()) - min(a.min(), b.min())
        else:
            r = max(a.max() - a.min(), b.max() - b.min())
        ref = structural_similarity(
            a, b, win_size=5, K1=0.01, K2=0.03, data_range=r, gaussian_weights=False
        )
        assert abs(float(got[i]) - ref) < 1e-4
    fixed = ssim(x, y, data_range=2.0)
    ref = structural_similarity(x[0].numpy(), y[0].numpy(), win_size=5, data_range=2.0)
    assert abs(float(fixed[0]) - ref) < 1e-4


def test_ssim_float32_input_matches_skimage():
    from skimage.metrics import structural_similarity

    torch.manual_seed(1)
    x = torch.rand(3, 16, 16)
    y = torch.rand(3, 16, 16)
    got = ssim(x, y)
    for i in range(3):
        a, b = x[i].double().numpy(), y[i].double().numpy()
        r = max(a.max(), b.max()) - min(a.min(), b.min())
        assert abs(float(got[i]) - structural_similarity(a, b, win_size=5, data_range=r)) < 1e-4


def test_ssim_identical_maps_give_one():
    torch.manual_seed(0)
    x = torch.rand(4, 10, 10)
    assert torch.allclose(ssim(x, x.clone()), torch.ones(4, dtype=torch.float64))
    const = torch.full((2, 10, 10), 0.3)
    assert torch.equal(ssim(const, const), torch.ones(2, dtype=torch.float64))  # zero range


def test_ssim_masked_mean_over_fully_valid_windows():
    from scipy.ndimage import binary_erosion
    from skimage.metrics import structural_similarity

    torch.manual_seed(0)
    x = torch.rand(2, 18, 18, dtype=torch.float64)
    y = torch.rand(2, 18, 18, dtype=torch.float64)
    valid = torch.ones(2, 18, 18, dtype=torch.bool)
    valid[0, :, 12:] = False
    valid[1, 5:9, 5:9] = False
    got = ssim(x, y, valid)
    for i in range(2):
        v = valid[i].numpy()
        a, b = x[i].numpy(), y[i].numpy()
        r = max(a[v].max(), b[v].max()) - min(a[v].min(), b[v].min())
        _, full = structural_similarity(a, b, win_size=5, data_range=r, full=True)
        keep = binary_erosion(v, np.ones((5, 5)), border_value=0)
        assert abs(float(got[i]) - full[keep].mean()) < 1e-4
    # nothing valid -> NaN
    assert math.isnan(float(ssim(x, y, torch.zeros_like(valid))[0]))
    # all-True mask equals the unmasked value
    assert torch.allclose(ssim(x, y, torch.ones_like(valid)), ssim(x, y))


# ---------------------------------------------------------------------- COSE helpers


def s_bar(h=16, w=16):
    """Hand value: mean SSIM of a top-half-ones map against the bottom-half-ones map.

    Data range 1, K1 = .01, K2 = .03, 5×5 uniform window, sample covariance (25/24).
    A window whose rows hold a fraction p of ones in x holds 1 − p in y: μx = p, μy = 1 − p,
    σx² = σy² = (25/24)·p(1 − p), σxy = −σx².
    """
    cn = 25 / 24

    def s_of(p):
        v = cn * p * (1 - p)
        return (2 * p * (1 - p) + C1) * (-2 * v + C2) / ((p * p + (1 - p) ** 2 + C1) * (2 * v + C2))

    rows = []
    for r in range(2, h - 2):  # window centres of skimage's cropped mean
        k = sum(1 for rr in range(r - 2, r + 3) if rr < h // 2)
        rows.append(s_of(k / 5))
    return sum(rows) / len(rows)  # every column has the same value


class ConstModel(nn.Module):
    """Always predicts ``cls``, whatever the input."""

    def __init__(self, cls: int, upside_down: bool = False):
        super().__init__()
        self.cls = cls
        self.upside_down = upside_down
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        logits = torch.zeros(x.shape[0], 2)
        logits[:, self.cls] = 1
        return logits


class BrightnessModel(nn.Module):
    """Class 1 iff the mean pixel (un-normalised) exceeds 0.5."""

    def forward(self, x):
        px = x * STD[0] + MEAN[0]
        score = px.mean((1, 2, 3)) - 0.5
        return torch.stack([-score, score], 1)


class MatchModel(nn.Module):
    """Class 0 only for inputs equal to one of the reference images, else class 1."""

    def __init__(self, refs):
        super().__init__()
        self.refs = refs

    def forward(self, x):
        d = (x[:, None] - self.refs[None]).abs().flatten(2).amax(2).amin(1)
        same = (d < 1e-5).float()
        return torch.stack([same, 1 - same], 1)


class HalfMap:
    """A "method" whose map depends only on the explained class: top half (0) / bottom (1).

    With ``model.upside_down`` the map is flipped; it counts calls and images.
    """

    def __init__(self):
        self.calls = []

    def __call__(self, model, images, targets=None):
        self.calls.append(images.shape[0])
        h, w = images.shape[-2:]
        top = torch.zeros(h, w)
        top[: h // 2] = 1
        maps = torch.where((targets == 0)[:, None, None], top, top.flip(0))
        if getattr(model, "upside_down", False):
            maps = maps.flip(1)
        return maps


def dark_images(b=4, h=16, w=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    px = 0.25 + 0.1 * torch.rand(b, 3, h, w, generator=g)  # mean pixel ~0.3
    return (px - MEAN[0]) / STD[0]


# ---------------------------------------------------------------------- COSE


def test_harmonic_and_geometric_means():
    assert float(harmonic_mean(1.0, 0.5)) == pytest.approx(2 / 3)
    assert float(geometric_mean(1.0, 0.5)) == pytest.approx(math.sqrt(0.5))
    assert float(harmonic_mean(0.0, 0.0)) == 0.0
    assert math.isnan(float(harmonic_mean(1.0, math.nan)))
    assert math.isnan(float(geometric_mean(math.nan, 0.5)))


def test_never_changing_prediction_gives_consistency_one_and_no_sensitivity():
    images = dark_images()
    targets = torch.zeros(4, dtype=torch.long)
    transforms = [*sample_transforms(1, seed=0, names=PHOTOMETRIC), make_transform("flip_lr")]
    res = consistency_sensitivity(ConstModel(0), images, targets, HalfMap(), transforms, MEAN, STD)
    assert res["consistency"] == pytest.approx(1.0, abs=1e-12)
    assert res["n_consistent"] == 4 * len(transforms)
    assert res["n_sensitive"] == 0
    # documented rule: no sample -> NaN, and COSE (either mean) NaN when a term is NaN
    assert math.isnan(res["sensitivity"])
    assert math.isnan(res["cose"]) and math.isnan(res["cose_geometric"])
    assert res["geometric"]["consistency"] == pytest.approx(1.0)
    assert res["photometric"]["consistency"] == pytest.approx(1.0)
    assert res["geometric"]["n_consistent"] == 4 and res["photometric"]["n_consistent"] == 4 * 8
    pi = res["per_image"]
    assert torch.allclose(pi["consistency"], torch.ones(4, dtype=torch.float64))
    assert bool(pi["sensitivity"].isnan().all())
    assert pi["ssim"].shape == (4, len(transforms)) and not bool(pi["changed"].any())


def test_constant_structure_map_is_not_consistent_under_a_vertical_flip():
    # The map ignores the image, so flipping the image and flipping the map back gives the
    # bottom half against the top half: SSIM = the hand value s_bar().
    res = consistency_sensitivity(
        ConstModel(0),
        dark_images(),
        torch.zeros(4, dtype=torch.long),
        HalfMap(),
        [make_transform("flip_ud")],
        MEAN,
        STD,
    )
    assert res["consistency"] == pytest.approx(s_bar(), abs=1e-9)
    assert s_bar() < 0.05


def test_always_changing_prediction_gives_the_hand_sensitivity():
    images = dark_images()
    targets = torch.zeros(4, dtype=torch.long)
    transforms = [
        make_transform("brightness", 0.5),
        make_transform("flip_lr"),
        make_transform("blur"),
    ]
    method = HalfMap()
    res = consistency_sensitivity(
        MatchModel(images), images, targets, method, transforms, MEAN, STD
    )
    assert res["n_correct"] == 4
    assert res["n_sensitive"] == 12 and res["n_consistent"] == 0
    assert res["sensitivity"] == pytest.approx(1 - s_bar(), abs=1e-9)
    assert math.isnan(res["consistency"]) and math.isnan(res["cose"])
    assert bool(res["per_image"]["changed"].all())
    # one method call for the originals plus one per transform, each on the whole batch
    assert method.calls == [4, 4, 4, 4]
    # explaining the true class everywhere: the map never changes -> sensitivity 0
    res_t = consistency_sensitivity(
        MatchModel(images), images, targets, HalfMap(), transforms, MEAN, STD, explain="target"
    )
    assert res_t["sensitivity"] == pytest.approx(0.0, abs=1e-12)


def test_mixed_case_harmonic_vs_geometric_mean():
    images = dark_images()
    targets = torch.zeros(4, dtype=torch.long)
    # flip_lr keeps the mean brightness (unchanged, map consistent: SSIM 1); brightness +0.99
    # doubles the pixels (mean ~0.6 > 0.5: class 1, map flips: SSIM s_bar)
    transforms = [make_transform("flip_lr"), make_transform("brightness", 0.99)]
    res = consistency_sensitivity(
        BrightnessModel(), images, targets, HalfMap(), transforms, MEAN, STD
    )
    c, s = 1.0, 1 - s_bar()
    assert res["consistency"] == pytest.approx(c, abs=1e-9)
    assert res["sensitivity"] == pytest.approx(s, abs=1e-9)
    assert res["cose"] == pytest.approx(2 * c * s / (c + s), abs=1e-9)
    assert res["cose_geometric"] == pytest.approx(math.sqrt(c * s), abs=1e-9)
    assert res["cose"] != pytest.approx(res["cose_geometric"])
    assert res["geometric"]["consistency"] == pytest.approx(1.0) and math.isnan(
        res["geometric"]["sensitivity"]
    )
    assert (
        res["photometric"]["sensitivity"] == pytest.approx(s)
        and res["photometric"]["n_sensitive"] == 4
    )
    assert res["per_transform"]["flip_lr"]["n_consistent"] == 4
    assert res["per_transform"]["brightness(+0.99)"]["n_sensitive"] == 4
    assert torch.allclose(
        res["per_image"]["cose"], torch.full((4,), 2 * s / (1 + s), dtype=torch.float64)
    )


def test_model_perturbations_are_counted():
    images = dark_images()
    targets = torch.zeros(4, dtype=torch.long)
    changed_model = ConstModel(1)  # prediction changes: map is the bottom half -> 1 - s_bar
    same_model = ConstModel(0, upside_down=True)  # prediction kept, map flipped -> SSIM s_bar
    method = HalfMap()
    kw = dict(models=[changed_model, same_model])
    res = consistency_sensitivity(
        BrightnessModel(), images, targets, method, [make_transform("flip_lr")], MEAN, STD, **kw
    )
    assert method.calls == [4, 4, 4, 4]  # original, flip_lr, two models
    assert res["model"]["n_sensitive"] == 4 and res["model"]["n_unchanged"] == 4
    assert res["model"]["sensitivity"] == pytest.approx(1 - s_bar(), abs=1e-9)
    assert res["model"]["unchanged_ssim"] == pytest.approx(s_bar(), abs=1e-9)
    assert res["n_sensitive"] == 4 and res["sensitivity"] == pytest.approx(1 - s_bar(), abs=1e-9)
    # paper Eq. 4 (default): unchanged model perturbations are not consistency terms
    assert res["n_consistent"] == 4 and res["consistency"] == pytest.approx(1.0)
    pi = res["per_image"]
    assert pi["model_ssim"].shape == (4, 2)
    assert pi["model_changed"][:, 0].all() and not pi["model_changed"][:, 1].any()
    # option: count them as consistency terms
    res2 = consistency_sensitivity(
        BrightnessModel(),
        images,
        targets,
        HalfMap(),
        [make_transform("flip_lr")],
        MEAN,
        STD,
        models_in_consistency=True,
        **kw,
    )
    assert res2["n_consistent"] == 8
    assert res2["consistency"] == pytest.approx((1 + s_bar()) / 2, abs=1e-9)


def test_only_correctly_classified_images_enter_and_modes_are_restored():
    images = dark_images()
    targets = torch.tensor([0, 1, 0, 0])  # image 1 is misclassified by ConstModel(0)
    model = ConstModel(0)
    other = ConstModel(1)
    model.train()
    other.train()
    method = HalfMap()
    res = consistency_sensitivity(
        model, images, targets, method, [make_transform("flip_lr")], MEAN, STD, models=[other]
    )
    assert model.training and other.training
    assert res["n_correct"] == 3 and res["n_images"] == 4
    assert res["per_image"]["correct"].tolist() == [True, False, True, True]
    assert math.isnan(float(res["per_image"]["consistency"][1]))
    assert bool(res["per_image"]["ssim"][1].isnan().all())
    assert res["n_consistent"] == 3 and res["n_sensitive"] == 3
    assert method.calls == [3, 3, 3]  # only the correct images are explained


def test_batch_size_and_aggregation_give_the_same_numbers():
    images = dark_images(b=6)
    targets = torch.zeros(6, dtype=torch.long)
    transforms = [
        make_transform("flip_lr"),
        make_transform("brightness", 0.99),
        make_transform("rotate", 45.0),
    ]
    args = (BrightnessModel(), images, targets)
    method = HalfMap()
    whole = consistency_sensitivity(*args, method, transforms, MEAN, STD, models=[ConstModel(1)])
    chunked_method = HalfMap()
    chunked = consistency_sensitivity(
        *args, chunked_method, transforms, MEAN, STD, models=[ConstModel(1)], batch_size=4
    )
    assert chunked_method.calls == [4, 2] * 5
    for key in (
        "consistency",
        "sensitivity",
        "cose",
        "cose_geometric",
        "n_consistent",
        "n_sensitive",
    ):
        assert chunked[key] == pytest.approx(whole[key], nan_ok=True)
    parts = [
        consistency_sensitivity(
            BrightnessModel(),
            images[s],
            targets[s],
            HalfMap(),
            transforms,
            MEAN,
            STD,
            models=[ConstModel(1)],
        )
        for s in (slice(0, 2), slice(2, 6))
    ]
    pooled = aggregate_cose(parts)
    for key in (
        "consistency",
        "sensitivity",
        "cose",
        "cose_geometric",
        "n_consistent",
        "n_sensitive",
    ):
        assert pooled[key] == pytest.approx(whole[key], nan_ok=True)
    assert pooled["model"] == pytest.approx(whole["model"], nan_ok=True)


@pytest.mark.parametrize("name", ["centre_gaussian", "random", "half", "gradcam", "saliency"])
def test_works_with_registry_methods(name):
    from sage.models import create_backbone
    from sage.saliency.methods import create_method

    torch.manual_seed(0)
    model = create_backbone("small_cnn", 3).eval()
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        targets = model(images).argmax(1)
    transforms = [
        make_transform("flip_lr"),
        make_transform("contrast", 0.3),
        make_transform("rotate", 30.0),
    ]
    random_copy = create_backbone("small_cnn", 3)
    res = consistency_sensitivity(
        model, images, targets, create_method(name), transforms, MEAN, STD, models=[random_copy]
    )
    assert res["n_correct"] == 2
    assert res["n_consistent"] + res["n_sensitive"] == 2 * 3 + 2 - res["model"]["n_unchanged"]
    assert bool(res["per_image"]["ssim"].isfinite().all())
    assert bool((res["per_image"]["ssim"] <= 1 + 1e-9).all())
    if (
        name == "centre_gaussian"
    ):  # a symmetric, image-independent map is flip- and colour-invariant
        assert float(res["per_image"]["ssim"][0, 0]) == pytest.approx(1.0, abs=1e-6)
        assert float(res["per_image"]["ssim"][0, 1]) == pytest.approx(1.0, abs=1e-6)
