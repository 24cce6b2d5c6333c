"""Training end to end on tiny SynthDrivers: MLflow run, metrics, checkpoints, sweeps, errors."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import torch

from conftest import TINY_SYNTH
from sage.data.datamodule import PreparedDataModule
from sage.data.ensure import ensure_prepared
from sage.train import run as train_run
from sage.training.classifier import load_classifier

ROOT = Path(__file__).resolve().parents[1]
FAST = [*TINY_SYNTH, "debug=fast", "model.input_size=32", "data.batch_size=8"]


def _client(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/outputs/mlflow.db")


def test_training_logs_an_mlflow_run_with_metrics_and_checkpoints(compose_cfg, tmp_path):
    cfg = compose_cfg("train", FAST)
    metrics = train_run(cfg)
    assert {"val/acc", "val/f1_macro", "val/ece", "test/acc"} <= set(metrics)

    client = _client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("sage").experiment_id])
    assert run.info.status == "FINISHED"
    # model and variant first (the UI's name column is narrow), the time last
    assert run.info.run_name.startswith("small_cnn-full/synth-sf3d-nc10/train-")
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == (
        "custom_model_development"  # MLflow 3's UI opens it on its model-training pages
    )
    for key in (
        "train/loss",
        "val/acc",
        "val/precision_macro",
        "test/acc",
        "speed/train_images_per_s",
        "model/params",
    ):
        assert key in run.data.metrics, key
    tags = run.data.tags
    assert (
        tags["seed"] == "42" and tags["git_commit"] and len(tags["model_fingerprint_final"]) == 16
    )
    assert int(tags["n_parameters"]) > 1000 and "params" not in tags
    assert run.data.params["model/name"] == "small_cnn"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "figures", "last"} <= artifacts  # Lightning logs each checkpoint by stem
    best = [a for a in artifacts if a.startswith("best-epoch")]
    assert best and client.list_artifacts(run.info.run_id, best[0])

    on_disk = sorted((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert {p.stem.split("-")[0] for p in on_disk} == {"best", "last"}
    net, hparams = load_classifier(on_disk[0], expect_backbone="small_cnn")
    assert hparams["class_names"] == [f"c{i}" for i in range(10)]
    assert net(torch.zeros(1, 3, 32, 32)).shape == (1, 10)


def test_training_output_is_quiet_and_ends_with_the_run_and_its_directory(
    compose_cfg, tmp_path, capfd, caplog, monkeypatch
):
    monkeypatch.delenv("SAGE_VERBOSE", raising=False)
    caplog.set_level(logging.INFO)
    train_run(compose_cfg("train", FAST))
    out, err = capfd.readouterr()
    # Lightning logs to stderr or, where the root logger has handlers (pytest's), to those
    printed = out + err + caplog.text
    assert "Restoring states from the checkpoint" in printed  # its other info lines stay
    for noise in ("💡 Tip", "GPU available:", "TPU available:", "LeafSpec", "Seed set to"):
        assert noise not in printed, noise

    client = _client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("sage").experiment_id])
    run_id, exp_id = run.info.run_id, run.info.experiment_id
    assert out.splitlines()[-3:] == [
        f"MLflow run: {run_id}",
        f"outputs: {(tmp_path / 'run').resolve()}",
        f"view:    mlflow ui --backend-store-uri sqlite:///{tmp_path.resolve()}/outputs/mlflow.db"
        f"  then http://127.0.0.1:5000/#/experiments/{exp_id}/runs/{run_id}"
        "?workflowType=machine_learning",
    ]


def test_closing_lines_for_a_server_and_a_database_hide_passwords():
    from sage.train import where_to_look

    page = "#/experiments/3/runs/abc?workflowType=machine_learning"
    server = where_to_look("https://u:secret@mlflow.example/", "3", "abc", "/tmp")
    assert server.splitlines()[-1] == f"view:    https://u:***@mlflow.example/{page}"
    db = where_to_look("postgresql://u:secret@h:5432/db", "3", "abc", "/tmp")
    assert "postgresql://u:***@h:5432/db" in db and "secret" not in db


def test_fast_dev_run_config_runs_every_loop_once(compose_cfg):
    metrics = train_run(compose_cfg("train", [*FAST, "debug=fdr"]))
    assert "val/acc" in metrics


def test_checkpoint_of_another_architecture_is_a_clear_error(compose_cfg, tmp_path):
    train_run(compose_cfg("train", FAST))
    ckpt = next((tmp_path / "run" / "checkpoints").glob("last*.ckpt"))
    from sage.errors import SageError

    with pytest.raises(SageError, match="holds a 'small_cnn' model, config says 'resnet18'"):
        load_classifier(ckpt, expect_backbone="resnet18")


def test_weighted_sampler_balances_merged_classes(compose_cfg):
    cfg = compose_cfg(
        "train",
        [
            *TINY_SYNTH,
            "dataset=synth_driver100/full",
            "dataset.mapping=driver100_to_sf3d_nc10_merged",
        ],
    )
    from omegaconf import OmegaConf

    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    ds["prepared_root"] = ds["prepared_root"] + "-merged"
    root = ensure_prepared(ds)
    dm = PreparedDataModule(root, 32, (0.5,) * 3, (0.5,) * 3, batch_size=4096, sampler="weighted")
    frame = dm.dataset("train").frame
    assert set(frame.loc[frame.label_name == "c5", "source_label"]) == {
        "C18_Operate_Radio",
        "C19_Operate_GPS",
    }
    assert (frame.loc[frame.label_name == "c5", "weight"] < 1).all()
    assert (frame.loc[frame.label_name == "c0", "weight"] == 1).all()
    sampler = dm.train_dataloader().sampler
    torch.manual_seed(0)
    drawn = torch.tensor(frame["label"].to_numpy())[torch.tensor(list(iter(sampler)) * 20)]
    share = torch.bincount(drawn, minlength=10).float() / len(drawn)
    # the merged class holds twice the images but is drawn about as often as a single one
    assert share[5] < 1.5 * share[0]
    raw_share = (frame.label == 5).mean() / (frame.label == 0).mean()
    assert raw_share > 1.8


def _cli(args: list[str], root: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, "SAGE_ROOT": str(root), **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_multirun_makes_two_runs_in_one_experiment(tmp_path):
    result = _cli(
        ["train.py", "-m", "model=small_cnn,resnet18", "dataset=synth_sf3d/full", *FAST],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    client = _client(tmp_path)
    runs = client.search_runs([client.get_experiment_by_name("sage").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["-m", "sage.prepare", "dataset=sf3d/full", "dataset.raw_root=/nonexistent/sf3d"],
            "error: data root /nonexistent/sf3d does not exist",
        ),
        (["-m", "sage.prepare", *TINY_SYNTH, "dataset.mapping=/nonexistent/map.json"], "error: "),
        (["train.py", "model=resnet18", "model.pretrained=true", *FAST], "error: weights file"),
        (
            ["train.py", "dataset=sf3d/full", "dataset.raw_root=/nonexistent"],
            "error: prepared dataset",
        ),
    ],
)
def test_user_errors_are_one_line(tmp_path, args, message):
    result = _cli(args, tmp_path, TORCH_HOME=str(tmp_path / "torch"))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith(message), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_unknown_label_in_mapping_is_a_one_line_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(
        '{"name": "bad", "unified": {"c0": "Safe"}, "forward": {"C99_Foo": "c0"}, "drop": "unmapped"}'
    )
    result = _cli(
        [
            "-m",
            "sage.prepare",
            "dataset=synth_driver100/full",
            *TINY_SYNTH,
            f"dataset.mapping={bad}",
        ],
        tmp_path,
    )
    assert result.returncode == 1
    assert "C99_Foo" in result.stderr.strip().splitlines()[-1]
