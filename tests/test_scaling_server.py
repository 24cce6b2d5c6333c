"""A shared MLflow tracking server: training against ``http://127.0.0.1:<port>``, and the
documented ``scripts/tracking_server.sh`` (SQLite; PostgreSQL where it is installed).

Servers bind loopback on a free port and are stopped by the process group of the pid we
started (mlflow runs its uvicorn workers as children). The PostgreSQL cases need the server
(`apt-get install postgresql`; ``.ci/run`` installs it when it runs as root) and a psycopg
driver (the dev extra); without them they skip, saying which is missing.

Run as a script, this file is the driver of the concurrent-training test (see
``_train_concurrently``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections import Counter
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


def _postgres_missing() -> str | None:
    """Why the script cannot start a local PostgreSQL here (None: it can). It finds initdb and
    pg_ctl on PATH or in Debian's /usr/lib/postgresql/<version>/bin, as the script does."""
    if not any(importlib.util.find_spec(m) for m in ("psycopg", "psycopg2")):
        return "no psycopg driver: pip install -e '.[dev]' (scripts/venv.sh does)"
    bins = [os.environ.get("PATH", ""), *map(str, Path("/usr/lib/postgresql").glob("*/bin"))]
    search = os.pathsep.join([*bins, *map(str, Path("/usr").glob("pgsql-*/bin"))])
    if not all(shutil.which(t, path=search) for t in ("initdb", "pg_ctl", "psql", "createdb")):
        return "PostgreSQL not installed: apt-get install postgresql (.ci/run does, as root)"
    return None


POSTGRES = pytest.param(
    "postgres",
    marks=pytest.mark.skipif(_postgres_missing() is not None, reason=str(_postgres_missing())),
)


