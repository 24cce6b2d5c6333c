"""The one-command study: config, findings computed from logged numbers, the HTML report."""

from __future__ import annotations

import mlflow
import pytest

from sage.compose import compose_task
from sage.errors import SageError
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
