"""``evaluate.py``'s task: ``run(cfg)`` dispatches ``mode`` to the package that runs it.

``mode=grid|cells|assemble``: the cross-domain grid (:func:`sage.evaluation.run`);
``mode=divergence``: why the selected models differ (:func:`sage.divergence.run`). The
dispatch lives here, above both, because :mod:`sage.divergence` selects its models and
targets with :mod:`sage.evaluation`'s selection and targets.
"""

from __future__ import annotations

from omegaconf import DictConfig

from .divergence import run as run_divergence
from .evaluation import run as run_grid


def run(cfg: DictConfig) -> dict[str, object]:
    """Run ``cfg.mode`` (default ``grid``); return that mode's result (counts, ``table``)."""
    if cfg.get("mode", "grid") == "divergence":
        return run_divergence(cfg)
    return run_grid(cfg)
