"""evaluate.py end to end: a 2×2 grid on tiny SynthDrivers with two 1-epoch models, MLflow
parent/child runs, resumption, selection by id and path, saliency clusters, clear errors."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from conftest import TINY_SYNTH, compose_config
from sage.data.datamodule import image_transform
from sage.data.prepared import PreparedDataset
from sage.errors import SageError
from sage.evaluate import run as evaluate_run
from sage.models import get_backbone_spec
from sage.train import run as train_run
from sage.training.classifier import load_classifier

ROOT = Path(__file__).resolve().parents[1]
FAST_TRAIN = [
    *TINY_SYNTH,
    "debug=fast",
    "model.input_size=32",
    "data.batch_size=8",
    "callbacks=model_checkpoint",  # best and last checkpoints; no validation-time saliency
]
TARGETS = "targets=[synth_driver100/bbox,synth_driver100/full]"
TARGET_OVERRIDES = "target_overrides=[" + ",".join(f"'{o}'" for o in TINY_SYNTH) + "]"


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """Two 1-epoch models trained on synth_sf3d bbox and seg, in one MLflow store."""
    root = tmp_path_factory.mktemp("study")
    for variant in ("bbox", "seg"):
        overrides = [
            *FAST_TRAIN,
            f"dataset=synth_sf3d/{variant}",
            f"paths.output_dir={root}/train_{variant}",
        ]
        train_run(compose_config("train", root, overrides))
    return root


def _client(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/outputs/mlflow.db")


def _train_runs(root: Path) -> dict[str, str]:
    client = _client(root)
    exp = client.get_experiment_by_name("sage").experiment_id
    runs = client.search_runs([exp], "tags.stage = 'train'")
    return {r.data.tags["variant"]: r.info.run_id for r in runs}


def _evaluate(root: Path, name: str, *extra: str) -> tuple[dict, Path]:
    cfg = compose_config(
        "evaluate",
        root,
        [
            TARGETS,
            TARGET_OVERRIDES,
            "progress=false",
            "clustering.thumbnails=2",
            f"paths.output_dir={root}/{name}",
            *extra,
        ],
    )
    return evaluate_run(cfg), Path(cfg.paths.output_dir)


@pytest.fixture(scope="module")
def grid(study):
    """The 2×2 grid of every finished training run (the default selection)."""
    return _evaluate(study, "grid1")


def test_grid_2x2_artifacts_and_mlflow_runs(study, grid):
    result, out = grid
    assert (result["cells"], result["evaluated"], result["skipped"]) == (4, 4, 0)
    rows, cols = (
        ["synth-sf3d/bbox", "synth-sf3d/seg"],
        ["synth-driver100/bbox", "synth-driver100/full"],
    )
    acc = pd.read_csv(out / "grid/acc.csv", index_col=0)
    assert acc.index.tolist() == rows and acc.columns.tolist() == cols
    payload = json.loads((out / "grid/f1_macro.json").read_text())
    assert payload["rows"] == rows and len(payload["values"]) == 2
    assert "| synth-sf3d/seg |" in result["table"] and "**Macro F1**" in result["table"]
    assert (out / "grid/heatmap_acc.png").stat().st_size > 0
    assert (out / "grid/table.md").read_text().count("| trained on \\ target |") >= 10

    client = _client(study)
    parent = client.get_run(result["parent_run_id"])
    assert parent.info.status == "FINISHED" and parent.data.tags["stage"] == "evaluate"
    assert parent.info.run_name.startswith("grid-2x2-test/") and "/evaluate-" in (
        parent.info.run_name
    )
    assert {"grid"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    children = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
    )
    assert len(children) == 4 and all(c.info.status == "FINISHED" for c in children)
    trained = _train_runs(study)
    assert {c.data.tags["source_run"] for c in children} == set(trained.values())
    for child in children:
        row, col = child.data.tags["source_label"], child.data.tags["target_label"]
        assert child.data.metrics["eval/acc"] == pytest.approx(acc.loc[row, col])
        # named after the source model as its training run, the target before the time
        tags = child.data.tags
        assert child.info.run_name.startswith(f"small_cnn-{tags['variant']}/{tags['dataset']}-nc")
        assert f"/evaluate-on-{col.replace('/', '-')}-" in child.info.run_name
        assert {"dataset/name", "dataset/variant", "seed", "backbone"} <= set(child.data.params)
        # per-bin cluster numbers are breakdowns (clusters/pooled.csv), not scalars
        assert not any("/bin" in k for k in child.data.metrics)
        names = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"predictions.csv", "predictions.json", "confusion.png", "roc.png"} <= names
        assert {"roc_per_class.png", "fp_fn.csv", "per_class.csv", "clusters"} <= names
        for key in ("f1_macro", "precision_weighted", "recall_macro", "ece", "support"):
            assert f"eval/{key}" in child.data.metrics


def test_cell_predictions_are_the_models_and_metrics_agree(study, grid):
    _, out = grid
    cell = out / "cells/01-synth-sf3d-bbox--synth-driver100-bbox"
    pred = pd.read_csv(cell / "predictions.csv")
    probs = pred.filter(like="p_c").to_numpy()
    assert np.allclose(probs.sum(1), 1, atol=1e-6)
    assert np.allclose(pred.confidence, probs.max(1))
    metrics = json.loads((cell / "metrics.json").read_text())
    assert metrics["acc"] == pytest.approx(pred.correct.mean())
    assert metrics["support"] == len(pred)

    # the same probabilities from the checkpoint by hand (the run's best checkpoint)
    ckpt = next((study / "train_bbox/checkpoints").glob("best*.ckpt"))
    net, hparams = load_classifier(ckpt)
    (link,) = (study / "outputs/data/prepared").glob("synth-driver100-bbox-*")
    data = PreparedDataset.open(link)
    spec = get_backbone_spec(hparams["backbone"])
    tf = image_transform(hparams["image_size"], spec.mean, spec.std)
    with Image.open(data.image_path(pred.image_id[0])) as im:
        x = tf(im.convert("RGB"))[None]
    with torch.no_grad():
        expected = net(x).softmax(-1)[0].numpy()
    assert np.allclose(probs[0], expected, atol=1e-5)

    errors = pd.read_csv(cell / "fp_fn.csv")
    assert (errors.kind == "fn").sum() == (~pred.correct).sum() == (errors.kind == "fp").sum()
    fp_fn = json.loads((cell / "fp_fn.json").read_text())
    assert sum(len(v["fn"]) for v in fp_fn.values()) == (~pred.correct).sum()
    clusters = pd.read_csv(cell / "clusters/assignments.csv")
    assert len(clusters) == len(pred) and clusters.bin.between(0, 3).all()
    groups = pd.read_csv(cell / "clusters/groups.csv")
    assert (groups.k_used <= groups[["k_requested", "distinct"]].min(1)).all()
    for name in ("scatter.png", "bands.png", "histogram.png", "thumbnails/c0.png"):
        assert (cell / "clusters" / name).stat().st_size > 0


def test_rerun_skips_finished_cells_redoes_failed_ones_and_force(study, grid):
    first, _ = grid
    again, out = _evaluate(study, "grid2")
    assert again["parent_run_id"] == first["parent_run_id"]
    assert (again["evaluated"], again["skipped"]) == (0, 4)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "grid/acc.csv"), pd.read_csv(Path(first["output_dir"]) / "grid/acc.csv")
    )

    client = _client(study)
    children = client.search_runs(
        [client.get_experiment_by_name("sage").experiment_id],
        f"tags.`mlflow.parentRunId` = '{first['parent_run_id']}'",
    )
    client.set_terminated(children[0].info.run_id, "FAILED")  # as if that cell had crashed
    redo, _ = _evaluate(study, "grid3")
    assert (redo["evaluated"], redo["skipped"]) == (1, 3)

    forced, _ = _evaluate(study, "grid4", "force=true")
    assert forced["parent_run_id"] == first["parent_run_id"]
    assert (forced["evaluated"], forced["skipped"]) == (4, 0)


def test_models_by_run_id_and_checkpoint_path(study, grid):
    runs = _train_runs(study)
    path = next((study / "train_seg/checkpoints").glob("last*.ckpt"))
    result, out = _evaluate(
        study,
        "by_ref",
        f"models=[{runs['bbox']},'{path}']",
        "targets=[synth_driver100/bbox]",
        "checkpoint_select=last",
        "limit=4",
    )
    assert result["parent_run_id"] != grid[0]["parent_run_id"]  # another grid, another parent
    acc = pd.read_csv(out / "grid/acc.csv", index_col=0)
    # a run is labelled by its training condition, a bare file by its run directory
    assert acc.index.tolist() == ["synth-sf3d/bbox", "train_seg/last"]
    assert json.loads((out / "grid/support.json").read_text())["values"] == [[4.0], [4.0]]


def test_saliency_statistics_per_cluster(study):
    result, out = _evaluate(
        study,
        "saliency",
        "select.variant=seg",
        "targets=[synth_driver100/full]",
        "saliency.methods=[gradcam]",
        "saliency.grids=[[2,2]]",
    )
    cell = next((out / "cells").iterdir())
    sal = pd.read_csv(cell / "saliency.csv")
    valid = sal[~sal.zero_map]
    assert np.allclose(valid.fg_mass + valid.bg_mass, 1, atol=1e-5)
    summary = pd.read_csv(cell / "clusters/summary.csv")
    assert {
        "gradcam/fg_mass",
        "gradcam/bg_mass",
        "gradcam/stability_2x2",
        "gradcam/zero_maps",
    } <= set(summary.columns)
    # each cluster's A_fg is the mean over its images (by hand from the per-image tables)
    assign = pd.read_csv(cell / "clusters/assignments.csv")
    merged = assign.merge(valid[["image_id", "fg_mass"]], on="image_id")
    by_hand = merged.groupby(["true", "outcome", "bin"]).fg_mass.mean()
    for row in summary.dropna(subset=["gradcam/fg_mass"]).to_dict("records"):
        assert row["gradcam/fg_mass"] == pytest.approx(
            by_hand[(row["class"], row["outcome"], row["bin"])]
        )
    pooled = pd.read_csv(cell / "clusters/pooled.csv")
    assert "gradcam/bg_mass" in pooled.columns
    child = _client(study).search_runs(
        [_client(study).get_experiment_by_name("sage").experiment_id],
        f"tags.`mlflow.parentRunId` = '{result['parent_run_id']}'",
    )[0]
    # one name per quantity: eval/<method>/fg_mass as explain/ and val_sage/ name it
    assert child.data.metrics["eval/gradcam/fg_mass"] == pytest.approx(valid.fg_mass.mean())
    assert "eval/gradcam/fg_mass/correct" in child.data.metrics


def test_errors_are_clear(study, tmp_path):
    runs = _train_runs(study)
    with pytest.raises(SageError, match="does not compose"):
        _evaluate(study, "e1", "targets=[synth_driver100/nope]")
    with pytest.raises(SageError, match="no run of MLflow experiment 'sage' matches"):
        _evaluate(study, "e2", "select.dataset=synth-driver100")
    with pytest.raises(SageError, match="checkpoint_select"):
        _evaluate(study, "e3", "checkpoint_select=middle")
    with pytest.raises(SageError, match="does not exist"):
        _evaluate(study, "e4", f"models=['{tmp_path / 'missing.ckpt'}']")
    with pytest.raises(SageError, match="listed twice"):
        _evaluate(study, "e5", f"models=[{runs['bbox']},{runs['bbox']}]")

    # a checkpoint whose run directory says it is another architecture
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / ".hydra").mkdir()
    ckpt = run_dir / "checkpoints/last.ckpt"
    ckpt.write_bytes(next((study / "train_bbox/checkpoints").glob("last*.ckpt")).read_bytes())
    (run_dir / ".hydra/config.yaml").write_text(
        "model: {name: resnet18}\ndataset: {name: synth-sf3d, variant: bbox, num_classes: 10}\n"
    )
    with pytest.raises(SageError, match="holds a 'small_cnn' model, config says 'resnet18'"):
        _evaluate(study, "e6", f"models=['{ckpt}']")
    with pytest.raises(SageError, match="config says 'resnet18'"):
        _evaluate(study, "e7", f"models=[{{ref: '{ckpt}', backbone: resnet18}}]")

    # a checkpoint whose classes differ from the target's
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    state["hyper_parameters"]["class_names"] = [f"k{i}" for i in range(10)]
    other = tmp_path / "other.ckpt"
    torch.save(state, other)
    with pytest.raises(SageError, match=r"predicts classes \['k0'.*synth_driver100/bbox"):
        _evaluate(study, "e8", f"models=['{other}']")


def test_entry_point_prints_user_errors_as_one_line(study, capsys):
    spec = importlib.util.spec_from_file_location("evaluate_entry", ROOT / "evaluate.py")
    evaluate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evaluate)
    cfg = compose_config("evaluate", study, ["split=holdout"])
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main.__wrapped__(cfg)  # below @hydra.main: the one-line error wrapper
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == (
        "error: split must be one of ('train', 'val', 'test'), got 'holdout'"
    )


@pytest.mark.slow
def test_cli_prints_the_grid_table(study):
    """The real entry point: Hydra composes the targets inside @hydra.main."""
    ckpt = next((study / "train_bbox/checkpoints").glob("last*.ckpt"))
    result = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            f"models=['{ckpt}']",
            "targets=[synth_driver100/bbox]",
            TARGET_OVERRIDES,
            "limit=3",
            "progress=false",
            "clustering.thumbnails=0",
        ],
        cwd=ROOT,
        env={**os.environ, "SAGE_ROOT": str(study)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "| trained on \\ target | synth-driver100/bbox |" in result.stdout
    assert "| train_bbox/last | " in result.stdout and "parent_run_id: " in result.stdout
