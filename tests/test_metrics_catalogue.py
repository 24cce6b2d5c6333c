"""The faithfulness / robustness / complexity catalogue: Deletion / Insertion, AOPC, faithfulness
correlation, infidelity and max-sensitivity (captum), sparseness, effective complexity,
relevance rank accuracy and top-k intersection.

Hand-computed cases (a model whose logit is the mean of a known region), the vectorised code
against naive per-image loops, the metric sets against the functions and captum, and agreement
with Quantus 0.6 where its definition is the same (skipped without quantus, the ``bench``
extra)."""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from sage.metrics import catalogue_sets
from sage.metrics.complexity import effective_complexity, sparseness
from sage.metrics.mask_ranking import relevance_rank_accuracy, top_k_intersection
from sage.metrics.perturbation_curves import (
    aopc_scores,
    baseline_images,
    class_scores,
    deletion_insertion_scores,
    faithfulness_correlation,
    gaussian_blur,
)
from sage.metrics.robustness import (
    GaussianPerturbation,
    UniformPerturbation,
    infidelity_scores,
    max_sensitivity_scores,
)
from sage.metrics.suite import (
    PERTURBATION_SETS,
    MetricContext,
    compute_metric_sets,
    metric_set,
)
from sage.saliency.methods import create_method

CONF = Path(__file__).resolve().parents[1] / "sage" / "conf" / "metrics"
SETS = (
    "deletion_insertion",
    "pixel_flipping",
    "faithfulness_correlation",
    "robustness",
    "sparseness",
    "mask_ranking",
)
H = W = 16


