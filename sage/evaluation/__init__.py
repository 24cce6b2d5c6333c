"""Cross-domain evaluation: every source model × every target dataset variant.

``run(cfg)`` (from :mod:`sage.evaluation.runner`, called by the thin ``evaluate.py``) selects
trained checkpoints, evaluates each on each target under one MLflow parent run with a nested
child run per cell, and writes the grid (a matrix per metric, heatmaps, a markdown table).
The pieces are usable on their own:

- :mod:`~sage.evaluation.selection`: which models (MLflow filter, run ids, checkpoint paths);
- :mod:`~sage.evaluation.targets`: target dataset configs composed from ``sage/conf/dataset``;
- :mod:`~sage.evaluation.classification`: metrics, per-class FP/FN, ROC from predictions;
- :mod:`~sage.evaluation.clustering`: confidence-stratified bins and their saliency statistics;
- :mod:`~sage.evaluation.cell`: predictions of one model on one target and the cell artifacts;
- :mod:`~sage.evaluation.grid`: grid key, matrices, markdown table and heatmaps.
"""

from .runner import run

__all__ = ["run"]
