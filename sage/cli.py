"""Shared behaviour of the Hydra entry points: user errors as one line, not a stack trace."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any

from .data.labels import MappingError
from .errors import SageError
from .models import MissingWeightsError

USER_ERRORS = (SageError, MappingError, MissingWeightsError)


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
