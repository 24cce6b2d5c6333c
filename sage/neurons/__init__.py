"""Neural-feature attribution against part masks (RIVAL10 §6), ``explain.py mode=neurons``.

Does a penultimate-layer unit that lines up with a part on a class's training images still
line up on held-out images? ``activations`` (one pass, every unit), ``unit_cam`` (Grad-CAM
with respect to units, many per forward), ``search`` (top-k search and held-out check),
``report`` (table, metrics, figures), ``task`` (the Hydra/MLflow entry, :func:`run`).
"""

from .activations import FeatureTap, collect_activations, region_masks, resolve_regions
from .search import PairSearch, heldout_scores, search_units
from .task import run
from .unit_cam import UnitGradCAM, max_binarise, unit_gradcam, unit_iou

__all__ = [
    "FeatureTap",
    "PairSearch",
    "UnitGradCAM",
    "collect_activations",
    "heldout_scores",
    "max_binarise",
    "region_masks",
    "resolve_regions",
    "run",
    "search_units",
    "unit_gradcam",
    "unit_iou",
]
