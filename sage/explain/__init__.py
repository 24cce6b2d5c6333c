"""Explain: saliency maps, fg/bg masses, tokens and metric sets of a model on images.

Two sources (:mod:`~sage.explain.sources`): a training checkpoint on a prepared split
(``checkpoint=<ckpt | run id>``), or any registered backbone with a weights file on a folder
or glob of images (``model=<backbone> model.weights=<file> images=<folder> [masks=<folder>]``;
the predicted class is explained, sets that need labels or masks are skipped with reasons).

Pieces, usable on their own:

- :mod:`~sage.explain.batch`: one batch through one method (:func:`explain_batch`);
- :mod:`~sage.explain.stage`: the compute stage, a generator of explained batches over any
  iterable of batches (:func:`explain_stream`); the training callback and the evaluation
  grid use it too;
- :mod:`~sage.explain.sinks`: what consumes the stream (array store, token table, per-image
  tables, figures, MLflow);
- :mod:`~sage.explain.maps`: :func:`load_maps`, the saved maps read back;
- :mod:`~sage.explain.meta`: the meta-evaluation stage;
- :mod:`~sage.explain.task`: ``run(cfg)``, the ``explain.py`` task.

``run(cfg)`` writes, under an MLflow run of its own
(``<model>-<variant>/<dataset>-nc<classes>/explain-<timestamp>``):

- ``arrays/<method>/shard-<k>.npz``: batch ``k``'s arrays stacked, ``image_id``, ``whole``
  (S̃), ``mask``, ``tokens_<P>x<Q>`` (B, regions, P, Q, 6); ``arrays/index.csv`` maps
  image_id → method, shard, row (read them with :func:`load_maps`, which also gives ``fg``
  = S̃⊙M and ``bg`` = S̃⊙(1−M));
- ``tokens.parquet``: the long token table keyed by (image_id, class, split, variant, method,
  grid, region, model_run), streamed by row groups;
- ``summary.csv``: per image and method fg_mass, bg_mass, prediction, confidence, correct, flags;
  ``metrics.csv``: per image and method the metric sets' columns;
- ``overlays/<method>/*.png`` and ``mosaics/<method>_correct_error.png`` (without labels
  ``mosaics/<method>_predicted.png``); ``skipped_metrics.json`` when sets were skipped;
- ``token_grids/<method>.png`` (cell masses and centroids of the first image);
- ``method_agreement.csv``: patch KL and Spearman of cell masses between every two methods.
"""

from __future__ import annotations

from typing import Any

from .batch import ExplainedBatch, explain_batch
from .maps import load_maps
from .stage import Explained, explain_stream


def run(cfg: Any) -> dict[str, float]:
    """The ``explain.py`` task (:func:`sage.explain.task.run`).

    Imported on call: the callback and the grid import this package for the stage and
    should not load the task's MLflow and neurons modules with it.
    """
    from .task import run as task_run

    return task_run(cfg)


__all__ = ["Explained", "ExplainedBatch", "explain_batch", "explain_stream", "load_maps", "run"]
