"""``evaluate.py mode=divergence`` end to end: two tiny 1-epoch SynthDrivers models (full- and
seg-trained), the analysis through ``sage.evaluation.run``, its files, report and MLflow run;
identical models; three models (across pairs); models of different input sizes; clear errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_SYNTH, compose_config
from sage.data.datamodule import PreparedImages, image_transform
from sage.data.prepared import PreparedDataset
from sage.errors import SageError
from sage.evaluate import run as evaluate_run
from sage.evaluation.cell import predict
from sage.models import get_backbone_spec
from sage.train import run as train_run
from sage.training.classifier import load_classifier

FAST_TRAIN = [
    *TINY_SYNTH,
    "debug=fast",
    "model.input_size=32",
    "data.batch_size=8",
    "callbacks=model_checkpoint",  # no validation-time saliency
]
TARGET_OVERRIDES = "target_overrides=[" + ",".join(f"'{o}'" for o in TINY_SYNTH) + "]"
VERDICT = re.compile(r"^(supported|not supported) at α=0\.05: Spearman ρ=-?\d\.\d\d \[")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Two 1-epoch models trained on synth_sf3d full and seg, in one MLflow store."""
    root = tmp_path_factory.mktemp("divergence")
    for variant in ("full", "seg"):
        cfg = compose_config("train", root, [*FAST_TRAIN, f"dataset=synth_sf3d/{variant}"])
        cfg.paths.output_dir = str(root / f"train_{variant}")
        train_run(cfg)
    client = _client(root)
    exp = client.get_experiment_by_name("sage").experiment_id
    runs = client.search_runs([exp], "tags.stage = 'train'")
    return root, {r.data.tags["variant"]: r.info.run_id for r in runs}


def _client(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/outputs/mlflow.db")


def _divergence(root: Path, name: str, *extra: str) -> tuple[dict, Path]:
    cfg = compose_config(
        "evaluate",
        root,
        [
            "mode=divergence",
            "divergence.dataset=synth_sf3d/full",
            TARGET_OVERRIDES,
            "progress=false",
            "divergence.bootstrap=200",
            "divergence.grids=[[2,2],[4,4]]",
            "divergence.pca_dim=4",
            *extra,
        ],
    )
    cfg.paths.output_dir = str(root / name)
    return evaluate_run(cfg), Path(cfg.paths.output_dir)


def _last(root: Path, variant: str) -> Path:
    return next((root / f"train_{variant}/checkpoints").glob("last*.ckpt"))


@pytest.fixture(scope="module")
def full_vs_seg(study):
    root, runs = study
    return _divergence(root, "div_pair", f"models=[{runs['full']},{runs['seg']}]")


def test_full_vs_seg_report_tables_and_mlflow(study, full_vs_seg):
    root, _ = study
    result, out = full_vs_seg
    assert result["models"] == 2 and result["images"] > 0
    assert VERDICT.match(result["verdict"]), result["verdict"]
    assert result["verdict"].endswith(f"between JS(pred) and JS(S̃) over {result['images']} images")
    report = (out / "report.md").read_text()
    assert result["table"] == report and result["verdict"] in report
    for section in ("## Verdict", "## Behaviour", "## Hypothesis test", "## Foreground vs bac"):
        assert section in report

    # the verdict follows from the numbers in correlations.csv
    corr = pd.read_csv(out / "correlations.csv")
    head = corr[(corr.behaviour == "js_pred") & (corr.measure == "js_map")].iloc[0]
    assert result["verdict"].startswith("supported" if head.spearman_lo > 0 else "not supported")
    assert f"ρ={head.spearman:.2f} [{head.spearman_lo:.2f}, {head.spearman_hi:.2f}]" in report
    assert {"js_pred", "disagree"} == set(corr.behaviour)
    assert {"js_map", "ssim_dist", "euclid_4x4_bg", "cosine_2x2_fg", "embed_dist"} <= set(
        corr.measure
    )

    slug = "synth-sf3d-full--synth-sf3d-seg"
    pair = out / "pairs" / slug
    per_image = pd.read_csv(pair / "per_image.csv")
    assert len(per_image) == result["images"]
    assert (per_image.disagree == (per_image.pred_a != per_image.pred_b)).all()
    sal = per_image.dropna(subset=["gradcam/js_map"])
    assert np.allclose(sal["gradcam/js_fg"] + sal["gradcam/js_bg"], sal["gradcam/js_map"])
    assert sal["gradcam/js_map"].between(0, 1).all() and per_image.js_pred.between(0, 1).all()

    # the predictions are the models': model b by hand through the grid's predict()
    selection = json.loads((out / "selection.json").read_text())
    assert [m["label"] for m in selection["models"]] == ["synth-sf3d/full", "synth-sf3d/seg"]
    net, hparams = load_classifier(selection["models"][1]["ckpt"])
    spec = get_backbone_spec(hparams["backbone"])
    data = PreparedDataset.open(selection["prepared"])
    images = PreparedImages(data, "test", image_transform(32, spec.mean, spec.std))
    pred = predict(net, images, progress=False)
    assert pred.image_ids == per_image.image_id.tolist()
    assert np.allclose(pred.probs.max(1), per_image.conf_b, atol=1e-5)

    for name in ("scatter_gradcam.png", "fg_bg_gradcam.png", "per_class.png", "flips.png"):
        assert (pair / name).stat().st_size > 0
    flips = pd.read_csv(pair / "flips.csv", index_col=0)
    assert flips.to_numpy().sum() == len(per_image)
    assert np.trace(flips.to_numpy()) == (~per_image.disagree).sum()
    emb = pd.read_csv(out / "embedding/gradcam.csv")
    assert len(emb) == 2 * len(per_image) and {"pc1", "pc4"} <= set(emb.columns)
    assert (out / "embedding/gradcam.png").stat().st_size > 0
    fg_bg = pd.read_csv(out / "fg_bg.csv")
    assert {"all", "same class", "class differs"} <= set(fg_bg.group)
    assert len(pd.read_csv(out / "partial.csv")) == 2

    client = _client(root)
    run = client.get_run(result["run_id"])
    assert run.data.tags["stage"] == "divergence" and run.data.tags["verdict"] == result["verdict"]
    # the compared models first, the time last (every stage's run-name scheme)
    assert re.fullmatch(
        r"small_cnn-\w+-vs-\w+/synth-sf3d-full-test/divergence-\d{8}-\d{6}", run.info.run_name
    )
    behaviour = pd.read_csv(out / "behaviour.csv").iloc[0]
    metrics = run.data.metrics
    assert metrics[f"divergence/{slug}/disagreement"] == pytest.approx(behaviour.disagreement)
    assert metrics[f"divergence/{slug}/gradcam/rho_spearman"] == pytest.approx(head.spearman)
    assert metrics[f"divergence/{slug}/gradcam/supported"] == float(head.spearman_lo > 0)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "correlations.csv", "pairs", "embedding", "config"} <= artifacts
    assert "checkpoints" not in artifacts and ".hydra" not in artifacts


