"""Runs whose process died: found by host and pid, marked FAILED.

A run ends RUNNING forever when its process cannot close it: ``kill -9``, the kernel's
out-of-memory killer, a power cut, or a store write that fails while the run is being closed
(a full disk). Every run therefore records which process owns it, as tags set when MLflow
creates it:

- ``sage.host``: the host name;
- ``sage.pid``: the owning process id;
- ``sage.pid_start_time``: that process's start time (epoch seconds), so a pid reused by a
  later, unrelated process is not taken for the owner;
- ``sage.pid_ns``: the Linux pid namespace, so containers sharing a host name (host
  networking) do not judge each other's pids.

The tags come from an MLflow run-context provider registered on import of
:mod:`sage.tracking`: MLflow asks it for tags whenever ``mlflow.start_run`` or Lightning's
``MLFlowLogger`` creates a run. A run taken over by another process (training resumed from a
checkpoint) is re-tagged with :func:`claim_run`; a resumed run that was not is left alone by
the sweep, since its tags name the earlier, dead process.

At start every SAGE command that opens a store (:func:`sage.tracking.store.prepare_experiment`)
calls :func:`sweep_once`: the store's RUNNING runs of this host whose process is gone become
FAILED, tagged ``sage.dead_run`` with the reason. Runs of other hosts are left alone: from
here nothing tells a live remote process from a dead one.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from functools import cache
from pathlib import Path

import mlflow
from mlflow.entities import Run, RunStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking.context.abstract_context import RunContextProvider

HOST_TAG = "sage.host"
PID_TAG = "sage.pid"
START_TAG = "sage.pid_start_time"
PIDNS_TAG = "sage.pid_ns"
DEAD_TAG = "sage.dead_run"
CLAIM_TAG = "sage.owner_since"  # epoch seconds at which claim_run re-tagged a resumed run

# start times are whole clock ticks (1/100 s on Linux) read through two routes (psutil or
# /proc); anything closer than this is the same process
_START_TOLERANCE_S = 1.0


@cache
def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of ``/proc/<pid>/stat`` after the command name (None: no such process or no
    /proc). The name is in parentheses and may itself hold spaces and parentheses."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rfind(")") + 2 :].split()


def start_time(pid: int) -> float | None:
    """Start time of process ``pid`` in epoch seconds (None: gone, or unknown here)."""
    try:
        import psutil  # an ultralytics dependency; /proc below where it is missing

        return psutil.Process(pid).create_time()
    except ImportError:
        pass
    except Exception:  # psutil.NoSuchProcess, AccessDenied, ZombieProcess
        return None
    fields, boot = _proc_stat(pid), _boot_time()
    if fields is None or boot is None:
        return None
    # field 22 of stat (index 19 after state): start time in clock ticks since boot
    return boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_tags() -> dict[str, str]:
    """The ownership tags of a run created by this process."""
    tags = {HOST_TAG: socket.gethostname(), PID_TAG: str(os.getpid())}
    started = start_time(os.getpid())
    if started is not None:
        tags[START_TAG] = f"{started:.2f}"
    namespace = _pid_namespace()
    if namespace:
        tags[PIDNS_TAG] = namespace
    return tags


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) process; True when this platform cannot tell."""
    try:
        import psutil

        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False
        except psutil.AccessDenied:
            return True
    except ImportError:
        pass
    if os.name != "posix":
        return True  # os.kill terminates on Windows; without psutil nothing can check
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by another user
    fields = _proc_stat(pid)
    return fields is None or fields[0] != "Z"  # killed but not yet reaped by its parent


def _local_pid(tags: dict[str, str]) -> int | None:
    """The owner's pid when it runs where this process can see it (same host and pid
    namespace); None for other hosts, other namespaces and runs without ownership tags."""
    pid = tags.get(PID_TAG, "")
    if tags.get(HOST_TAG) != socket.gethostname() or not pid.isdigit():
        return None
    if tags.get(PIDNS_TAG) and tags.get(PIDNS_TAG) != _pid_namespace():
        return None
    return int(pid)


