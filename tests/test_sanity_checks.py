"""Sanity checks of Adebayo et al. (2018): the map similarities, the model-parameter
randomisation test (MPRT), the data randomisation test's label shuffling and reference
model, the metric set and its figure."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch
from blob_task import blob_batch, trained_blob_model
from omegaconf import OmegaConf
from scipy.stats import spearmanr
from torch import nn

from conftest import TINY_SYNTH
from sage.data.datamodule import PreparedDataModule
from sage.data.ensure import ensure_prepared
from sage.errors import SageError
from sage.metrics.randomisation import (
    cascade_layers,
    load_reference,
    mprt,
    parse_column,
    pick_steps,
    reinitialise,
)
from sage.metrics.similarity import (
    average_ranks,
    map_similarities,
    spearman,
    ssim_similarity,
    topk_intersection,
)
from sage.metrics.suite import (
    PERTURBATION_SETS,
    MetricContext,
    compute_metric_sets,
    list_metric_sets,
)
from sage.models import create_backbone
from sage.plots.randomisation import plot_randomisation_figures
from sage.saliency.methods import create_method

# ------------------------------------------------------------------ similarities, by hand


def test_spearman_of_identical_maps_is_one_and_of_reversed_maps_minus_one():
    x = torch.arange(16.0).view(1, 4, 4)
    assert spearman(x, x).item() == pytest.approx(1.0)
    assert spearman(x, 15 - x).item() == pytest.approx(-1.0)
    assert spearman(x, 2 * x + 5).item() == pytest.approx(1.0)  # ranks only


def test_spearman_averages_tied_ranks_like_scipy():
    assert average_ranks(torch.tensor([[3.0, 1, 3, 2, 1]])).tolist() == [[3.5, 0.5, 3.5, 2, 0.5]]
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 4, (3, 6, 7), generator=gen).float()
    y = torch.randint(0, 4, (3, 6, 7), generator=gen).float()
    ref = [spearmanr(x[i].flatten(), y[i].flatten())[0] for i in range(3)]
    assert spearman(x, y).tolist() == pytest.approx(ref, abs=1e-12)
    # absolute maps: a sign flip changes nothing
    assert spearman(x, -y).tolist() == pytest.approx(ref, abs=1e-12)


def test_topk_intersection_of_a_hand_made_pair():
    x = torch.zeros(1, 4, 4)
    y = torch.zeros(1, 4, 4)
    x.view(-1)[[0, 1, 2, 3]] = torch.tensor([9.0, 8, 7, 6])  # top 25 % = 4 pixels
    y.view(-1)[[2, 3, 4, 5]] = torch.tensor([9.0, 8, 7, 6])
    assert topk_intersection(x, y, 25).item() == pytest.approx(0.5)
    assert topk_intersection(x, x, 25).item() == 1.0
    # 10 % of 16 pixels: ceil(1.6) = 2 pixels, {0, 1} vs {2, 3}
    assert topk_intersection(x, y, 10).item() == 0.0


def test_ssim_of_identical_maps_is_one_and_ignores_the_scale():
    x = torch.rand(2, 12, 12, generator=torch.Generator().manual_seed(1))
    assert ssim_similarity(x, x).tolist() == pytest.approx([1.0, 1.0])
    assert ssim_similarity(x, 5 * x + 2).tolist() == pytest.approx([1.0, 1.0])
    assert (ssim_similarity(x, x.flip(-1)) < 0.5).all()


def test_flat_maps_two_are_identical_one_is_undefined():
    flat, zero = torch.ones(1, 8, 8), torch.zeros(1, 8, 8)
    other = torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(2))
    both = map_similarities(flat, zero, topk=10)
    assert {k: v.item() for k, v in both.items()} == {"spearman": 1.0, "ssim": 1.0, "topk": 1.0}
    one = map_similarities(zero, other, topk=10)
    assert math.isnan(one["spearman"].item()) and math.isnan(one["topk"].item())
    assert math.isfinite(one["ssim"].item())  # SSIM is defined: the structure was lost


# ------------------------------------------------------------------ layers and steps


def test_layers_are_found_from_the_model_logits_first():
    model = create_backbone("small_cnn", 4)
    x = torch.randn(1, 3, 32, 32)
    assert cascade_layers(model, x) == [
        "classifier",
        "features.3.1",
        "features.3.0",
        "features.2.1",
        "features.2.0",
        "features.1.1",
        "features.1.0",
        "features.0.1",
        "features.0.0",
    ]
    assert cascade_layers(model, x, ["features.0", "classifier", "features.2"]) == [
        "classifier",
        "features.2",
        "features.0",
    ]
    with pytest.raises(SageError, match="not a module"):
        cascade_layers(model, x, ["features.9"])


def test_steps_are_evenly_spaced_from_logits_to_input():
    assert pick_steps(9, None) == list(range(9))
    assert pick_steps(9, 20) == list(range(9))
    assert pick_steps(9, 3) == [0, 4, 8]
    assert pick_steps(9, 1) == [0]
    assert pick_steps(161, 8)[0] == 0 and pick_steps(161, 8)[-1] == 160
    assert len(pick_steps(161, 8)) == 8


class OwnAndChild(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(3))
        self.conv = nn.Conv2d(3, 3, 1)


def test_reinitialise_is_seeded_and_leaves_the_global_rng_alone():
    a, b = create_backbone("small_cnn", 4), create_backbone("small_cnn", 4)
    b.load_state_dict(a.state_dict())
    state = torch.get_rng_state()
    reinitialise(a, "classifier", seed=3)
    assert torch.equal(torch.get_rng_state(), state)
    reinitialise(b, "classifier", seed=3)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    reinitialise(b, "classifier", seed=4)
    assert not torch.equal(a.classifier.weight, b.classifier.weight)
    # a module's own parameters only (a cascade step), or the block as a whole (named layers)
    m = OwnAndChild()
    conv = m.conv.weight.detach().clone()
    reinitialise(m, "", seed=0, recurse=False)
    assert not torch.equal(m.scale, torch.ones(3)) and torch.equal(m.conv.weight, conv)
    reinitialise(m, "", seed=0, recurse=True)
    assert not torch.equal(m.conv.weight, conv)


# ------------------------------------------------------------------ MPRT on toy models


class IgnoresInput(nn.Module):
    """Convolutional features of the image, but logits that do not depend on them (the
    zero product keeps the graph connected, so input gradients exist and are all zero)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)
        )
        self.classifier = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x).mean((2, 3))
        return self.classifier(torch.ones_like(f)) + 0 * f.sum(1, keepdim=True)


