"""The validation-time SAGE callback: MLflow keys and artifacts, probe determinism, memory,
RNG isolation and every method family."""

from __future__ import annotations

import gc
import json
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_SYNTH, compose_config
from sage.compose import compose_task
from sage.errors import SageError
from sage.explain import run as explain_run
from sage.models import create_backbone
from sage.train import build_datamodule
from sage.train import run as train_run
from sage.training.probe import select_probe
from sage.training.sage_callback import SageCallback, isolated

FAST = [*TINY_SYNTH, "model.input_size=32", "data.batch_size=8", "trainer.max_epochs=2"]


def _client(root: Path) -> mlflow.MlflowClient:
    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root}/outputs/mlflow.db")


def test_training_logs_sage_metrics_per_epoch_and_artifacts(tmp_path):
    cfg = compose_config("train", tmp_path, [*FAST, "callbacks.sage.methods=[gradcam,saliency]"])
    train_run(cfg)
    client = _client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("sage").experiment_id])
    metrics = run.data.metrics
    for method in ("gradcam", "saliency"):
        for key in ("fg_mass", "bg_mass", "fg_mass/correct", "pointing_game/fg", "iou/fg", "arcc"):
            assert f"val_sage/{method}/{key}" in metrics, (method, key)
        # breakdowns are a table, not scalars (per class, per part, other correct/error splits)
        for key in ("fg_mass/c3", "arcc/error", "iou/head", "ea_pg"):
            assert f"val_sage/{method}/{key}" not in metrics, (method, key)
        assert f"val_sage/{method}/cose_models/model/sensitivity" in metrics
    history = client.get_metric_history(run.info.run_id, "val_sage/gradcam/fg_mass")
    assert len(history) == 2  # one point per validation epoch, next to val/acc
    assert len(client.get_metric_history(run.info.run_id, "val_sage/seconds")) == 2
    # ROAD/ARCC run every slow_every_n_epochs (3) epochs and at the last: epoch 1 only
    arcc = client.get_metric_history(run.info.run_id, "val_sage/gradcam/arcc")
    assert [m.step for m in arcc] == [history[-1].step]
    assert metrics["val_sage/cose_seconds"] > 0
    assert 0 <= metrics["val_sage/gradcam/fg_mass"] <= 1
    assert run.data.tags["val_sage/probe"]
    assert "val_sage/acc" in metrics and len(metrics) < 100
    local = client.download_artifacts(run.info.run_id, "val_sage/breakdowns.csv", str(tmp_path))
    breakdowns = pd.read_csv(local)
    assert list(breakdowns.columns) == ["epoch", "step", "key", "value"]
    assert set(breakdowns.epoch) == {0, 1}
    assert {"val_sage/gradcam/fg_mass/c3", "val_sage/saliency/arcc/error"} <= set(breakdowns.key)

    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "val_sage")}
    assert {"val_sage/epoch_000", "val_sage/epoch_001", "val_sage/probe.json"} <= artifacts
    epoch = {a.path for a in client.list_artifacts(run.info.run_id, "val_sage/epoch_001")}
    assert {
        "val_sage/epoch_001/mosaic_gradcam.png",
        "val_sage/epoch_001/mosaic_saliency.png",
        "val_sage/epoch_001/tokens.csv",
        "val_sage/epoch_001/summary.json",
    } <= epoch
    used = json.loads((tmp_path / "run" / "val_sage" / "cose_models.json").read_text())
    assert list(used["snapshots"]) == ["epoch_000"] and used["random_copy"]
    tokens = pd.read_csv(tmp_path / "run" / "val_sage" / "epoch_001" / "tokens.csv")
    assert set(tokens.method) == {"gradcam", "saliency"} and set(tokens.grid) == {"4x4", "8x8"}


