"""The one-command study: config, findings computed from logged numbers, the HTML report."""

from __future__ import annotations

from types import SimpleNamespace

import mlflow
import pandas as pd
import pytest

from sage.compose import compose_task
from sage.errors import SageError
from sage.study.findings import collect_findings
from sage.study.report import write_report
from sage.study.runner import Study


def test_study_config_composes_for_every_size(tmp_path):
    for size in ("full", "tiny"):
        cfg = compose_task("study", [f"paths.root_dir={tmp_path}", f"demo.size={size}"], "x")
        study = Study(cfg)
        assert study.s.epochs >= 1 and study.dir.is_dir()
        assert study.data_dir.endswith("data" if size == "full" else "data-tiny")
    cfg = compose_task("study", [f"paths.root_dir={tmp_path}", "demo.size=huge"], "x")
    with pytest.raises(SageError, match=r"demo\.size"):
        Study(cfg)


@pytest.fixture
def fake_study(tmp_path):
    """Four finished 'training runs' with known metrics, as the sweep would log them."""
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("s", artifact_location=str(tmp_path / "art"))
    runs = {}
    values = {"full": (0.9, 0.06), "seg": (0.8, 0.01)}  # (test acc, sticker mass)
    for name in ("synth-sf3d", "synth-driver100"):
        for variant, (acc, _) in values.items():
            run = client.create_run(exp, tags={"dataset": name, "variant": variant})
            client.log_metric(run.info.run_id, "test/acc", acc)
            for step, mass in enumerate((0.2, 0.3)):
                client.log_metric(run.info.run_id, "val_sage/gradcam/fg_mass", mass, step=step)
            runs[(name, variant)] = run.info.run_id
    explains = {
        (name, variant): {
            "explain/gradcam/fg_mass": 0.3 if variant == "full" else 0.5,
            "explain/gradcam/saliency_precision/spurious": mass,
            "explain/rfs/rfs": -0.1 if variant == "full" else 0.4,
            "output_dir": str(tmp_path / "none"),
        }
        for (name, variant) in runs
        for mass in [values[variant][1]]
    }
    grid_dir = tmp_path / "grid_sf3d" / "grid"
    grid_dir.mkdir(parents=True)
    pd.DataFrame(
        {
            "synth-driver100/full": [0.3, 0.6],
            "synth-driver100/seg": [0.4, 0.7],
            "synth-sf3d/full": [0.9, 0.8],
            "synth-sf3d-shuffled/full": [0.5, 0.8],
        },
        index=pd.Index(["synth-sf3d/full", "synth-sf3d/seg"], name="trained_on"),
    ).to_csv(grid_dir / "acc.csv")
    cfg = SimpleNamespace(
        study=SimpleNamespace(compare=["full", "seg"], model="small_cnn", methods=["gradcam"])
    )
    study = SimpleNamespace(
        client=lambda: client,
        cfg=cfg,
        size="tiny",
        s=SimpleNamespace(images_per_class=5, epochs=1),
        tracking_uri=uri,
        experiment="s",
        timings={"training": 1.0},
    )
    grids = {
        "synth_sf3d": {
            "output_dir": str(tmp_path / "grid_sf3d"),
            "target_name": "synth-driver100",
            "twin_name": "synth-sf3d-shuffled",
        }
    }
    divergence = {"verdict": "supported at α=0.05: ρ=0.5"}
    return study, runs, grids, explains, divergence


def test_findings_follow_the_numbers(fake_study):
    study, runs, grids, explains, divergence = fake_study
    f = collect_findings(study, runs, grids, explains, divergence)
    models = f["models"].set_index("trained_on")
    assert models.loc["synth-sf3d/full", "cross_acc_full"] == 0.3
    assert models.loc["synth-sf3d/seg", "cross_acc_same_variant"] == 0.7
    assert models.loc["synth-sf3d/full", "shuffled_acc"] == 0.5
    assert models.loc["synth-sf3d/full", "val_sage/fg_mass"] == 0.3  # the last epoch's value
    text = "\n".join(f["lines"])
    assert "0.060 of its GradCAM mass on the spurious sticker, more than the seg" in text
    assert (
        "accuracy on full test images falls from 0.90 to 0.50; "
        "the seg-trained model's stays at 0.80." in text
    )
    assert (
        "reaches accuracy 0.30 (full images), lower than the seg-trained model on seg images "
        "(0.70; 0.60 on full images)" in text
    )
    assert (
        "RFS (robustness to background vs foreground noise) full -0.10 vs seg 0.40 (lower than)"
        in text
    )
    assert "supported at α=0.05" in text
    # the sticker is a cue only in the domain with a cue-shuffled twin
    assert not [
        line for line in f["lines"] if line.startswith("synth-driver100") and "sticker" in line
    ]
    assert "synth-driver100: background mass 1−A_fg full 0.70 vs seg 0.50 (more than)." in text
    assert f["scalars"]["study/synth-sf3d/full/saliency_precision/spurious"] == 0.06

    # the same study with the numbers swapped says the opposite
    for key in explains:
        e = explains[key]
        e["explain/gradcam/saliency_precision/spurious"] = 0.01 if key[1] == "full" else 0.06
    flipped = "\n".join(collect_findings(study, runs, grids, explains, divergence)["lines"])
    assert "0.010 of its GradCAM mass on the spurious sticker, less than the seg" in flipped


def test_report_is_a_self_contained_page(fake_study, tmp_path):
    study, runs, grids, explains, divergence = fake_study
    f = collect_findings(study, runs, grids, explains, divergence)
    page = write_report(f, tmp_path / "report", study)
    text = page.read_text()
    assert "<h2>Findings" in text and "supported at α=0.05" in text
    assert "synth-sf3d/full" in text
    assert (tmp_path / "report" / "figures").is_dir()
    for src in text.split('src="')[1:]:  # every figure the page shows sits beside it
        assert (page.parent / src.split('"')[0]).is_file()


def test_parent_run_opens_before_the_work_and_fails_with_it(tmp_path, monkeypatch):
    """The parent run starts before the study's first step (its duration is the study's), its
    name starts with what tells studies apart, and a failing step closes it FAILED with the
    runs made so far nested under it."""
    from sage.study import runner

    cfg = compose_task("study", [f"paths.root_dir={tmp_path}", "demo.size=tiny"], "x")
    seen: dict[str, str] = {}

    def failing_steps(cfg, study, parent_id):
        client = study.client()
        parent = client.get_run(parent_id)
        assert parent.info.status == "RUNNING"  # open while the steps run
        exp = client.get_experiment_by_name(study.experiment)
        assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
        seen["child"] = client.create_run(exp.experiment_id, tags={"stage": "train"}).info.run_id
        raise SageError("training sweep failed")

    monkeypatch.setattr(runner, "_run_steps", failing_steps)
    with pytest.raises(SageError, match="training sweep failed"):
        runner.run(cfg)

    client = mlflow.MlflowClient(str(cfg.logger.tracking_uri))
    exp = client.get_experiment_by_name("sage-study-tiny")
    (parent,) = client.search_runs([exp.experiment_id], "tags.stage = 'study'")
    child = client.get_run(seen["child"])
    assert parent.info.start_time <= child.info.start_time
    assert parent.info.run_name.startswith("study-tiny-small_cnn/")
    assert parent.info.status == "FAILED"
    assert parent.data.tags["sage.error"] == "SageError: training sweep failed"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
