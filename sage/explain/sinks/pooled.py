"""Pooled metric sets (COSE, RFS): per-batch results collected, aggregated at the end.

A pooled set has no per-image value: each batch returns a partial result and the set's
``aggregate`` pools them over the stream. Model-level sets (RFS) belong to the model, not a
method (the stage computes them with one method only), so they are keyed without one.
"""

from __future__ import annotations

from typing import Any

from ...metrics.suite import pooled_set
from ..stage import Explained


class PooledResults:
    """Collects ``item.result.pooled`` by (method or None for model-level sets, set name)."""

    def __init__(self) -> None:
        self.results: dict[tuple[str | None, str], list[Any]] = {}

    def add(self, item: Explained) -> None:
        for name, result in item.result.pooled.items():
            owner = None if pooled_set(name).model_level else item.method
            self.results.setdefault((owner, name), []).append(result)

    def scores(self, root: str) -> dict[str, dict[str, float]]:
        """``{"<root>/<method>/<set>" or "<root>/<set>": {score: value}}``."""
        out = {}
        for (owner, name), results in self.results.items():
            prefix = f"{root}/{owner}/{name}" if owner else f"{root}/{name}"
            out[prefix] = pooled_set(name).aggregate(results)
        return out

    def flat(self, root: str) -> dict[str, float]:
        """:meth:`scores` as one flat ``{"<prefix>/<score>": value}`` dict."""
        return {f"{p}/{k}": v for p, s in self.scores(root).items() for k, v in s.items()}
