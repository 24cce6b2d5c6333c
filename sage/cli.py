"""Shared behaviour of the Hydra entry points: config resolvers, user errors as one line."""

from __future__ import annotations

import functools
import os
import secrets
import sys
from collections.abc import Callable
from typing import Any

from omegaconf import OmegaConf

from .data.labels import MappingError
from .errors import SageError
from .models import MissingWeightsError

USER_ERRORS = (SageError, MappingError, MissingWeightsError)

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


def one_line_errors(task: Callable[..., Any]) -> Callable[..., Any]:
    """Print user errors as ``error: <message>`` and exit 1 (``SAGE_TRACEBACK=1`` to debug)."""

    @functools.wraps(task)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return task(*args, **kwargs)
        except USER_ERRORS as err:
            if os.environ.get("SAGE_TRACEBACK"):
                raise
            print(f"error: {err}", file=sys.stderr)
            sys.exit(1)

    return wrapper
