"""MLflow tracking: what every run records beside Lightning's own metric logging.

Importing the package registers :class:`~sage.tracking.liveness.ProcessContext`, so every run
MLflow creates in this process carries its owner's host and pid (dead-run detection).
"""

from .liveness import register_process_context

register_process_context()