def test_training_is_identical_with_and_without_the_callback(tmp_path):
    weights = []
    # smoothgrad draws noise from the global RNG: without isolation the next epoch's shuffle moves
    on = ["callbacks.sage.methods=[smoothgrad]", "callbacks.sage.per_class=1"]
    for name, extra in (("on", on), ("off", ["~callbacks.sage"])):
        cfg = compose_config(
            "train",
            tmp_path / name,
            [*FAST, "+trainer.limit_train_batches=3", "test_after_fit=false", *extra],
        )
        train_run(cfg)
        ckpt = torch.load(
            tmp_path / name / "run" / "checkpoints" / "last.ckpt",
            map_location="cpu",
            weights_only=True,
        )
        assert ckpt["epoch"] == 1  # last.ckpt holds the final weights, improved or not
        weights.append(ckpt["state_dict"])
    assert (tmp_path / "on" / "run" / "val_sage").is_dir()
    assert not (tmp_path / "off" / "run" / "val_sage").exists()
    for key, value in weights[0].items():
        assert torch.equal(value, weights[1][key]), key


def test_probe_selection_is_stratified_and_deterministic():
    frame = pd.DataFrame(
        {"image_id": [f"img{i:03d}" for i in range(40)], "label": np.repeat([0, 1, 2, 3], 10)}
    )
    frame.loc[frame.label == 3, "label"] = 2  # class 2 has 20 images, class 3 none
    a = select_probe(frame, 3, seed=0)
    b = select_probe(frame.sample(frac=1, random_state=1), 3, seed=0)
    assert list(a.image_id) == list(b.image_id)  # row order of the split does not matter
    assert a.label.value_counts().to_dict() == {0: 3, 1: 3, 2: 3}
    assert list(select_probe(frame, 3, seed=1).image_id) != list(a.image_id)
    # adding images to another class does not move this class's probe images
    more = pd.concat([frame, pd.DataFrame({"image_id": ["zzz"], "label": [1]})])
    assert list(select_probe(more, 3, 0).query("label == 0").image_id) == list(
        a.query("label == 0").image_id
    )
    assert len(select_probe(frame, 50, 0)) == 40  # fewer than per_class: the whole class
    with pytest.raises(SageError, match="per_class"):
        select_probe(frame, 0)
    with pytest.raises(SageError, match="empty"):
        select_probe(frame.iloc[:0], 2)


@pytest.fixture(scope="module")
def probe_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    cfg = compose_config("train", root, [*TINY_SYNTH, "model.input_size=32"])
    dm = build_datamodule(cfg)
    trainer = SimpleNamespace(datamodule=dm, max_epochs=3, default_root_dir=str(root))
    torch.manual_seed(0)
    net = create_backbone("small_cnn", 10)
    return trainer, net, root


def _callback(trainer, **kwargs) -> SageCallback:
    cb = SageCallback(**kwargs)
    cb.setup(trainer, None, "fit")
    return cb


def test_probe_set_is_the_same_across_callbacks(probe_env):
    trainer, _, _ = probe_env
    a, b = _callback(trainer, per_class=1), _callback(trainer, per_class=1)
    assert a.probe.ids == b.probe.ids and a.probe.digest == b.probe.digest
    assert a.probe.labels.tolist() == list(range(10))
    assert a.probe.masks.shape == (10, 32, 32) and a.probe.parts is not None


@pytest.mark.parametrize("methods", [["gradcam", "eigencam"], ["saliency"], ["centre_gaussian"]])
def test_every_method_family_inside_inference_mode(probe_env, methods, tmp_path):
    trainer, net, _ = probe_env
    cb = _callback(trainer, methods=methods, per_class=1, metrics={"alignment": {}, "arcc": {}})
    net.train()
    with torch.inference_mode(), isolated(torch.device("cpu")):  # as in the validation loop
        scalars, tables = cb.evaluate(net, torch.device("cpu"), tmp_path)
    assert net.training  # the module's mode is restored
    for m in methods:
        assert 0 <= scalars[f"val_sage/{m}/fg_mass"] <= 1
        assert f"val_sage/{m}/arcc" in scalars
        assert (tmp_path / f"mosaic_{m}.png").is_file()
    assert set(tables["tokens"].method) == set(methods)


def test_pooled_sets_are_selectable(probe_env):
    trainer, net, _ = probe_env
    cb = _callback(trainer, per_class=1, metrics={"cose": {}, "rfs": {}})
    with isolated(torch.device("cpu")):
        scalars, _ = cb.evaluate(net, torch.device("cpu"))
    assert "val_sage/gradcam/cose/consistency" in scalars
    assert "val_sage/rfs/clean_accuracy" in scalars


def _live_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if torch.is_tensor(o))


