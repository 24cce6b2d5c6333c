"""Run integrity: dead runs closed, unwritable outputs as one line, resume continues the run,
callback config errors before any run."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import pytorch_lightning as pl

from conftest import TINY_SYNTH, compose_config, compose_task
from sage.cli import OutputDirCheck, storage_error
from sage.errors import SageError
from sage.tracking import liveness
from sage.tracking.run_record import read_run_link
from sage.tracking.store import prepare_experiment
from sage.train import run as train_run

ROOT = Path(__file__).resolve().parents[1]
FAST = [*TINY_SYNTH, "debug=fast", "model.input_size=32", "data.batch_size=8"]


def _uri(root: Path) -> str:
    return f"sqlite:///{root}/outputs/mlflow.db"


def _runs(root: Path) -> list:
    if not (root / "outputs" / "mlflow.db").exists():
        return []
    client = mlflow.MlflowClient(tracking_uri=_uri(root))
    exp = client.get_experiment_by_name("sage")
    return [] if exp is None else client.search_runs([exp.experiment_id])


# ---------------------------------------------------------------- 1. dead runs


def test_run_of_a_killed_process_is_marked_failed_by_the_next_command(tmp_path):
    uri = _uri(tmp_path)
    exp_id = prepare_experiment(uri, "sage")
    # a process that opens a run the ordinary way (mlflow.start_run), then is kill -9'd
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, mlflow, sage.tracking\n"
            f"mlflow.set_tracking_uri({uri!r})\n"
            f"run = mlflow.start_run(experiment_id={exp_id!r})\n"
            "print(run.info.run_id, flush=True)\n"
            "time.sleep(600)\n",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        killed = owner.stdout.readline().strip()
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=60)
    client = mlflow.MlflowClient(tracking_uri=uri)
    tags = client.get_run(killed).data.tags
    assert tags[liveness.HOST_TAG] and tags[liveness.PID_TAG] == str(owner.pid)
    # a live owner (this process) and another host's run with a dead pid: both left alone
    live = client.create_run(exp_id, tags=liveness.process_tags()).info.run_id
    remote = client.create_run(
        exp_id, tags={liveness.HOST_TAG: "elsewhere", liveness.PID_TAG: str(owner.pid)}
    ).info.run_id

    # the killed process's run once ended, now resumed (mlflow.start_run(run_id=...)) by a
    # process that did not claim it: its tags name the dead process, not the user
    resumed = client.create_run(exp_id, tags=client.get_run(killed).data.tags).info.run_id
    client.set_terminated(resumed)
    client.update_run(resumed, "RUNNING")

    liveness._swept.discard(uri)  # the next command in a fresh process
    prepare_experiment(uri, "sage")  # what every command calls when it opens the store

    dead = client.get_run(killed)
    assert dead.info.status == "FAILED" and dead.info.end_time
    assert f"process {owner.pid}" in dead.data.tags[liveness.DEAD_TAG]
    assert client.get_run(live).info.status == "RUNNING"
    assert client.get_run(remote).info.status == "RUNNING"
    assert client.get_run(resumed).info.status == "RUNNING"
    # once claimed by its (dead) resumer, the sweep judges it again
    liveness.claim_run(client, resumed)
    client.set_tag(resumed, liveness.PID_TAG, str(owner.pid))
    client.set_tag(resumed, liveness.START_TAG, tags[liveness.START_TAG])
    assert liveness.sweep_dead_runs(uri) == [resumed]


def test_a_reused_pid_is_not_taken_for_the_owner():
    tags = liveness.process_tags()
    assert liveness.dead_reason(tags) is None and liveness.owner_alive(tags) is True
    # this process's pid, but a start time an hour earlier: the owner was another process
    reused = tags | {liveness.START_TAG: f"{float(tags[liveness.START_TAG]) - 3600:.2f}"}
    assert "belongs to another process" in liveness.dead_reason(reused)
    other_ns = tags | {liveness.PIDNS_TAG: "pid:[1]"}
    assert liveness.owner_alive(other_ns) is None  # another container: cannot tell


# ---------------------------------------------------------------- 2. unwritable outputs


def _entry(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_entry", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_disk_during_training_is_one_line_and_fails_the_run(tmp_path, monkeypatch, capsys):
    def full(self, filepath, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(filepath))

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", full)
    cfg = compose_config("train", tmp_path, [*FAST, "test_after_fit=false"])
    with pytest.raises(SystemExit) as exit_info:
        _entry("train").main.__wrapped__(cfg)  # below @hydra.main: the one-line wrapper
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"error: cannot write to {tmp_path}/run/checkpoints/")
    assert err[-1].endswith("(No space left on device)")
    (run,) = _runs(tmp_path)
    assert run.info.status == "FAILED"
    assert "No space left on device" in run.data.tags["sage.error"]


def test_read_only_outputs_is_one_line_error(tmp_path):
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    args = ["train.py", *FAST, f"hydra.run.dir={tmp_path}/hydra-run"]
    if os.geteuid() != 0:
        outputs.chmod(0o555)
        cmd = [sys.executable, *args]
    else:  # root writes anywhere: a read-only file system under outputs/, simulated
        shim = (
            "import errno, os, runpy, sys\n"
            f"ro = {str(outputs)!r}\n"
            "real = os.mkdir\n"
            "def mkdir(path, *a, **k):\n"
            "    if os.path.abspath(os.fspath(path)).startswith(ro + os.sep):\n"
            "        raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))\n"
            "    return real(path, *a, **k)\n"
            "os.mkdir = mkdir\n"
            "sys.argv = sys.argv[1:]\n"
            "runpy.run_path(sys.argv[0], run_name='__main__')\n"
        )
        cmd = [sys.executable, "-c", shim, *args]
    try:
        result = subprocess.run(
            cmd,
            cwd=ROOT,
            env={**os.environ, "SAGE_ROOT": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        outputs.chmod(0o755)
    assert result.returncode == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: cannot write to {outputs}/"), last
    assert last.endswith(("(Read-only file system)", "(Permission denied)")), last


def test_hydra_run_dir_on_read_only_outputs_is_one_line(tmp_path, monkeypatch, capsys):
    def read_only(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "mkdir", read_only)
    with pytest.raises(SystemExit) as exit_info:
        OutputDirCheck()._make(str(tmp_path / "outputs" / "runs" / "x"))
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.strip() == (
        f"error: cannot write to {tmp_path}/outputs/runs/x (Read-only file system)"
    )


def test_storage_errors_are_found_through_wrappers():
    try:
        try:
            raise sqlite3.OperationalError("database or disk is full")
        except sqlite3.Error as err:
            raise mlflow.exceptions.MlflowException("write failed") from err
    except mlflow.exceptions.MlflowException as wrapped:
        assert storage_error(wrapped) == (
            "cannot write to the MLflow store (database or disk is full)"
        )
    assert storage_error(OSError(errno.ENOENT, "No such file or directory", "x")) is None
    assert storage_error(ValueError("x")) is None


# ---------------------------------------------------------------- 3. resume


def test_resume_continues_the_same_run_in_the_same_directory(tmp_path):
    common = [
        *FAST,
        f"paths.root_dir={tmp_path}",
        "test_after_fit=false",
        "callbacks.sage.end_cose=true",  # the end-of-fit COSE uses the epoch-0 snapshot
    ]
    first = tmp_path / "first"
    train_run(compose_task("train", [*common, "trainer.max_epochs=2"], output_dir=first))
    (run,) = _runs(tmp_path)
    ckpt = first / "checkpoints" / "last.ckpt"
    assert read_run_link(ckpt) == {"mlflow_run_id": run.info.run_id, "output_dir": str(first)}

    again = compose_task(
        "train", [*common, "trainer.max_epochs=3", f"ckpt_path={ckpt}"], output_dir=tmp_path / "2"
    )
    train_run(again)

    (resumed,) = _runs(tmp_path)  # the same run, no second one
    assert resumed.info.run_id == run.info.run_id and resumed.info.status == "FINISHED"
    client = mlflow.MlflowClient(tracking_uri=_uri(tmp_path))
    history = client.get_metric_history(run.info.run_id, "val/acc")
    steps = [m.step for m in history]
    assert len(steps) == 3 and steps == sorted(set(steps))  # epochs 0, 1, then 2
    assert {m.value for m in client.get_metric_history(run.info.run_id, "epoch")} >= {0, 1, 2}
    assert resumed.data.params["trainer/max_epochs"] == "2"  # params are immutable
    assert resumed.data.tags["sage.resumes"] == "1"
    assert resumed.data.tags["resumed_from"] == str(ckpt)
    assert {a.path for a in client.list_artifacts(run.info.run_id, "config")} == {
        "config/config.yaml",
        "config/resume-1.yaml",
    }
    # the original directory continued: checkpoints and the COSE weight snapshots
    assert not (tmp_path / "2").exists()
    used = json.loads((first / "val_sage" / "cose_models.json").read_text())
    assert list(used["snapshots"]) == ["epoch_000"]
    assert read_run_link(ckpt)["mlflow_run_id"] == run.info.run_id

    # a run whose owner still lives is not taken over
    client.update_run(run.info.run_id, "RUNNING")
    for key, value in liveness.process_tags().items():
        client.set_tag(run.info.run_id, key, value)
    with pytest.raises(SageError, match="still being trained by process"):
        train_run(again)
    assert client.get_run(run.info.run_id).info.status == "RUNNING"


# ---------------------------------------------------------------- 4. callback config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+callbacks.sage.metrics.alignment.bogus=1",
            r"callbacks.sage: metrics.alignment: unknown options \['bogus'\]",
        ),
        # both used to fail in the callback's setup, inside fit: after the run was created
        ("+callbacks.sage.split=nosuch", "split"),
        ("callbacks.sage.per_class=0", "per_class"),
        ("+callbacks.sage.bogus=1", "callbacks.sage: .*unexpected keyword argument 'bogus'"),
    ],
)
def test_callback_config_error_leaves_no_run(compose_cfg, tmp_path, override, message):
    start = time.perf_counter()
    with pytest.raises(SageError, match=message):
        train_run(compose_cfg("train", [*FAST, override]))
    assert _runs(tmp_path) == []
    assert time.perf_counter() - start < 30  # before the data work, not after an epoch
