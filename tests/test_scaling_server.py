"""A shared MLflow tracking server: training against ``http://127.0.0.1:<port>``, and the
documented ``scripts/tracking_server.sh`` (SQLite; PostgreSQL where it is installed).

Servers bind loopback on a free port and are stopped by the process group of the pid we
started (mlflow runs its uvicorn workers as children).
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from omegaconf import OmegaConf

from conftest import TINY_SYNTH, compose_config
from sage.data.ensure import ensure_prepared

ROOT = Path(__file__).resolve().parents[1]
FAST = [*TINY_SYNTH, "debug=fast", "model.input_size=32", "data.batch_size=8"]
# MLflow's job runner (GenAI jobs) is a dozen processes SAGE does not use
SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen | None = None, timeout: float = 150) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url}/health did not answer within {timeout} s")


def _stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process group led by ``proc`` (ours); SIGKILL whatever is left of it."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # mlflow forwards it to uvicorn, which drains
    except ProcessLookupError:
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # workers that outlived the leader, if any
    proc.wait(timeout=timeout)


@pytest.fixture
def server(tmp_path) -> Iterator[tuple[str, Path]]:
    """``mlflow server`` with a SQLite backend and proxied artifacts; its URL and artifact root."""
    port = _free_port()
    artifacts = tmp_path / "server-artifacts"
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{tmp_path}/server.db",
            "--serve-artifacts",
            "--artifacts-destination",
            str(artifacts),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env={**os.environ, **SERVER_ENV},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: one signal reaches the workers too
    )
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_healthy(url, proc)
        yield url, artifacts
    finally:
        _stop_group(proc)
        log.close()


@pytest.mark.slow
def test_training_logs_run_and_artifacts_to_a_tracking_server(server, tmp_path):
    url, artifacts = server
    # the data in-process first, so the subprocess only trains
    cfg = compose_config("train", tmp_path, TINY_SYNTH)
    ensure_prepared(OmegaConf.to_container(cfg.dataset, resolve=True))
    result = subprocess.run(
        [sys.executable, "train.py", *FAST, f"logger.tracking_uri={url}"],
        cwd=ROOT,
        env={**os.environ, "SAGE_ROOT": str(tmp_path), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "outputs/mlflow.db").exists()  # nothing went to the default store

    client = mlflow.MlflowClient(tracking_uri=url)
    exp = client.get_experiment_by_name("sage")
    # the server decides where artifacts go, not the client's local artifact_location
    assert exp.artifact_location.startswith("mlflow-artifacts:")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FINISHED"
    assert {"val/acc", "test/acc", "val_sage/gradcam/fg_mass"} <= set(run.data.metrics)
    assert run.data.params["model/name"] == "small_cnn"
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config", "last", "figures", "val_sage"} <= names
    best = [n for n in names if n.startswith("best-epoch")]
    assert best and client.list_artifacts(run.info.run_id, best[0])

    # artifacts come back through the server and live in its artifact root
    local = Path(client.download_artifacts(run.info.run_id, "config/config.yaml", str(tmp_path)))
    assert OmegaConf.load(local).model.name == "small_cnn"
    stored = list(artifacts.rglob("config.yaml"))
    assert len(stored) == 1 and run.info.run_id in str(stored[0])
    assert list(artifacts.rglob("*.ckpt"))


def _postgres_available() -> bool:
    has_driver = any(importlib.util.find_spec(m) for m in ("psycopg", "psycopg2"))
    return has_driver and all(shutil.which(t) for t in ("initdb", "pg_ctl", "psql", "createdb"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [
        "sqlite",
        pytest.param(
            "postgres",
            marks=pytest.mark.skipif(
                not _postgres_available(), reason="PostgreSQL or extra [postgres] not installed"
            ),
        ),
    ],
)
def test_tracking_server_script_starts_serves_and_stops(backend, tmp_path):
    if backend == "postgres" and os.geteuid() == 0:
        # the script runs PostgreSQL as the postgres account, which cannot enter pytest's
        # private (0700) temporary directories
        tmp_path = Path(tempfile.mkdtemp(prefix="sage-pg-"))
        tmp_path.chmod(0o755)
    try:
        _check_script(backend, tmp_path)
    finally:
        if backend == "postgres" and os.geteuid() == 0:
            shutil.rmtree(tmp_path, ignore_errors=True)


def _check_script(backend: str, tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        **SERVER_ENV,
        "SAGE_ROOT": str(tmp_path),
        "SAGE_PYTHON": sys.executable,
        "SAGE_MLFLOW_WORKERS": "1",
        "SAGE_PG_PORT": str(_free_port()),
    }
    env.pop("SAGE_POSTGRES_URI", None)  # the script's own local cluster
    script = [str(ROOT / "scripts/tracking_server.sh")]
    start = subprocess.run(
        ["bash", *script, backend, "--port", str(port), "--background"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    pidfile = tmp_path / "outputs/mlflow-server.pid"
    try:
        assert start.returncode == 0, start.stdout + start.stderr
        url = f"http://127.0.0.1:{port}"
        assert f"logger.tracking_uri={url}" in start.stdout
        pid = int(pidfile.read_text())
        client = mlflow.MlflowClient(tracking_uri=url)
        exp = client.create_experiment("probe")
        run = client.create_run(exp)
        client.log_metric(run.info.run_id, "x", 1.0)
        note = tmp_path / "note.txt"
        note.write_text("hello")
        client.log_artifact(run.info.run_id, str(note))
        client.set_terminated(run.info.run_id)
        assert client.get_run(run.info.run_id).data.metrics == {"x": 1.0}
        assert list((tmp_path / "outputs/mlartifacts-server").rglob("note.txt"))
        if backend == "postgres":
            assert (tmp_path / "outputs/postgres/data/PG_VERSION").exists()
        else:
            assert (tmp_path / "outputs/mlflow-server.db").exists()
    finally:
        stop = subprocess.run(
            ["bash", *script, "--stop"], env=env, capture_output=True, text=True, timeout=120
        )
    assert stop.returncode == 0, stop.stderr
    assert "stopped MLflow server" in stop.stdout
    assert not pidfile.exists()
    deadline = time.monotonic() + 30
    while _group_alive(pid):
        if time.monotonic() > deadline:
            pytest.fail(f"server process group {pid} still alive after --stop")
        time.sleep(0.5)


def _group_alive(pgid: int) -> bool:
    """Any live (non-zombie) process in group ``pgid``; zombies wait for a reaper, not for us."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # the process ended while we looked
        if int(fields[2]) == pgid and fields[0] != "Z":  # state, ppid, pgrp
            return True
    return False