def _mean(cols: dict, column: str) -> float:
    return float(cols[column].nanmean())


def test_only_maps_that_depend_on_the_weights_change_when_the_output_ignores_the_input():
    torch.manual_seed(0)
    model = IgnoresInput().eval()
    x = torch.randn(4, 3, 24, 24)
    y = torch.tensor([0, 1, 2, 3])
    full = "mprt/cascading/2_features.0"
    # EigenCAM reads the activations: it changes once the convolutions are re-initialised,
    # not when only the classifier is (which it never looks at)
    eigen = mprt(model, create_method("eigencam", target_layers=["features.2"]), x, y, steps=None)
    assert _mean(eigen, "mprt/cascading/0_classifier/spearman") == pytest.approx(1.0)
    assert _mean(eigen, f"{full}/spearman") < 0.9
    assert _mean(eigen, f"{full}/ssim") < 0.9
    # the input gradient of an input-independent output is zero before and after: unchanged;
    # the constant baselines never look at the model
    for name in ("saliency", "ones_but_one", "half"):
        cols = mprt(model, create_method(name), x, y, steps=None)
        assert len(cols) == 2 * 3 * 3  # 2 modes × 3 layers × 3 similarities
        assert all(torch.equal(v, torch.ones_like(v)) for v in cols.values()), name


@pytest.fixture(scope="module")
def trained():
    # 60 steps already classify the held-out blobs perfectly (a third of the default's time)
    model = trained_blob_model(steps=60)
    x, y, _ = blob_batch(64, seed=99)
    with torch.no_grad():
        assert (model(x).argmax(1) == y).float().mean() >= 0.95
    return model