def dead_reason(tags: dict[str, str]) -> str | None:
    """Why the process owning a run with ``tags`` is known dead; None when it may be alive or
    this process cannot tell (another host or pid namespace, no ownership tags)."""
    pid = _local_pid(tags)
    if pid is None:
        return None
    where = f"process {pid} on {tags[HOST_TAG]}"
    if not _running(pid):
        return f"{where} ended without closing the run (killed, out of memory or crashed)"
    try:
        recorded = float(tags.get(START_TAG, ""))
    except ValueError:
        return None  # no start time recorded: a live pid is taken for the owner
    current = start_time(pid)
    if current is not None and abs(recorded - current) > _START_TOLERANCE_S:
        return f"{where} ended without closing the run; its pid now belongs to another process"
    return None


def owner_alive(tags: dict[str, str]) -> bool | None:
    """True: the run's owner is a live process of this host; False: it is gone
    (:func:`dead_reason` says why); None: this process cannot tell."""
    return None if _local_pid(tags) is None else dead_reason(tags) is None


def _tags_name_the_owner(run: Run) -> bool:
    """False for a run resumed after it had ended (``mlflow.start_run(run_id=...)``) without
    :func:`claim_run`: its tags still name the process that ran it before, which is dead
    while the run is in use again. Ended runs carry an end time; a claim after it vouches
    for the tags."""
    if run.info.end_time is None:
        return True
    try:
        return float(run.data.tags.get(CLAIM_TAG, "")) * 1000 >= run.info.end_time
    except ValueError:
        return False


def sweep_dead_runs(tracking_uri: str) -> list[str]:
    """Mark FAILED every RUNNING run of the store whose owning process on this host is gone;
    return their ids. Other hosts' runs are left alone."""
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return []
    host = socket.gethostname().replace("'", "\\'")
    query = f"attributes.status = 'RUNNING' and tags.`{HOST_TAG}` = '{host}'"
    marked: list[str] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, query, max_results=1000, page_token=token)
        for run in page:
            reason = dead_reason(run.data.tags) if _tags_name_the_owner(run) else None
            if reason is None:
                continue
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            client.set_tag(
                run.info.run_id, DEAD_TAG, f"{reason}; marked by pid {os.getpid()} at {stamp}"
            )
            client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.FAILED))
            marked.append(run.info.run_id)
            print(
                f"note: MLflow run {run.info.run_id} ({run.info.run_name}) marked FAILED: {reason}",
                file=sys.stderr,
            )
        token = page.token
        if not token:
            return marked


_swept: set[str] = set()


def sweep_once(tracking_uri: str) -> list[str]:
    """:func:`sweep_dead_runs` the first time this process opens ``tracking_uri``.

    Housekeeping only: a store that cannot be searched or written here is reported by the
    command's own first write, with its own error, so a failed sweep is a warning.
    """
    if tracking_uri in _swept:
        return []
    _swept.add(tracking_uri)
    try:
        return sweep_dead_runs(tracking_uri)
    except (MlflowException, OSError) as err:
        print(f"warning: could not check {tracking_uri} for dead runs: {err}", file=sys.stderr)
        return []


def claim_run(client: mlflow.MlflowClient, run_id: str) -> None:
    """Make this process the owner of an existing run (resuming it): ownership tags, status
    RUNNING, and no dead-run verdict of an earlier sweep.

    Whoever resumes a run (``mlflow.start_run(run_id=...)``, ``MLFlowLogger(run_id=...)``)
    calls this; until then sweeps leave the resumed run alone (:func:`_tags_name_the_owner`).
    """
    for key, value in (process_tags() | {CLAIM_TAG: f"{time.time():.3f}"}).items():
        client.set_tag(run_id, key, value)
    if DEAD_TAG in client.get_run(run_id).data.tags:
        client.delete_tag(run_id, DEAD_TAG)
    client.update_run(run_id, RunStatus.to_string(RunStatus.RUNNING))


class ProcessContext(RunContextProvider):
    """MLflow run-context provider: the ownership tags on every run MLflow creates."""

    def in_context(self) -> bool:
        return True

    def tags(self) -> dict[str, str]:
        return process_tags()


def register_process_context() -> None:
    """Add :class:`ProcessContext` to MLflow's providers (once per process).

    MLflow's public route is a ``mlflow.run_context_provider`` entry point, which only takes
    effect after reinstalling the package; registering on import works in any checkout.
    """
    from mlflow.tracking.context import registry

    providers = registry._run_context_provider_registry
    if not any(isinstance(p, ProcessContext) for p in providers):
        providers.register(ProcessContext)
