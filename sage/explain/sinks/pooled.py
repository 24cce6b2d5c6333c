"""Pooled metric sets (COSE, RFS): per-batch results collected, aggregated at the end.

A pooled set has no per-image value: each batch returns a partial result and the set's
``aggregate`` pools them over the stream. Model-level sets (RFS) belong to the model, not a
method (the stage computes them with one method only), so they are keyed without one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from ...metrics.suite import pooled_set
from ..stage import Explained


class PooledResults:
    """Collects ``item.result.pooled`` by (method or None for model-level sets, set name)."""

    def __init__(self) -> None:
        self.results: dict[tuple[str | None, str], list[Any]] = {}
        self.ids: dict[tuple[str | None, str], list[str]] = {}

    def add(self, item: Explained) -> None:
        for name, result in item.result.pooled.items():
            owner = None if pooled_set(name).model_level else item.method
            self.results.setdefault((owner, name), []).append(result)
            self.ids.setdefault((owner, name), []).extend(item.ids)

    def per_image(self) -> dict[str, pd.DataFrame]:
        """``{"<set>" or "<set>_<method>": table}`` of the sets whose batch results carry
        per-image numbers (RFS: ``acc_fg``, ``acc_bg``, ...): one row per image, by
        image_id, so a study can bootstrap the pooled score over images."""
        out = {}
        for (owner, name), results in self.results.items():
            if not all(isinstance(r, dict) and "per_image" in r for r in results):
                continue
            columns: dict[str, list] = {"image_id": self.ids[(owner, name)]}
            for key in results[0]["per_image"]:
                parts = [np.asarray(torch.as_tensor(r["per_image"][key]).cpu()) for r in results]
                if parts[0].ndim == 1:  # per-image scalars; (B, S) curves stay out
                    columns[key] = np.concatenate(parts)
            out[name if owner is None else f"{name}_{owner}"] = pd.DataFrame(columns)
        return out

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