@pytest.fixture(scope="module")
def blobs():
    x, y, _ = blob_batch(8, seed=7)
    return x, y


def test_gradcam_fails_to_survive_full_randomisation_while_a_baseline_stays_put(trained, blobs):
    x, y = blobs
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    rng = torch.get_rng_state()
    last = "mprt/cascading/8_features.0.0"
    gradcam = mprt(trained, create_method("gradcam"), x, y, steps=None, modes=["cascading"])
    baseline = mprt(trained, create_method("ones_but_one"), x, y, steps=None)
    print(
        "\nafter full cascading randomisation (mean over 8 blob images):",
        {s: round(_mean(gradcam, f"{last}/{s}"), 3) for s in ("spearman", "ssim", "topk")},
        "ones_but_one",
        {s: round(_mean(baseline, f"{last}/{s}"), 3) for s in ("spearman", "ssim", "topk")},
    )
    assert _mean(gradcam, f"{last}/spearman") < 0.5
    assert _mean(gradcam, f"{last}/ssim") < 0.5
    assert all(torch.equal(v, torch.ones_like(v)) for v in baseline.values())
    # the trained weights were never touched, the global RNG neither
    after = trained.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert torch.equal(torch.get_rng_state(), rng)


def test_randomisation_is_deterministic_in_the_seed(trained, blobs):
    x, y = blobs
    method = create_method("saliency")
    opts = {"steps": 3, "modes": ["cascading"], "similarities": ["spearman"]}
    a = mprt(trained, method, x, y, seed=0, **opts)
    b = mprt(trained, method, x, y, seed=0, **opts)
    c = mprt(trained, method, x, y, seed=1, **opts)
    assert list(a) == [
        "mprt/cascading/0_classifier/spearman",
        "mprt/cascading/1_features.2.0/spearman",
        "mprt/cascading/2_features.0.0/spearman",
    ]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


# ------------------------------------------------------------------ the metric set, the figure


def _ctx(model, method, x, y) -> MetricContext:
    maps = method(model, x, y)
    return MetricContext(
        model=model,
        method=method,
        images=x,
        targets=y,
        labels=y,
        maps=maps,
        regions={"fg": torch.ones(maps.shape, dtype=torch.bool)},
        mean=(0.0,) * 3,
        std=(1.0,) * 3,
    )


def _save_sage_checkpoint(model: nn.Module, path) -> None:
    torch.save(
        {
            "hyper_parameters": {"backbone": "small_cnn", "class_names": ["a", "b", "c", "d"]},
            "state_dict": {f"net.{k}": v for k, v in model.state_dict().items()},
        },
        path,
    )


def test_the_metric_set_and_the_data_randomisation_reference(tmp_path):
    assert "randomisation" in list_metric_sets() and "randomisation" in PERTURBATION_SETS
    torch.manual_seed(0)
    model = create_backbone("small_cnn", 4).eval()
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 2])
    same, other = tmp_path / "same.ckpt", tmp_path / "other.ckpt"
    _save_sage_checkpoint(model, same)
    _save_sage_checkpoint(create_backbone("small_cnn", 4), other)
    ctx = _ctx(model, create_method("gradcam"), x, y)
    options = {"steps": 2, "modes": ["independent"], "similarities": ["spearman", "topk"]}
    cols = compute_metric_sets(ctx, {"randomisation": {**options, "reference": str(same)}})
    assert sorted(cols) == [
        "data_randomisation/spearman",
        "data_randomisation/topk",
        "mprt/independent/0_classifier/spearman",
        "mprt/independent/0_classifier/topk",
        "mprt/independent/1_features.0.0/spearman",
        "mprt/independent/1_features.0.0/topk",
    ]
    assert all(v.shape == (3,) for v in cols.values())
    assert parse_column("mprt/independent/1_features.0.0/topk") == (
        "independent",
        1,
        "features.0.0",
        "topk",
    )
    # a reference with the very same weights gives the very same maps
    assert cols["data_randomisation/spearman"].tolist() == [1.0, 1.0, 1.0]
    # loaded once: the second call reuses the model
    assert load_reference(str(same))[0] is load_reference(str(same))[0]
    cols = compute_metric_sets(
        ctx, {"randomisation": {"modes": [], "reference": str(other), "similarities": ["ssim"]}}
    )
    assert list(cols) == ["data_randomisation/ssim"]
    assert (cols["data_randomisation/ssim"] < 0.99).all()


