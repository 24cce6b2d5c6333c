"""Shared behaviour of the Hydra entry points: config resolvers, user errors as one line."""

from __future__ import annotations

import functools
import os
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