class RegionMean(nn.Module):
    """Logit of class 0 = mean over ``region`` of the channel-mean input; class 1 its negative."""

    def __init__(self, region: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("w", region.float() / region.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x.mean(1) * self.w).sum((1, 2))
        return torch.stack([s, -s], 1)


class Linear(nn.Module):
    """Logit of class 0 = Σ w ⊙ x."""

    def __init__(self, c: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("w", torch.randn(c, H, W, generator=g, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x.double() * self.w).sum((1, 2, 3))
        return torch.stack([s, torch.zeros_like(s)], 1)


class TinyCNN(nn.Module):
    def __init__(self, c: int = 3, k: int = 4, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(c, 6, 3, padding=1)
        self.act = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24, k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


def _region() -> torch.Tensor:
    r = torch.zeros(H, W, dtype=torch.bool)
    r[:8, :8] = True  # 64 of 256 pixels, four 4×4 regions
    return r


def _random_batch(b: int = 3, c: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randn(b, c, H, W, generator=g)
    maps = torch.rand(b, H, W, generator=g)  # continuous: no ties
    return images, maps


# ------------------------------------------------------------------ Deletion / Insertion


def test_deletion_insertion_region_model_is_analytic():
    region = _region()
    model = RegionMean(region).eval()
    images = torch.ones(2, 3, H, W)
    maps = torch.stack([region.float(), (~region).float()])  # the region vs its complement
    t = torch.zeros(2, dtype=torch.long)
    kw = dict(pixels_per_step=16, insertion_baseline="mean", output="logit")
    s = deletion_insertion_scores(model, images, maps, t, 0.5, 0.5, **kw)
    # region first: the logit falls linearly to 0 after 64 of 256 pixels (a triangle)
    torch.testing.assert_close(s["deletion"], torch.tensor([64 / 512, 1 - 64 / 512]))
    torch.testing.assert_close(s["insertion"], torch.tensor([1 - 64 / 512, 64 / 512]))
    assert s["deletion_curve"].shape == (2, 17)
    torch.testing.assert_close(s["deletion_curve"][0, :6], torch.tensor([1, 0.75, 0.5, 0.25, 0, 0]))
    # probabilities: softmax of (s, −s) is sigmoid(2s), point by point
    p = deletion_insertion_scores(model, images, maps, t, 0.5, 0.5, **(kw | {"output": "prob"}))
    torch.testing.assert_close(p["deletion_curve"], torch.sigmoid(2 * s["deletion_curve"]))


def _naive_curve(model, image, start, end, order, counts, target):
    """One image, one step at a time: the pixels order[:n] come from ``end``."""
    ys = []
    for n in counts:
        x = start.clone()
        flat_x, flat_end = x.view(x.shape[0], -1), end.reshape(end.shape[0], -1)
        flat_x[:, order[:n]] = flat_end[:, order[:n]]
        with torch.no_grad():
            ys.append(torch.softmax(model(x[None]), 1)[0, target])
    return torch.stack(ys)


def test_deletion_insertion_equal_a_per_image_loop_and_rise_auc():
    model = TinyCNN().eval()
    images, maps = _random_batch()
    t = torch.tensor([0, 1, 2])
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    s = deletion_insertion_scores(model, images, maps, t, mean, std, pixels_per_step=16)
    blur = baseline_images(images, "blur", mean, std)
    counts = list(range(0, 257, 16))
    for i in range(3):
        order = torch.argsort(maps[i].flatten(), descending=True, stable=True)
        zero = torch.zeros_like(images[i])
        d = _naive_curve(model, images[i], images[i], zero, order, counts, t[i])
        ins = _naive_curve(model, images[i], blur[i], images[i], order, counts, t[i])
        torch.testing.assert_close(s["deletion_curve"][i], d, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(s["insertion_curve"][i], ins, atol=1e-6, rtol=1e-5)
        # RISE's auc(): (Σ y − y₀/2 − y_n/2) / n, equal spacing (16 divides 256)
        for kind, arr in (("deletion", d), ("insertion", ins)):
            rise = (arr.sum() - arr[0] / 2 - arr[-1] / 2) / (len(arr) - 1)
            assert abs(float(s[kind][i]) - float(rise)) < 1e-6
    # a batch of several steps per forward, the caller's logits, and images one at a time:
    # the same numbers (an image's scores do not depend on its batch)
    with torch.no_grad():
        logits = model(images)
    again = deletion_insertion_scores(
        model, images, maps, t, mean, std, pixels_per_step=16, batch_size=7, logits=logits
    )
    one = deletion_insertion_scores(model, images[1:2], maps[1:2], t[1:2], mean, std, steps=16)
    for k in ("deletion", "insertion"):
        torch.testing.assert_close(again[k], s[k], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(one[k], s[k][1:2], atol=1e-6, rtol=1e-5)


def test_baselines_respect_the_normalisation():
    images, _ = _random_batch()
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    mu, sd = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    pixels = lambda x: x * sd + mu  # noqa: E731
    torch.testing.assert_close(pixels(baseline_images(images, "black", mean, std)), 0 * images)
    grey = pixels(baseline_images(images, 0.5, mean, std))
    torch.testing.assert_close(grey, torch.full_like(images, 0.5))
    assert baseline_images(images, "mean", mean, std).abs().max() == 0
    u = pixels(baseline_images(images, "uniform", mean, std, seed=3))
    assert float(u.min()) >= 0 and float(u.max()) <= 1
    torch.testing.assert_close(u[0], u[2])  # one field shared by every image
    # the blur commutes with the normalisation (unit gain, reflect padding) ...
    blurred = baseline_images(images, "blur", mean, std, blur_kernel=5, blur_sigma=1.5)
    torch.testing.assert_close(
        pixels(blurred), gaussian_blur(pixels(images), 5, 1.5), atol=1e-5, rtol=1e-5
    )
    # ... and is torchvision's Gaussian blur
    tvf = pytest.importorskip("torchvision.transforms.functional")
    torch.testing.assert_close(
        gaussian_blur(images, 5, 1.5),
        tvf.gaussian_blur(images, [5, 5], [1.5, 1.5]),
        atol=1e-5,
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="baseline"):
        baseline_images(images, "grey", mean, std)


def test_flat_maps_are_nan():
    model = TinyCNN().eval()
    images, maps = _random_batch(2)
    maps[1] = 0.3
    t = torch.tensor([0, 1])
    s = deletion_insertion_scores(model, images, maps, t, 0.5, 0.5, steps=8)
    a = aopc_scores(model, images, maps, t, 0.5, 0.5, region_size=4, steps=4)
    f = faithfulness_correlation(model, images, maps, t, 0.5, 0.5, subsets=5, subset_size=20)
    for v in (s["deletion"], s["insertion"], a["aopc_morf"], f["faithfulness_correlation"]):
        assert math.isfinite(float(v[0])) and math.isnan(float(v[1]))


# ------------------------------------------------------------------------------- AOPC


def test_aopc_region_model_is_analytic():
    region = _region()
    model = RegionMean(region).eval()
    images = torch.ones(1, 3, H, W)
    maps = region.float()[None]
    t = torch.zeros(1, dtype=torch.long)
    a = aopc_scores(
        model,
        images,
        maps,
        t,
        0.5,
        0.5,
        region_size=4,
        steps=None,
        baseline="mean",
        output="logit",
    )
    # 16 regions, the 4 of the region first (MoRF) or last (LeRF); drop = share of it removed
    morf = [min(k / 4, 1) for k in range(17)]
    lerf = [max(0, (k - 12) / 4) for k in range(17)]
    torch.testing.assert_close(a["morf_curve"][0], torch.tensor(morf))
    torch.testing.assert_close(a["lerf_curve"][0], torch.tensor(lerf))
    assert abs(float(a["aopc_morf"][0]) - 14.5 / 17) < 1e-6
    assert abs(float(a["aopc_lerf"][0]) - 2.5 / 17) < 1e-6


def test_aopc_equals_a_per_image_loop():
    model = TinyCNN().eval()
    images, maps = _random_batch()
    t = torch.tensor([3, 1, 0])
    mean, std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    a = aopc_scores(model, images, maps, t, mean, std, region_size=5, steps=6, seed=1)
    noise = baseline_images(images, "uniform", mean, std, seed=1)
    for i in range(3):
        # regions of 5 px from the top-left corner, cut at the edge: 4 × 4 regions
        ids = (torch.arange(H) // 5)[:, None] * 4 + (torch.arange(W) // 5)[None, :]
        sums = torch.zeros(16, dtype=torch.float64).index_add_(
            0, ids.flatten(), maps[i].flatten().double()
        )
        with torch.no_grad():
            clean = torch.softmax(model(images[i : i + 1]), 1)[0, t[i]]
        for order, desc in (("morf", True), ("lerf", False)):
            ranked = torch.sort(sums, descending=desc, stable=True).indices
            x = images[i].clone()
            drops = [torch.tensor(0.0)]
            for region in ranked[:6]:
                sel = (ids == region)[None].expand_as(x)
                x[sel] = noise[i][sel]
                with torch.no_grad():
                    drops.append(clean - torch.softmax(model(x[None]), 1)[0, t[i]])
            torch.testing.assert_close(
                a[f"{order}_curve"][i], torch.stack(drops), atol=1e-6, rtol=0
            )
            assert abs(float(a[f"aopc_{order}"][i]) - float(torch.stack(drops).mean())) < 1e-6


# ------------------------------------------------------------------ faithfulness correlation


def test_faithfulness_correlation_is_one_for_the_exact_linear_attribution():
    model = Linear(3).eval()
    images, _ = _random_batch(2)
    exact = (model.w.float() * images).sum(1)  # gradient × input: the drop of any subset
    maps = torch.stack([exact[0], -exact[1]])
    t = torch.zeros(2, dtype=torch.long)
    f = faithfulness_correlation(
        model, images, maps, t, 0.5, 0.5, subsets=20, subset_size=30, baseline="mean"
    )
    torch.testing.assert_close(
        f["faithfulness_correlation"], torch.tensor([1.0, -1.0]), check_dtype=False
    )
    torch.testing.assert_close(f["attribution_sums"][0], f["drops"][0].double(), atol=1e-4, rtol=0)


def test_faithfulness_correlation_equals_a_loop_and_is_batch_independent():
    model = TinyCNN().eval()
    images, maps = _random_batch()
    t = torch.tensor([0, 1, 2])
    f = faithfulness_correlation(
        model, images, maps, t, 0.5, 0.5, subsets=12, subset_size=0.1, output="prob", seed=4
    )
    g = torch.Generator().manual_seed(4)
    subsets = torch.rand(12, H * W, generator=g).argsort(1)[:, :26]  # round(0.1 · 256)
    black = baseline_images(images, "black", 0.5, 0.5)
    for i in range(3):
        with torch.no_grad():
            clean = torch.softmax(model(images[i : i + 1]), 1)[0, t[i]]
        drops, sums = [], []
        for idx in subsets:
            x = images[i].clone().view(3, -1)
            x[:, idx] = black[i].view(3, -1)[:, idx]
            with torch.no_grad():
                drops.append(clean - torch.softmax(model(x.view(1, 3, H, W)), 1)[0, t[i]])
            sums.append(maps[i].flatten()[idx].sum())
        r = np.corrcoef(torch.stack(sums).numpy(), torch.stack(drops).numpy())[0, 1]
        assert abs(float(f["faithfulness_correlation"][i]) - r) < 1e-5
    one = faithfulness_correlation(
        model,
        images[2:],
        maps[2:],
        t[2:],
        0.5,
        0.5,
        subsets=12,
        subset_size=0.1,
        output="prob",
        seed=4,
        batch_size=5,
    )
    torch.testing.assert_close(one["faithfulness_correlation"], f["faithfulness_correlation"][2:])


# ---------------------------------------------------------------------- complexity, ranking


def test_sparseness_and_effective_complexity_hand_computed():
    n = H * W
    one_hot = torch.zeros(H, W)
    one_hot[3, 5] = -2.0  # magnitude counts
    maps = torch.stack([one_hot, torch.full((H, W), 0.7), torch.zeros(H, W)])
    g = sparseness(maps)
    assert abs(float(g[0]) - (1 - 1 / n)) < 1e-7
    assert abs(float(g[1])) < 1e-7
    assert math.isnan(float(g[2]))
    # sorted [0, 0, 1, 3]: Σ(2i − n − 1)a = 1 + 9 = 10, over n·Σa = 16
    small = torch.tensor([[[3.0, 0.0], [0.0, 1.0]]])
    assert abs(float(sparseness(small)[0]) - 10 / 16) < 1e-7
    ec = effective_complexity(torch.tensor([[[0.0, 1e-6], [0.5, -1.0]]]), eps=1e-5)
    assert float(ec[0]) == 0.5  # 1e-6 / 1 is below eps
    assert float(effective_complexity(maps)[0]) == 1 / n
    assert math.isnan(float(effective_complexity(maps)[2]))


def test_rank_accuracy_and_top_k_hand_computed():
    maps = torch.arange(16.0).view(1, 4, 4)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask.view(-1)[[15, 14, 0]] = True
    # the 3 highest pixels are 15, 14, 13: two in the mask
    assert abs(float(relevance_rank_accuracy(maps, mask)[0]) - 2 / 3) < 1e-7
    assert float(top_k_intersection(maps, mask, k=2)[0]) == 1.0
    assert float(top_k_intersection(maps, mask, k=4)[0]) == 0.5
    assert float(top_k_intersection(maps, mask, k=0.25)[0]) == 0.5  # a fraction: 4 pixels
    # ties: values 3, 1, 1, 1, 0, ...; mask {0, 1}; K = 2 takes pixel 0 and one of three tied
    tied = torch.zeros(1, 4, 4)
    tied.view(-1)[:4] = torch.tensor([3.0, 1, 1, 1])
    m2 = torch.zeros(1, 4, 4, dtype=torch.bool)
    m2.view(-1)[[0, 1]] = True
    assert abs(float(relevance_rank_accuracy(tied, m2)[0]) - (1 + 1 / 3) / 2) < 1e-7
    assert float(relevance_rank_accuracy(tied, m2, ties="first")[0]) == 1.0
    # empty mask, flat map: NaN
    assert math.isnan(float(relevance_rank_accuracy(maps, torch.zeros_like(mask))[0]))
    assert math.isnan(float(top_k_intersection(torch.ones(1, 4, 4), mask, k=2)[0]))


# ------------------------------------------------------------------------- captum (robustness)


def test_robustness_equals_direct_captum_calls():
    from captum.metrics import infidelity, sensitivity_max

    model = TinyCNN().eval()
    images, _ = _random_batch(2)
    t = torch.tensor([0, 2])
    method = create_method("saliency")
    maps = method(model, images, t)
    std = (0.2, 0.25, 0.3)
    sd = torch.tensor(std).view(1, 3, 1, 1)
    ours = infidelity_scores(model, images, maps, t, std, noise=0.05, samples=6, seed=2)
    direct = infidelity(
        model,
        GaussianPerturbation(0.05, 2, sd, seed=2),
        images,
        maps[:, None].expand_as(images),
        target=t,
        n_perturb_samples=6,
        normalize=True,
    )
    torch.testing.assert_close(ours, direct)
    assert (ours >= 0).all()
    sens = max_sensitivity_scores(model, images, t, method, std, radius=0.05, samples=4, seed=1)
    direct = sensitivity_max(
        # captum reads the clean explanation as a tuple (one tensor per input)
        lambda x, target: (method(model, x[0] if isinstance(x, tuple) else x, target),),
        images,
        perturb_func=UniformPerturbation(0.05, 2, sd, seed=1),
        n_perturb_samples=4,
        target=t,
    )
    torch.testing.assert_close(sens, direct)
    # one image alone: the same perturbation fields, so the same value
    alone = infidelity_scores(
        model, images[1:], maps[1:], t[1:], std, noise=0.05, samples=6, seed=2
    )
    torch.testing.assert_close(alone, ours[1:], atol=1e-6, rtol=1e-5)


def test_perturbations_are_in_pixel_units_and_shared_across_images():
    sd = torch.tensor([0.5, 0.25]).view(1, 2, 1, 1)
    x = torch.zeros(3 * 4, 2, 8, 8)  # captum's expansion: 3 images × 4 samples
    noise, perturbed = GaussianPerturbation(0.1, 3, sd, seed=0)(x)
    torch.testing.assert_close(perturbed, -noise)
    pixel = noise * sd
    assert abs(float(pixel.std()) - 0.1) < 0.01
    torch.testing.assert_close(noise[0:4], noise[4:8])  # sample j of every image: field j
    u = UniformPerturbation(0.02, 3, sd, seed=0)(x) * sd
    assert float(u.abs().max()) <= 0.02 + 1e-7


# ------------------------------------------------------------------------------ metric sets


def _context() -> MetricContext:
    model = TinyCNN(k=4).eval()
    images, _ = _random_batch(2)
    method = create_method("gradcam", target_layers=["conv"])
    labels = torch.tensor([0, 1])
    maps = method(model, images, labels)
    fg = torch.zeros(2, H, W, dtype=torch.bool)
    fg[:, 4:12, 4:12] = True
    return MetricContext(
        model=model,
        method=method,
        images=images,
        targets=labels,
        labels=labels,
        maps=maps,
        regions={"fg": fg},
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        logits=method.last_logits,
    )


def test_sets_yaml_defaults_match_the_functions():
    for name in SETS:
        cfg = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
        assert list(cfg) == [name]
        params = inspect.signature(metric_set(name)).parameters
        for key, value in cfg[name].items():
            assert key in params, f"{name}.{key}"
            assert params[key].default == value, f"{name}.{key}"
    assert catalogue_sets.PERTURBATION_SETS <= PERTURBATION_SETS
    assert not {"sparseness", "mask_ranking"} & PERTURBATION_SETS


def test_sets_columns_and_values():
    ctx = _context()
    opts = {
        "deletion_insertion": {"steps": 8},
        "pixel_flipping": {"region_size": 4, "steps": 5},
        "faithfulness_correlation": {"subsets": 8, "subset_size": 20},
        "robustness": {"infidelity_samples": 3, "sensitivity_samples": 2},
        "sparseness": {},
        "mask_ranking": {"k": 10},
    }
    cols = compute_metric_sets(ctx, opts)
    assert set(cols) == {
        "deletion",
        "insertion",
        "aopc/morf",
        "aopc/lerf",
        "aopc/gap",
        "faithfulness_correlation",
        "infidelity",
        "max_sensitivity",
        "sparseness",
        "effective_complexity",
        "rank_accuracy/fg",
        "topk_intersection/fg",
    }
    for key, v in cols.items():
        assert v.shape == (2,), key
    m, x, s, t = ctx.model, ctx.images, ctx.maps, ctx.targets
    d = deletion_insertion_scores(m, x, s, t, ctx.mean, ctx.std, steps=8)
    torch.testing.assert_close(cols["deletion"], d["deletion"])
    a = aopc_scores(m, x, s, t, ctx.mean, ctx.std, region_size=4, steps=5)
    torch.testing.assert_close(cols["aopc/gap"], a["aopc_morf"] - a["aopc_lerf"])
    torch.testing.assert_close(cols["sparseness"], sparseness(s))
    torch.testing.assert_close(
        cols["topk_intersection/fg"], top_k_intersection(s, ctx.regions["fg"], 10)
    )
    inf = infidelity_scores(m, x, s, t, ctx.std, samples=3)
    torch.testing.assert_close(cols["infidelity"], inf)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_sets_on_cuda_equal_cpu():
    """Random draws come from seeded CPU generators: the same numbers on any device."""
    ctx = _context()
    opts = {
        "deletion_insertion": {"steps": 8},
        "pixel_flipping": {"region_size": 4, "steps": 5},
        "faithfulness_correlation": {"subsets": 8, "subset_size": 20},
        "robustness": {"infidelity_samples": 3, "sensitivity_samples": 2},
        "sparseness": {},
        "mask_ranking": {"k": 10},
    }
    cpu = compute_metric_sets(ctx, opts)
    dev = torch.device("cuda")
    ctx.model.to(dev)
    for name in ("images", "targets", "labels", "maps", "logits"):
        setattr(ctx, name, getattr(ctx, name).to(dev))
    ctx.regions = {k: v.to(dev) for k, v in ctx.regions.items()}
    gpu = compute_metric_sets(ctx, opts)
    for key, value in cpu.items():
        assert gpu[key].device.type == "cuda", key
        torch.testing.assert_close(gpu[key].cpu(), value, atol=1e-4, rtol=1e-3, msg=key)


# ------------------------------------------------------------------------ agreement: Quantus


def _quantus(metric_cls, model, x, y, a, s=None, **kw):
    quantus = pytest.importorskip("quantus")
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        metric = getattr(quantus, metric_cls)(disable_warnings=True, **kw)
        out = metric(
            model=model,
            x_batch=x.numpy(),
            y_batch=y.numpy(),
            a_batch=a.numpy(),
            s_batch=None if s is None else s.numpy(),
            channel_first=True,
        )
    return np.asarray(out, dtype=np.float64)


def test_agreement_with_quantus_complexity_and_ranking():
    pytest.importorskip("quantus")
    model = TinyCNN().eval()
    images, maps = _random_batch(4)
    maps = maps * 2 - 0.5  # signed, no ties
    y = torch.zeros(4, dtype=torch.long)
    g = torch.Generator().manual_seed(1)
    masks = torch.rand(4, H, W, generator=g) < 0.3
    a = maps[:, None]
    q = _quantus("Sparseness", model, images, y, a, normalise=False)
    assert np.abs(sparseness(maps).numpy() - q).max() < 1e-4  # Quantus adds 1e-7 to |a|
    per_image = maps / maps.abs().flatten(1).amax(1)[:, None, None]  # Quantus: batch maximum
    q = _quantus("EffectiveComplexity", model, images, y, per_image[:, None], normalise=False)
    assert np.abs(effective_complexity(maps).numpy() * H * W - q).max() == 0
    q = _quantus("RelevanceRankAccuracy", model, images, y, a, masks[:, None])
    assert np.abs(relevance_rank_accuracy(maps, masks).numpy() - q).max() < 1e-6
    q = _quantus("TopKIntersection", model, images, y, a, masks[:, None], k=40)
    assert np.abs(top_k_intersection(maps, masks, k=40).numpy() - q).max() < 1e-6


def test_agreement_with_quantus_perturbation_curves():
    """One-channel images with identity normalisation: Quantus' features are then pixels and
    a baseline of 0.0 is SAGE's ``black``."""
    pytest.importorskip("quantus")
    model = TinyCNN(c=1).eval()
    images, maps = _random_batch(3, c=1)
    y = torch.tensor([0, 1, 3])
    a = maps[:, None]
    # deletion curve (points 1..n) = Quantus PixelFlipping's curve
    q = _quantus(
        "PixelFlipping",
        model,
        images,
        y,
        a,
        features_in_step=32,
        perturb_baseline=0.0,
        normalise=False,
    )
    ours = deletion_insertion_scores(
        model, images, maps, y, 0.0, 1.0, pixels_per_step=32, deletion_baseline="black"
    )
    assert np.abs(ours["deletion_curve"][:, 1:].numpy() - q).max() < 1e-6
    # region perturbation curves (k = 1..L) = Quantus RegionPerturbation's
    for order in ("morf", "lerf"):
        q = _quantus(
            "RegionPerturbation",
            model,
            images,
            y,
            a,
            patch_size=4,
            order=order,
            regions_evaluation=10,
            perturb_baseline=0.0,
            normalise=False,
        )
        ours = aopc_scores(
            model,
            images,
            maps,
            y,
            0.0,
            1.0,
            region_size=4,
            steps=10,
            baseline="black",
            orders=(order,),
        )
        assert np.abs(ours[f"{order}_curve"][:, 1:].numpy() - q).max() < 1e-6
    # faithfulness correlation on Quantus' own random subsets
    np.random.seed(7)  # noqa: NPY002 (Quantus draws from numpy's global stream)
    idx = np.stack(
        [
            np.stack([np.random.choice(H * W, 30, replace=False) for _ in range(3)])  # noqa: NPY002
            for _ in range(15)
        ],
        1,
    )  # (B, n, k), drawn in Quantus' order (run, then image)
    np.random.seed(7)  # noqa: NPY002 (Quantus draws from numpy's global stream)
    q = _quantus(
        "FaithfulnessCorrelation",
        model,
        images,
        y,
        a,
        nr_runs=15,
        subset_size=30,
        perturb_baseline=0.0,
        return_aggregate=False,
    )
    ours = faithfulness_correlation(
        model, images, maps, y, 0.0, 1.0, indices=torch.from_numpy(idx), baseline="black"
    )
    assert np.abs(ours["faithfulness_correlation"].numpy() - q).max() < 1e-4


def test_class_scores():
    logits = torch.tensor([[1.0, 2.0], [0.0, -1.0]])
    t = torch.tensor([1, 0])
    torch.testing.assert_close(class_scores(logits, t, "logit"), torch.tensor([2.0, 0.0]))
    torch.testing.assert_close(class_scores(logits, t), torch.softmax(logits, 1)[[0, 1], [1, 0]])
    with pytest.raises(ValueError, match="output"):
        class_scores(logits, t, "raw")