def test_identical_models_zero_divergence_and_undefined_verdict(study, tmp_path):
    root, _ = study
    original = _last(root, "full")
    copy = tmp_path / "copy.ckpt"
    shutil.copy(original, copy)
    result, out = _divergence(
        root, "div_same", f"models=['{original}','{copy}']", "checkpoint_select=last", "limit=8"
    )
    assert result["verdict"].startswith("undefined: no behavioural divergence"), result
    per_image = pd.read_csv(next((out / "pairs").iterdir()) / "per_image.csv")
    assert len(per_image) == 8 and not per_image.disagree.any()
    for col in ("js_pred", "gradcam/js_map", "gradcam/ssim_dist", "gradcam/euclid_4x4_whole"):
        assert (per_image[col].dropna().abs() < 1e-12).all(), col
    corr = pd.read_csv(out / "correlations.csv")
    assert corr.spearman.isna().all() and corr.pearson.isna().all()
    assert corr.status.str.startswith("undefined").all()


def test_three_models_across_pairs(study, tmp_path):
    root, runs = study
    copy = tmp_path / "full_copy.ckpt"
    shutil.copy(_last(root, "full"), copy)
    result, out = _divergence(
        root,
        "div_three",
        f"models=[{runs['full']},{runs['seg']},{{ref: '{copy}', label: full-again}}]",
        "checkpoint_select=last",
        "limit=8",
    )
    verdicts = pd.read_csv(out / "verdicts.csv")
    assert len(verdicts) == 3 + 2  # every pair, then pair means and pooled
    same = verdicts[verdicts.scope == "synth-sf3d/full vs full-again"]
    assert same.status.iloc[0] == "undefined"
    across = pd.read_csv(out / "across_pairs.csv")
    assert across.level.tolist() == ["pair_means", "pooled"]
    assert across.n.tolist() == [3, 3 * 8]
    pooled = verdicts[verdicts.scope == "across pairs (pooled)"].line.iloc[0]
    assert result["verdict"] == pooled and "(image, pair) points" in pooled


def test_models_of_different_input_sizes_compare_on_the_first_models_pixels(study, tmp_path):
    root, _ = study
    state = torch.load(_last(root, "seg"), map_location="cpu", weights_only=True)
    state["hyper_parameters"]["image_size"] = 48  # same weights, run at another resolution
    bigger = tmp_path / "seg48.ckpt"
    torch.save(state, bigger)
    _, out = _divergence(
        root, "div_sizes", f"models=['{_last(root, 'full')}','{bigger}']", "limit=6"
    )
    selection = json.loads((out / "selection.json").read_text())
    assert [m["image_size"] for m in selection["models"]] == [32, 48]
    per_image = pd.read_csv(next((out / "pairs").iterdir()) / "per_image.csv")
    assert per_image["gradcam/js_map"].notna().any() and len(per_image) == 6


def test_errors_are_clear(study):
    root, runs = study
    with pytest.raises(SageError, match="divergence compares models: 1 selected"):
        _divergence(root, "e1", f"models=[{runs['full']}]")
    with pytest.raises(SageError, match=r"mode must be .*'divergence', got 'pairs'"):
        _divergence(root, "e2", "mode=pairs")
    with pytest.raises(SageError, match=r"divergence\.methods is empty"):
        _divergence(root, "e3", f"models=[{runs['full']},{runs['seg']}]", "divergence.methods=[]")
    with pytest.raises(SageError, match=r"divergence\.alpha"):
        _divergence(root, "e4", f"models=[{runs['full']},{runs['seg']}]", "divergence.alpha=1.5")
    with pytest.raises(SageError, match="does not compose"):
        _divergence(root, "e5", "divergence.dataset=synth_sf3d/nope")