def test_the_mprt_figure(tmp_path):
    rows = []
    for method, level in (("gradcam", 0.2), ("ones_but_one", 1.0)):
        for i in range(5):
            row = {"image_id": f"i{i}", "method": method}
            for k, layer in enumerate(["classifier", "features.3.0", "features.0.0"]):
                for sim in ("spearman", "ssim"):
                    v = 1.0 if level == 1 else level + 0.1 * (2 - k) + 0.01 * i
                    row[f"mprt/cascading/{k}_{layer}/{sim}"] = v
            row["mprt/independent/0_classifier/spearman"] = float("nan")
            rows.append(row)
    paths = plot_randomisation_figures(pd.DataFrame(rows), tmp_path / "fig", "small_cnn")
    assert [p.name for p in paths] == ["mprt_cascading.png"]  # independent: all NaN, no curve
    assert paths[0].stat().st_size > 10_000


# ------------------------------------------------------------------ data randomisation: labels


def test_shuffle_labels_permutes_only_the_train_labels(compose_cfg):
    cfg = compose_cfg("train", TINY_SYNTH)
    assert cfg.data.shuffle_labels is False
    root = ensure_prepared(OmegaConf.to_container(cfg.dataset, resolve=True))
    plain = PreparedDataModule(root, 32, (0.5,) * 3, (0.5,) * 3)
    shuffled = PreparedDataModule(root, 32, (0.5,) * 3, (0.5,) * 3, shuffle_labels=True)
    again = PreparedDataModule(root, 32, (0.5,) * 3, (0.5,) * 3, shuffle_labels=True)
    a, b = plain.dataset("train").frame, shuffled.dataset("train").frame
    assert list(a.image_id) == list(b.image_id)  # the images stay in place
    assert sorted(a.label) == sorted(b.label)  # the same multiset of labels
    assert (a.label.to_numpy() != b.label.to_numpy()).mean() > 0.5
    assert np.array_equal(b.label, again.dataset("train").frame.label)  # fixed seed
    names = dict(zip(a.label, a.label_name, strict=False))
    assert all(names[label] == name for label, name in zip(b.label, b.label_name, strict=True))
    assert int(shuffled.dataset("train")[0]["label"]) == int(b.label.iloc[0])
    for split in ("val", "test"):
        assert plain.dataset(split).frame.equals(shuffled.dataset(split).frame)


def test_explain_writes_the_columns_and_the_curves(compose_cfg, tmp_path):
    from sage.explain import run as explain_run
    from sage.train import run as train_run

    train_run(
        compose_cfg(
            "train", [*TINY_SYNTH, "debug=fast", "model.input_size=32", "data.batch_size=8"]
        )
    )
    ckpt = next((tmp_path / "run" / "checkpoints").glob("last*.ckpt"))
    cfg = compose_cfg(
        "explain",
        [
            f"checkpoint={ckpt}",
            "cam=[gradcam,half]",
            "metrics=[randomisation]",
            "metrics.randomisation.steps=2",
            "metrics.randomisation.modes=[cascading]",
            f"metrics.randomisation.reference={ckpt}",  # itself: data randomisation = 1
            "limit=4",
            "progress=false",
            "overlays=0",
        ],
    )
    assert cfg.metrics.randomisation.tracking_uri == cfg.logger.tracking_uri
    result = explain_run(cfg)
    out = tmp_path / "run"
    frame = pd.read_csv(out / "metrics.csv")
    assert "mprt/cascading/0_classifier/spearman" in frame.columns
    assert (frame["data_randomisation/ssim"] == 1).all()
    assert (frame.loc[frame.method == "half", "mprt/cascading/1_features.0.0/ssim"] == 1).all()
    assert (out / "randomisation" / "mprt_cascading.png").is_file()
    assert result["explain/half/mprt/cascading/0_classifier/topk"] == 1.0