def test_memory_and_hooks_do_not_grow_over_epochs(probe_env):
    trainer, net, _ = probe_env
    cb = _callback(trainer, methods=["gradcam", "layercam"], per_class=2)
    counts = []
    for _ in range(5):
        with torch.inference_mode(), isolated(torch.device("cpu")):
            cb.evaluate(net, torch.device("cpu"))
        counts.append(_live_tensors())
        hooks = [
            len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks)
            for m in net.modules()
        ]
        assert sum(hooks) == 0
    assert counts[-1] <= counts[1], counts  # after the first (warm-up) epoch: no growth


def test_rng_streams_are_restored(probe_env):
    trainer, net, _ = probe_env
    cb = _callback(trainer, methods=["smoothgrad"], per_class=1, metrics={"rfs": {}})
    torch.manual_seed(123)
    np.random.seed(5)  # noqa: NPY002  (the legacy stream seed_everything seeds)
    with isolated(torch.device("cpu")):
        cb.evaluate(net, torch.device("cpu"))
    after = torch.rand(3), np.random.rand()  # noqa: NPY002
    torch.manual_seed(123)
    np.random.seed(5)  # noqa: NPY002
    assert torch.equal(after[0], torch.rand(3)) and after[1] == np.random.rand()  # noqa: NPY002


def test_bad_configuration_is_a_clear_error():
    with pytest.raises(SageError, match="unknown metric sets"):
        SageCallback(metrics={"nope": {}})
    with pytest.raises(SageError, match="at least one"):
        SageCallback(methods=[])


def test_perturbation_sets_run_on_their_schedule_only(probe_env):
    trainer, net, _ = probe_env
    cb = _callback(trainer, per_class=1)  # default sets: alignment + arcc
    with isolated(torch.device("cpu")):
        fast, _ = cb.evaluate(net, torch.device("cpu"), slow=False)
        slow, _ = cb.evaluate(net, torch.device("cpu"))
    assert "val_sage/gradcam/pointing_game/fg" in fast and "val_sage/gradcam/arcc" not in fast
    assert "val_sage/gradcam/arcc" in slow and "val_sage/gradcam/road" in slow
    common = set(fast) & set(slow)
    assert all(fast[k] == slow[k] for k in common)  # the schedule changes nothing else
    with pytest.raises(SageError, match="slow_every_n_epochs"):
        SageCallback(slow_every_n_epochs=0)


def test_callback_numbers_equal_explain_on_the_same_probe_and_weights(tmp_path, caplog):
    """The callback's last-epoch numbers are explain.py's on the same images (the probe is
    the whole validation split here) with the final weights, whatever the batching."""
    cfg = compose_config(
        "train",
        tmp_path,
        [
            *FAST,
            "callbacks.sage.per_class=100",
            "+callbacks.sage.batch_size=7",
            "+callbacks.sage.end_cose=false",
            "tracking.breakdowns=true",  # the per-part numbers as scalars too
        ],
    )
    with caplog.at_level("INFO"):
        train_run(cfg)
    assert any("SAGE callback: 2 probe epochs" in r.getMessage() for r in caplog.records)
    client = _client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("sage").experiment_id])
    explain = compose_task(
        "explain",
        [
            f"paths.root_dir={tmp_path}",
            f"checkpoint={run.info.run_id}",
            "checkpoint_select=last",
            "split=val",
            "cam=[gradcam]",
            "metrics=[alignment,arcc]",
            "overlays=0",
            "progress=false",
        ],
        output_dir=f"{tmp_path}/explain",
    )
    ours = run.data.metrics
    theirs = explain_run(explain)
    pairs = {
        "fg_mass": "fg_mass",
        "fg_mass/correct": "fg_mass/correct",
        "pointing_game/fg": "pointing_game/fg",
        "iou/fg": "iou/fg",
        "saliency_precision/spurious": "saliency_precision/spurious",
        "road": "road",
        "coherency": "coherency",
        "arcc": "arcc",
    }
    for cb_key, ex_key in pairs.items():
        assert ours[f"val_sage/gradcam/{cb_key}"] == pytest.approx(
            theirs[f"explain/gradcam/{ex_key}"], rel=1e-4, abs=1e-6
        ), cb_key
