"""explain.py on your own images: ``model=<backbone> model.weights=<file> images=<folder>
[masks=<folder>]``, no checkpoint, no prepared data, no labels; metric sets that need labels
or masks are skipped with a recorded reason, region numbers only with masks."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from sage.data.image_folder import ImageFolderDataset
from sage.errors import SageError
from sage.explain import load_maps
from sage.explain import run as explain_run
from sage.models import create_backbone
from sage.models.pretrained import load_pretrained
from sage.prepare import run as prepare_run
from sage.train import run as train_run

SIZE = 64
N_CLASSES = 5
NAMES = ["a/one", "a/two", "b/three", "b/four", "five", "six"]  # ids a-one ... six
IDS = [n.replace("/", "-") for n in NAMES]
SETS = "metrics=[alignment,faithfulness,sparseness,cose,rfs]"


@pytest.fixture
def weights(tmp_path: Path) -> Path:
    """A random-weights mobilenet_v2 with a 5-way head, saved as a plain state dict. Its
    batch-norm statistics are those of random inputs: fresh ones (mean 0, var 1) leave the
    logits at ~1e-10, where the predicted class is a tie broken by rounding."""
    torch.manual_seed(0)
    net = create_backbone("mobilenet_v2", N_CLASSES)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # a plain average over the calibration batch
            m.reset_running_stats()
    with torch.no_grad():
        net.train()(torch.randn(16, 3, SIZE, SIZE))
    path = tmp_path / "mobilenet_v2.pth"
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for name in NAMES:
        path = root / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)).save(path)
    return root


@pytest.fixture
def masks(tmp_path: Path) -> Path:
    """Masks for every image but ``six`` (a centre square), matched by relative path."""
    root = tmp_path / "masks"
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[16:48, 16:48] = 255
    for name in NAMES[:-1]:
        path = root / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(path)
    return root


def _explain(compose_cfg, *overrides: str):
    cfg = compose_cfg(
        "explain",
        [
            "cam=[gradcam,saliency]",
            "progress=false",
            "overlays=2",
            "batch_size=4",
            *overrides,
        ],
    )
    return explain_run(cfg), Path(cfg.paths.output_dir), cfg


def _model(weights: Path) -> list[str]:
    """The overrides of the images mode's model: the backbone, its file, the photos' size."""
    return ["model=mobilenet_v2", f"model.weights={weights}", f"model.input_size={SIZE}"]


def _predicted(weights: Path, photos: Path) -> dict[str, int]:
    net, _, spec = load_pretrained("mobilenet_v2", weights)
    data = ImageFolderDataset(photos, SIZE, spec.mean, spec.std)
    with torch.no_grad():
        logits = net(torch.stack([data[i]["image"] for i in range(len(data))]))
    return dict(zip(data.image_ids, logits.argmax(1).tolist(), strict=True))


def test_explain_images_without_masks(compose_cfg, weights, photos):
    result, out, cfg = _explain(compose_cfg, *_model(weights), f"images={photos}", SETS)
    summary = pd.read_csv(out / "summary.csv")
    assert sorted(summary.image_id.unique()) == sorted(IDS)
    assert set(summary.method) == {"gradcam", "saliency"}
    # the predicted class is explained; there is no label, so no correct/error and no A_fg
    pred = _predicted(weights, photos)
    assert (summary.pred == summary.image_id.map(pred)).all()
    assert (summary.pred_class == [f"class_{p}" for p in summary.pred]).all()
    assert summary.correct.isna().all() and summary.fg_mass.isna().all()

    skipped = json.loads((out / "skipped_metrics.json").read_text())
    assert {"alignment", "cose", "rfs", "fg_mass", "acc"} <= set(skipped)
    assert "labels" in skipped["cose"] and "masks=" in skipped["alignment"]
    assert not {"faithfulness", "sparseness"} & set(skipped)
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"adcc", "sparseness"} <= set(metrics.columns)
    assert not any(c.endswith("/fg") for c in metrics.columns)
    assert "explain/gradcam/adcc" in result
    assert not any(k.endswith(("fg_mass", "bg_mass", "/correct", "/acc")) for k in result)

    maps = load_maps(out, IDS[:3], method="gradcam")
    assert set(maps) == {"whole", "tokens_4x4", "tokens_8x8"}  # no mask, so no fg/bg
    assert maps["whole"].shape == (3, SIZE, SIZE)
    agreement = pd.read_csv(out / "method_agreement.csv")
    assert set(agreement.region) == {"whole"} and agreement.spearman.notna().all()
    assert (out / "mosaics/gradcam_predicted.png").is_file()
    assert len(list((out / "overlays/gradcam").glob("*.png"))) == 2

    params = json.loads((out / "explain_params.json").read_text())
    assert params["backbone"] == "mobilenet_v2" and params["n_images"] == len(IDS)
    run = mlflow.MlflowClient(cfg.logger.tracking_uri).get_run(result["run_id"])
    assert set(run.data.tags["skipped_metrics"].split(", ")) == set(skipped)
    assert run.data.tags["images"] == str(photos.resolve())
    assert run.info.run_name.startswith("mobilenet_v2")


def test_explain_images_with_masks(compose_cfg, weights, photos, masks):
    result, out, _ = _explain(
        compose_cfg,
        *_model(weights),
        f"images={photos}",
        f"masks={masks}",
        SETS,
        "limit=5",  # the first five (sorted by path): every one has a mask
    )
    summary = pd.read_csv(out / "summary.csv")
    assert summary.image_id.nunique() == 5 and summary.fg_mass.notna().all()
    assert np.allclose(summary.fg_mass + summary.bg_mass, 1, atol=1e-5)
    skipped = json.loads((out / "skipped_metrics.json").read_text())
    assert {"cose", "rfs", "acc"} <= set(skipped)  # labels still missing
    assert not {"alignment", "fg_mass"} & set(skipped)
    metrics = pd.read_csv(out / "metrics.csv")
    assert "iou/fg" in metrics.columns and metrics["iou/fg"].notna().all()
    assert "explain/gradcam/fg_mass" in result and "explain/gradcam/iou/fg" in result
    maps = load_maps(out, list(summary.image_id.unique()[:2]), method="saliency")
    assert {"mask", "fg", "bg"} <= set(maps)
    assert np.allclose(maps["fg"] + maps["bg"], maps["whole"])
    assert (out / "spurious_candidates_gradcam.csv").is_file()


def test_explain_images_some_without_a_mask(compose_cfg, weights, photos, masks):
    """``six`` has no mask: its region numbers are NaN, the others' are not."""
    _, out, _ = _explain(
        compose_cfg,
        *_model(weights),
        f"images={photos}",
        f"masks={masks}",
        "metrics=[alignment]",
        "cam=[gradcam]",
    )
    summary = pd.read_csv(out / "summary.csv").set_index("image_id")
    assert np.isnan(summary.at["six", "fg_mass"]) and summary.drop("six").fg_mass.notna().all()
    metrics = pd.read_csv(out / "metrics.csv").set_index("image_id")
    assert np.isnan(metrics.at["six", "iou/fg"]) and metrics.drop("six")["iou/fg"].notna().all()
    tokens = pd.read_parquet(out / "tokens.parquet")
    fg = tokens[tokens.region == "fg"].groupby("image_id").mass.apply(lambda m: m.isna().all())
    assert fg["six"] and not fg.drop("six").any()


