"""Shared behaviour of the Hydra entry points: config resolvers; user errors and unwritable
outputs as one line."""

from __future__ import annotations

import errno
import functools
import os
import secrets
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from .data.labels import MappingError
from .errors import MissingWeightsError, SageError
from .quiet import quiet_known_noise

USER_ERRORS = (SageError, MappingError, MissingWeightsError)
# A config value the user left out (``dataset.root: ???``) or one a resolver could not turn into
# a value (``${sage_class_folders:}`` on a root that does not exist): fixed on the command line.
CONFIG_ERRORS = (MissingMandatoryValue, InterpolationResolutionError)

# ${sage_root:} is where outputs/ lives: $SAGE_ROOT, else the working directory. A resolver
# rather than ${hydra:runtime.cwd} because Hydra resolves the sweep dir before HydraConfig
# exists in multirun, and oc.env evaluates its default eagerly.
OmegaConf.register_new_resolver(
    "sage_root", lambda: os.environ.get("SAGE_ROOT") or os.getcwd(), replace=True
)


def run_suffix() -> str:
    """``${run_suffix:}``: makes a single run's directory unique. Two runs started in the same
    second (``${now:...}`` has one-second resolution) used to share a folder, checkpoints,
    figures and COSE weight snapshots. One value per process tree, kept in the environment:
    Lightning's DDP launcher re-runs train.py for every rank, which re-resolves
    ``hydra.run.dir`` and must land in rank 0's folder."""
    return os.environ.setdefault("SAGE_RUN_SUFFIX", f"{os.getpid()}-{secrets.token_hex(2)}")


OmegaConf.register_new_resolver("run_suffix", run_suffix, replace=True)


def class_folders(root: str | None) -> int:
    """``${sage_class_folders:${.root}}``: the class count of a folder dataset (its class
    folders holding images), so ``dataset=folder/*`` needs no ``num_classes`` from the user."""
    from .data.readers.generic import count_classes  # the readers only when a config asks

    return count_classes(root)


OmegaConf.register_new_resolver("sage_class_folders", class_folders, replace=True)


# A full disk, a quota or a read-only/unwritable outputs/ is the user's to fix, not a bug.
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}
# SQLite reports the same conditions in its own words (the MLflow store is a SQLite file)
_SQLITE_STORAGE = ("database or disk is full", "readonly database", "unable to open database")


def storage_error(err: BaseException) -> str | None:
    """One line for an error caused by storage that cannot be written (full, over quota,
    read-only, no permission), found anywhere in ``err``'s cause/context chain; else None.

    The chain matters: the OSError is often wrapped (Hydra's instantiate, MLflow's store) or
    is the context of a second failure (Lightning closing the run on the same full disk).
    """
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OSError) and err.errno in _STORAGE_ERRNOS:
            where = f" to {err.filename}" if err.filename else ""
            return f"cannot write{where} ({err.strerror or os.strerror(err.errno)})"
        if isinstance(err, sqlite3.Error) and any(m in str(err) for m in _SQLITE_STORAGE):
            return f"cannot write to the MLflow store ({err})"
        err = err.__cause__ or err.__context__
    return None


def one_line_errors(task: Callable[..., Any]) -> Callable[..., Any]:
    """Silence the known library noise (:mod:`sage.quiet`; ``+verbose=true`` or
    ``SAGE_VERBOSE=1`` shows it), then run the task. Print user errors and storage that cannot
    be written (full disk, read-only or unwritable ``outputs/``) as ``error: <message>`` and
    exit 1 (``SAGE_TRACEBACK=1`` to debug). Runs the failure left open were closed as FAILED
    on the way (Lightning, the ``mlflow.start_run`` blocks); a run whose closing write failed
    too is marked FAILED by the next command (:mod:`sage.tracking.liveness`)."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        cfg = args[0] if args and isinstance(args[0], DictConfig) else None
        quiet_known_noise(cfg.get("verbose") if cfg is not None else None)
        try:
            return task(*args, **kwargs)
        except USER_ERRORS as err:
            if os.environ.get("SAGE_TRACEBACK"):
                raise
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)
        except CONFIG_ERRORS as err:
            if os.environ.get("SAGE_TRACEBACK"):
                raise
            key = getattr(err, "full_key", None)
            where = f" (config key {key})" if key else ""
            # the first line: OmegaConf appends the key and object type on further lines
            print(f"error: {str(err).splitlines()[0]}{where}", file=sys.stderr)
            sys.exit(1)
        except Exception as err:
            message = storage_error(err)
            if message is None or os.environ.get("SAGE_TRACEBACK"):
                raise
            print(f"error: {message}", file=sys.stderr)
            sys.exit(1)

    return wrapper


class OutputDirCheck(Callback):
    """Hydra callback: creates the run (or sweep) directory itself, so an unwritable
    ``outputs/`` is one ``error:`` line instead of the traceback of Hydra's own ``mkdir``,
    which runs before the task and :func:`one_line_errors`. Enabled in
    ``sage/conf/hydra/default.yaml`` (``hydra.callbacks``)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._make(config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._make(config.hydra.sweep.dir)

    @staticmethod
    def _make(path: str) -> None:
        try:
            Path(path).mkdir(parents=True, exist_ok=True)
        except OSError as err:
            message = storage_error(err)
            if message is None or os.environ.get("SAGE_TRACEBACK"):
                raise
            # SystemExit passes Hydra's error report (it catches Exception only)
            print(f"error: {message}", file=sys.stderr)
            sys.exit(1)
