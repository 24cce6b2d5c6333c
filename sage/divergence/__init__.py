"""Model divergence (docs/metrics.md §11): quantify why two models behave differently, and
test the SAGE hypothesis that behavioural divergence tracks saliency divergence.

``python evaluate.py mode=divergence models=[<a>,<b>,...] divergence.dataset=<dataset>`` runs
:func:`run` (:mod:`~sage.divergence.runner`, dispatched by :func:`sage.evaluate.run`): the
checked settings (:mod:`~sage.divergence.settings`), every model and method over the split
(:mod:`~sage.divergence.collection`), the per-pair and across-pair analysis
(:mod:`~sage.divergence.analysis`), then files, report and one MLflow run. The measures are
usable on their own:

- :mod:`~sage.divergence.behaviour`: JS between predictive distributions, disagreement, flips;
- :mod:`~sage.divergence.saliency`: JS / 1−SSIM between maps (split into fg and bg parts),
  Spearman / patch-KL / Euclidean / cosine distances between tokens per grid and region;
- :mod:`~sage.divergence.hypothesis`: Spearman and Pearson correlations with vectorised
  bootstrap intervals, partial correlations, across-pair tests and the verdict;
- :mod:`~sage.divergence.embedding`: standardised token vectors and their PCA;
- :mod:`~sage.divergence.report`: the markdown report and its tables.
"""

from .runner import run

__all__ = ["run"]