def test_explain_images_errors(compose_cfg, weights, photos, tmp_path):
    model = _model(weights)
    with pytest.raises(SageError, match="checkpoint= and images="):
        _explain(compose_cfg, *model, f"images={photos}", "checkpoint=latest")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SageError, match="no images"):
        _explain(compose_cfg, *model, f"images={empty}")
    with pytest.raises(SageError, match="targets=true"):
        _explain(compose_cfg, *model, f"images={photos}", "targets=true")
    with pytest.raises(SageError, match="no mask in"):
        _explain(compose_cfg, *model, f"images={photos}", f"masks={empty}")
    cfg = compose_cfg("explain", [f"images={photos}"])  # no model=
    with pytest.raises(SageError, match="model=<backbone>"):
        explain_run(cfg)
    cfg = compose_cfg("explain", [])  # neither way in
    with pytest.raises(SageError, match=r"checkpoint=.*or.*images="):
        explain_run(cfg)


def test_prepared_data_without_masks_skips_the_mask_numbers(compose_cfg, tmp_path):
    """masker=none: the callback and explain report no fg_mass (the whole frame would give
    1.0) and score alignment on the named part only, recording what they left out."""
    root = tmp_path / "pets"
    rng = np.random.default_rng(0)
    for k, name in enumerate(("cat", "dog")):
        for i in range(8):
            rgb = rng.integers(0, 40, (32, 32, 3), dtype=np.uint8)
            rgb[..., k] += 180
            (root / name).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(root / name / f"img_{i}.png")
            parts = tmp_path / "pets_parts" / name
            parts.mkdir(parents=True, exist_ok=True)
            label = np.zeros((32, 32), np.uint8)
            label[:8, :8] = 1
            Image.fromarray(label).save(parts / f"img_{i}.png")
    legend = {"0": "background", "1": "spurious"}
    (tmp_path / "pets_parts" / "legend.json").write_text(json.dumps(legend))
    folder = ["dataset=folder/full", f"dataset.root={root}"]
    prepare_run(compose_cfg("prepare", [*folder, "masker=none", "prepare.progress=false"]))
    train_cfg = compose_cfg(
        "train", [*folder, "debug=fast", "model.input_size=32", "data.batch_size=8"]
    )
    train_run(train_cfg)
    client = mlflow.MlflowClient(train_cfg.logger.tracking_uri)
    (trained,) = client.search_runs([client.get_experiment_by_name("sage").experiment_id])
    assert "fg_mass" in trained.data.tags["val_sage/skipped_metrics"]
    logged = trained.data.metrics
    assert not any(k.startswith("val_sage/") and "fg_mass" in k for k in logged)
    assert "val_sage/gradcam/arcc" in logged  # the sets that need no mask still run

    checkpoint = next((tmp_path / "run" / "checkpoints").glob("last*.ckpt"))
    result, out, _ = _explain(compose_cfg, f"checkpoint={checkpoint}", "cam=[gradcam]")
    skipped = json.loads((out / "skipped_metrics.json").read_text())
    assert {"alignment/fg", "fg_mass", "bg_mass"} <= set(skipped)
    assert "acc" not in skipped and "explain/acc" in result
    assert not any("fg_mass" in k for k in result)
    assert pd.read_csv(out / "summary.csv").fg_mass.isna().all()
    metrics = pd.read_csv(out / "metrics.csv")
    assert "iou/spurious" in metrics.columns and "iou/fg" not in metrics.columns
