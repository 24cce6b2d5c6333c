"""Consumers of explained batches (:class:`~sage.explain.stage.Explained`), one per output.

Every sink has ``add(item)``, called once per explained batch, and most a closing call that
writes what is left. Each keeps a bounded amount of state: arrays go to disk batch by batch
(:class:`ArrayStore`, :class:`TokenTable`), per-image rows are scalars only
(:class:`SummaryRows`, :class:`MetricRows`, :class:`Columns`), figures keep a few tiles
(:class:`Visuals`). :mod:`.spurious` and :mod:`.agreement` read the store back after the
stream; :mod:`.mlflow_log` logs the finished run directory.
"""

from __future__ import annotations

from typing import Protocol

from ..stage import Explained
from .arrays import ArrayStore
from .columns import Columns
from .pooled import PooledResults
from .tables import MetricRows, SummaryRows
from .tokens import TokenTable
from .visuals import Visuals


class Sink(Protocol):
    """What the explain task feeds every explained batch to."""

    def add(self, item: Explained) -> None: ...


__all__ = [
    "ArrayStore",
    "Columns",
    "MetricRows",
    "PooledResults",
    "Sink",
    "SummaryRows",
    "TokenTable",
    "Visuals",
]