@contextlib.contextmanager
def _script_root(backend: str, tmp_path: Path) -> Iterator[Path]:
    """``tmp_path``, except for PostgreSQL as root: the script runs PostgreSQL as the postgres
    account, which cannot enter pytest's private (0700) temporary directories."""
    if backend != "postgres" or os.geteuid() != 0:
        yield tmp_path
        return
    root = Path(tempfile.mkdtemp(prefix="sage-pg-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _script_env(root: Path, workers: int = 1) -> dict[str, str]:
    env = {
        **os.environ,
        **SERVER_ENV,
        "SAGE_ROOT": str(root),
        "SAGE_PYTHON": sys.executable,
        "SAGE_MLFLOW_WORKERS": str(workers),
        "SAGE_PG_PORT": str(_free_port()),
    }
    env.pop("SAGE_POSTGRES_URI", None)  # the script's own local cluster
    return env


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", POSTGRES])
def test_tracking_server_script_starts_serves_and_stops(backend, tmp_path):
    with _script_root(backend, tmp_path) as root:
        _check_script(backend, root)


def _check_script(backend: str, tmp_path: Path) -> None:
    port = _free_port()
    env = _script_env(tmp_path)
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


# ---------------------------------------------------------------------- concurrent training

N_CONCURRENT = 8


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite-default", POSTGRES])
def test_concurrent_training_runs_lose_nothing(backend, tmp_path):
    """8 training processes at once against one store: the SQLite default (a file every
    process opens) or a PostgreSQL-backed server. Every run ends FINISHED and holds every
    metric value its process logged, at its step: none lost, none duplicated."""
    with _script_root(backend, tmp_path) as root:
        cfg = compose_config("train", root, TINY_SYNTH)
        ensure_prepared(OmegaConf.to_container(cfg.dataset, resolve=True))
        overrides = [*FAST, f"paths.data_dir={cfg.paths.data_dir}"]
        if backend == "sqlite-default":
            uri = f"sqlite:///{root}/outputs/mlflow.db"  # conf/logger/mlflow.yaml's default
            _check_concurrent_runs(uri, root, overrides)
            return
        port = _free_port()
        env = _script_env(root, workers=2)  # the script's default
        script = ["bash", str(ROOT / "scripts/tracking_server.sh")]
        start = subprocess.run(
            [*script, "postgres", "--port", str(port), "--background"],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        try:
            assert start.returncode == 0, start.stdout + start.stderr
            uri = f"http://127.0.0.1:{port}"
            _check_concurrent_runs(uri, root, [*overrides, f"logger.tracking_uri={uri}"])
        finally:
            subprocess.run([*script, "--stop"], env=env, capture_output=True, timeout=120)
        # no request was cut short and retried (an upload whose file changed under it, say)
        log = (root / "outputs/mlflow-server.log").read_text()
        assert "Invalid HTTP request" not in log and "ClientDisconnect" not in log
        assert not (root / "outputs/mlflow.db").exists()  # all went to the server


def _check_concurrent_runs(uri: str, root: Path, overrides: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, __file__, str(root), str(N_CONCURRENT), *overrides],
        cwd=ROOT,
        env={**os.environ, "SAGE_ROOT": str(root), "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-5000:]
    assert "database is locked" not in result.stderr
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("sage").experiment_id])
    sent = [json.loads((root / f"sent-{i}.json").read_text()) for i in range(N_CONCURRENT)]
    sent = {s["run_id"]: s["metrics"] for s in sent}
    assert sorted(r.info.run_id for r in runs) == sorted(sent)  # one run per process
    for run in runs:
        assert run.info.status == "FINISHED"
        assert {"val/acc", "test/acc", "train/loss", "val_sage/gradcam/fg_mass"} <= set(
            run.data.metrics
        )
        stored = Counter(
            (key, m.step, _rounded(m.value))
            for key in run.data.metrics
            for m in client.get_metric_history(run.info.run_id, key)
        )
        logged = Counter((k, step, _rounded(v)) for k, v, step in sent[run.info.run_id])
        assert stored == logged


def _rounded(value: float) -> float | str:
    """A metric value comparable across the float64 the process sent and what came back."""
    return "nan" if math.isnan(value) else float(f"{value:.6g}")


def _train_concurrently(root: str, n: int, overrides: list[str]) -> int:
    """The concurrent-training driver: import the training code once, then fork ``n``
    processes that each train ``seed=i`` (``_train_one``). Forking shares the imports, so 8
    processes cost 8 trainings, not 8 interpreter start-ups. Returns how many failed."""
    import sage.train  # noqa: F401  (no torch op has run in this process: forking is safe)

    children = {}
    for i in range(n):
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                _train_one(Path(root), i, overrides)
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        children[pid] = i
    failed = 0
    for _ in range(n):
        pid, status = os.wait()
        if os.waitstatus_to_exitcode(status):
            print(f"training process {children[pid]} failed", file=sys.stderr)
            failed += 1
    return failed


def _train_one(root: Path, i: int, overrides: list[str]) -> None:
    """Train ``seed=i``; write ``<root>/sent-<i>.json``: the MLflow run id and every metric
    value (key, value, step) the process handed the logger."""
    import torch
    from pytorch_lightning.loggers import MLFlowLogger

    from sage.train import run

    torch.set_num_threads(1)
    sent, run_ids = [], set()
    log_metrics = MLFlowLogger.log_metrics

    def record(self, metrics, step=None):
        run_ids.add(self.run_id)
        sent.extend((k, float(v), step) for k, v in metrics.items())
        return log_metrics(self, metrics, step)

    MLFlowLogger.log_metrics = record
    # each process its own run directory, as each job of a sweep has
    run(
        compose_config("train", root, [*overrides, f"seed={i}", f"paths.output_dir={root}/run-{i}"])
    )
    (run_id,) = run_ids
    (root / f"sent-{i}.json").write_text(json.dumps({"run_id": run_id, "metrics": sent}))


# ---------------------------------------------------------------------- --stop


@pytest.mark.parametrize(
    ("argv0", "own_group", "is_server"),
    [
        ("sleep", True, False),  # a stale pid reused by an unrelated group leader
        ("python -m mlflow server", False, False),  # not a group leader: not what we started
        ("python -m mlflow server", True, True),
    ],
)
def test_stop_signals_only_the_server_it_started(argv0, own_group, is_server, tmp_path):
    """``--stop`` checks the pid file's process is still an ``mlflow server`` leading its own
    process group before signalling the group; otherwise it only removes the stale file."""
    proc = subprocess.Popen(
        ["bash", "-c", f'exec -a "{argv0}" sleep 300'], start_new_session=own_group
    )
    try:
        deadline = time.monotonic() + 10  # until exec has replaced bash's command line
        cmdline = Path(f"/proc/{proc.pid}/cmdline")
        while not cmdline.read_bytes().decode().startswith(f"{argv0}\0"):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        pidfile = tmp_path / "outputs/mlflow-server.pid"
        pidfile.parent.mkdir()
        pidfile.write_text(f"{proc.pid}\n")
        stop = subprocess.run(
            ["bash", str(ROOT / "scripts/tracking_server.sh"), "--stop"],
            env={**os.environ, "SAGE_ROOT": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stop.returncode == 0, stop.stderr
        assert not pidfile.exists()
        if is_server:
            assert f"stopped MLflow server (process group {proc.pid})" in stop.stdout
            assert proc.wait(timeout=10) == -signal.SIGTERM
        else:
            assert "removed the stale pid file, signalled nothing" in stop.stdout
            assert "stopped MLflow server" not in stop.stdout
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=1)  # still running
    finally:
        proc.kill()
        proc.wait()


if __name__ == "__main__":  # the driver of test_concurrent_training_runs_lose_nothing
    sys.exit(_train_concurrently(sys.argv[1], int(sys.argv[2]), sys.argv[3:]))
