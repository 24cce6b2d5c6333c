"""explain.py end to end on tiny SynthDrivers: artifacts, MLflow run, reproducible tokens."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import TINY_SYNTH
from sage.errors import SageError
from sage.explain import load_maps
from sage.explain import run as explain_run
from sage.train import run as train_run

FAST_TRAIN = [*TINY_SYNTH, "debug=fast", "model.input_size=32", "data.batch_size=8"]


@pytest.fixture
def checkpoint(compose_cfg, tmp_path) -> Path:
    train_run(compose_cfg("train", FAST_TRAIN))
    return next((tmp_path / "run" / "checkpoints").glob("last*.ckpt"))


def _explain(compose_cfg, checkpoint, *extra):
    cfg = compose_cfg(
        "explain",
        [
            f"checkpoint={checkpoint}",
            "cam=[gradcam,saliency,half]",
            "progress=false",
            "overlays=2",
            "batch_size=4",
            *extra,
        ],
    )
    return explain_run(cfg), Path(cfg.paths.output_dir)


def test_explain_writes_artifacts_and_an_mlflow_run(compose_cfg, checkpoint, tmp_path):
    result, out = _explain(compose_cfg, checkpoint)
    summary = pd.read_csv(out / "summary.csv")
    tokens = pd.read_parquet(out / "tokens.parquet")
    n_images = summary.image_id.nunique()
    assert set(summary.method) == {"gradcam", "saliency", "half"}
    assert len(summary) == 3 * n_images
    assert np.allclose(summary.fg_mass + summary.bg_mass, 1, atol=1e-5)
    assert {
        "image_id",
        "split",
        "class",
        "variant",
        "method",
        "grid",
        "region",
        "model_run",
    } <= set(tokens.columns)
    # 3 methods x (16 + 64 cells) x 3 regions per image
    assert len(tokens) == n_images * 3 * (16 + 64) * 3
    whole = tokens[tokens.region == "whole"].groupby(["image_id", "method", "grid"]).mass.sum()
    assert np.allclose(whole, 1, atol=1e-4)
    # the array store: one shard per batch (batch_size=4) per method, and its index
    shards = sorted(p.name for p in (out / "arrays/gradcam").iterdir())
    assert shards == [f"shard-{k:05d}.npz" for k in range(-(-n_images // 4))]
    index = pd.read_csv(out / "arrays/index.csv")
    assert len(index) == 3 * n_images and set(index.method) == {"gradcam", "saliency", "half"}
    ids = list(summary.image_id[:n_images])[::-1][:6]  # across shards, in an arbitrary order
    arrays = load_maps(out, ids, method="gradcam")
    assert {"whole", "fg", "bg", "mask", "tokens_4x4", "tokens_8x8"} <= set(arrays)
    assert arrays["tokens_8x8"].shape == (len(ids), 3, 8, 8, 6)
    assert np.allclose(arrays["fg"] + arrays["bg"], arrays["whole"])
    assert np.allclose(arrays["whole"].sum(axis=(1, 2)), 1, atol=1e-4)
    rows = tokens[(tokens.method == "gradcam") & (tokens.grid == "4x4")].set_index("image_id")
    for i, image_id in enumerate(ids):  # the stored tokens are the table's, image by image
        mass = rows.loc[image_id].mass.to_numpy().reshape(3, 4, 4)
        assert np.allclose(arrays["tokens_4x4"][i, ..., 0], mass)
    with pytest.raises(SageError, match="no gradcam maps for image ids nope"):
        load_maps(out, [ids[0], "nope"], method="gradcam")
    with pytest.raises(SageError, match="no method 'eigencam'"):
        load_maps(out, ids, method="eigencam")
    with pytest.raises(SageError, match="several methods"):
        load_maps(out, ids)
    with pytest.raises(SageError, match="neither an explain output directory"):
        load_maps(tmp_path / "missing", ids, method="gradcam")
    assert len(list((out / "overlays/gradcam").glob("*.png"))) == 2
    assert (out / "mosaics/gradcam_correct_error.png").stat().st_size > 0
    assert (out / "token_grids/gradcam.png").stat().st_size > 0
    # default metric set: alignment for the foreground and every SynthDrivers part
    metrics = pd.read_csv(out / "metrics.csv")
    assert len(metrics) == 3 * n_images
    assert {
        "iou/fg",
        "pointing_game/fg",
        "average_precision/spurious",
        "delta_density/head",
    } <= set(metrics.columns)
    assert metrics["pointing_game/fg"].isin([0, 1]).all()
    assert (out / "mosaics/gradcam_spurious_candidates.png").stat().st_size > 0
    ranked = pd.read_csv(out / "spurious_candidates_gradcam.csv")
    assert ranked["delta_density/fg"].is_monotonic_increasing
    # EA_PG is the mean pointing game: one name, pointing_game/<region> (no ea_pg duplicate)
    assert result["explain/gradcam/pointing_game/fg"] == pytest.approx(
        metrics[metrics.method == "gradcam"]["pointing_game/fg"].mean()
    )
    assert not any("/ea_pg" in k or "/ea_iou" in k for k in result)

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/outputs/mlflow.db")
    run = client.get_run(result["run_id"])
    # named after the explained model, as its training run: model-variant/dataset-nc/stage-time
    assert run.info.run_name.startswith("small_cnn-full/synth-sf3d-nc10/explain-")
    # the run starts when the task does: its duration covers the work, not only the upload
    first_shard = min(p.stat().st_mtime for p in (out / "arrays").rglob("shard-*.npz"))
    assert run.info.start_time / 1000 < first_shard
    tags = run.data.tags
    assert (tags["model"], tags["dataset"], tags["variant"]) == ("small_cnn", "synth-sf3d", "full")
    assert tags["explained_dataset"] == "synth-sf3d" and tags["sage_version"]
    assert {"backbone", "dataset/name", "dataset/variant", "seed"} <= set(run.data.params)
    assert {"explain/gradcam/fg_mass", "explain/gradcam/fg_mass/correct", "explain/acc"} <= set(
        run.data.metrics
    )
    # per-part numbers are a table, not scalars (tracking.breakdowns=true logs them too)
    assert "explain/gradcam/iou/head" not in run.data.metrics
    breakdowns = pd.read_csv(out / "breakdowns.csv")
    assert "explain/gradcam/iou/head" in set(breakdowns.key)
    assert result["explain/gradcam/iou/head"] == pytest.approx(
        breakdowns.set_index("key").value["explain/gradcam/iou/head"]
    )
    assert len(run.data.metrics) < 100
    assert run.data.tags["stage"] == "explain" and run.data.tags["git_commit"]
    assert "method/gradcam" in run.data.params
    # the same maps, read from the MLflow run's artifacts
    logged = load_maps(
        result["run_id"], ids[:2], method="saliency", tracking_uri=client.tracking_uri
    )
    local = load_maps(out, ids[:2], method="saliency")
    assert set(logged) == set(local)
    assert all(np.array_equal(logged[k], local[k]) for k in local)


def test_explain_is_reproducible_and_takes_an_mlflow_run_id(compose_cfg, checkpoint, tmp_path):
    _, first = _explain(compose_cfg, checkpoint, f"paths.output_dir={tmp_path / 'e1'}")
    _, again = _explain(compose_cfg, checkpoint, f"paths.output_dir={tmp_path / 'e2'}")
    pd.testing.assert_frame_equal(
        pd.read_parquet(first / "tokens.parquet"), pd.read_parquet(again / "tokens.parquet")
    )
    assert (first / "summary.csv").read_bytes() == (again / "summary.csv").read_bytes()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/outputs/mlflow.db")
    (trained,) = client.search_runs(
        [client.get_experiment_by_name("sage").experiment_id], "tags.stage = 'train'"
    )
    _, by_id = _explain(
        compose_cfg,
        trained.info.run_id,
        "checkpoint_select=last",
        f"paths.output_dir={tmp_path / 'e3'}",
    )
    a = pd.read_parquet(first / "tokens.parquet")
    b = pd.read_parquet(by_id / "tokens.parquet")
    assert set(b.model_run) == {trained.info.run_id}  # tokens are joinable to the training run
    pd.testing.assert_frame_equal(a.drop(columns="model_run"), b.drop(columns="model_run"))
    _, latest = _explain(
        compose_cfg, "latest", "checkpoint_select=last", f"paths.output_dir={tmp_path / 'e4'}"
    )
    assert set(pd.read_csv(latest / "summary.csv").model_run) == {trained.info.run_id}


def test_explain_errors_are_clear(compose_cfg, checkpoint, tmp_path):
    with pytest.raises(SageError, match="does not exist"):
        _explain(compose_cfg, tmp_path / "missing.ckpt")
    with pytest.raises(SageError, match="targets"):
        _explain(compose_cfg, checkpoint, "targets=oracle")


def test_method_agreement_and_compare_cli(compose_cfg, checkpoint, tmp_path):
    result, out = _explain(compose_cfg, checkpoint)
    agreement = pd.read_csv(out / "method_agreement.csv")
    assert set(zip(agreement.method_a, agreement.method_b, strict=True)) == {
        ("gradcam", "saliency"),
        ("gradcam", "half"),
        ("saliency", "half"),
    }
    assert agreement.spearman.between(-1, 1).all() and (agreement.patch_kl >= 0).all()
    assert "explain/agreement/gradcam_vs_saliency/8x8/spearman" in result

    from sage.saliency.compare import main as compare_main

    compare_main(
        [
            str(out / "tokens.parquet"),
            str(out / "tokens.parquet"),
            "--out",
            str(tmp_path / "cmp.csv"),
            "--method",
            "gradcam",
        ]
    )
    same = pd.read_csv(tmp_path / "cmp.csv")
    assert np.allclose(same.patch_kl, 0, atol=1e-6)  # a table compared with itself
    assert np.allclose(same.spearman.dropna(), 1)


def test_explain_pooled_metric_sets(compose_cfg, checkpoint):
    result, out = _explain(
        compose_cfg,
        checkpoint,
        "cam=[gradcam]",
        "metrics=[alignment,cose,rfs]",
        "metrics.cose.transforms=[flip_lr,brightness]",
        "limit=8",
    )
    pooled = json.loads((out / "pooled_metrics.json").read_text())
    assert {"explain/gradcam/cose", "explain/rfs"} == set(pooled)
    assert -1 <= result["explain/rfs/rfs"] <= 1
    assert 0 <= result["explain/rfs/a_fg"] <= 1
    assert (
        "explain/gradcam/cose/n_consistent" in result
        or "explain/gradcam/cose/n_sensitive" in result
    )


def test_explain_faithfulness_road_arcc_cosine(compose_cfg, checkpoint):
    result, out = _explain(
        compose_cfg,
        checkpoint,
        "cam=[gradcam,half]",
        "metrics=[faithfulness,arcc,cosine]",
        "limit=8",
    )
    metrics = pd.read_csv(out / "metrics.csv")
    expected = {
        "average_drop",
        "increase_in_confidence",
        "coherency",
        "complexity",
        "adcc",
        "arcc",
        "road",
        "cosine_gt",
    }
    assert expected <= set(metrics.columns)
    assert metrics.average_drop.between(0, 1).all() and metrics.complexity.between(0, 1).all()
    assert metrics.cosine_gt.notna().all()  # SynthDrivers has a ground-truth attribution
    half = metrics[metrics.method == "half"]
    assert np.allclose(half.complexity, 0.5, atol=0.02)  # left half ones
    assert "explain/gradcam/arcc" in result and "explain/half/adcc" in result


def test_nan_weights_are_an_error_not_scores(compose_cfg, checkpoint, tmp_path):
    """NaN logits used to give accuracy 0.1 and correct=True rows; now one clear error, as in
    evaluate.py."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    key = next(k for k in ckpt["state_dict"] if k.endswith("classifier.weight"))
    ckpt["state_dict"][key] = torch.full_like(ckpt["state_dict"][key], float("nan"))
    broken = tmp_path / "nan.ckpt"
    torch.save(ckpt, broken)
    with pytest.raises(SageError, match="non-finite logits for images"):
        _explain(compose_cfg, broken, "cam=[half]")
