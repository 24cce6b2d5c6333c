"""Which direction is better for each quantity the study report shows: ``↑``, ``↓`` or ``""``.

The one place the report looks up the mark it puts in a table header. :data:`DIRECTION` names
the study's columns explicitly, with the names and directions of docs/metrics.md (the
vocabulary table, the summary, §14 for the meta-evaluation); any other metric column falls
back to :func:`sage.metrics.directions.arrow` (the metric sets' own table), after stripping a
stage or method prefix (``val_sage/``, ``explain/gradcam/``, ``gradcam/``). ``""`` means
neither direction is better: counts, descriptive quantities (the JS divergences), values whose
meaning depends on the row (the meta-evaluation's metric means).
"""

from __future__ import annotations

from ..metrics.directions import arrow as _metric_arrow

UP, DOWN, NONE = "↑", "↓", ""

DIRECTION: dict[str, str] = {
    # accuracies (docs/metrics.md vocabulary: test/acc, eval/acc; the study's aliases of eval/acc)
    "acc": UP,
    "test/acc": UP,
    "val/acc": UP,
    "cue_acc": UP,
    "shuffled_acc": UP,
    "cross_acc_full": UP,
    "cross_acc_same_variant": UP,
    "f1_macro": UP,
    "auc_macro": UP,
    "ece": DOWN,
    # saliency on the regions (GradCAM on the source domain's full test images)
    "fg_mass": UP,
    "bg_mass": DOWN,
    "fg_mass/correct": UP,
    "fg_mass/error": UP,
    "zero_maps": DOWN,
    "saliency_precision/spurious": DOWN,
    "pointing_game/fg": UP,
    "arcc": UP,
    # faithfulness (summary table)
    "road": UP,
    "road/morf": DOWN,
    "road/lerf": UP,
    "deletion": DOWN,
    "insertion": UP,
    # RIVAL10's relative foreground sensitivity (§10)
    "rfs/rfs": UP,
    "rfs/rfs_sigma_mean": UP,
    "rfs/irfs": UP,
    "rfs/grey_background_accuracy": UP,
    "seconds_per_image": DOWN,
    # meta-evaluation, meta_validity.csv (§14): best 1, low, high
    "pair_accuracy": UP,
    "noise_resilience": DOWN,
    "reactivity": UP,
    # descriptive: no better direction
    "js_pred": NONE,
    "js_map": NONE,
    "js_fg": NONE,
    "js_bg": NONE,
    "n": NONE,
    "share": NONE,
    "conf_mean": NONE,
    "excluded": NONE,
}

# suffixes of the study's saliency columns: which images the model was explained on
_WHERE = ("/own_variant", "/full_images")
# prefixes that name where a quantity was measured, not what it is
_STAGES = ("val_sage/", "explain/", "eval/", "test/", "val/")
_METHODS = (
    "gradcam_plusplus/",
    "gradcam/",
    "eigencam/",
    "layercam/",
    "fullgrad/",
    "saliency/",
)


def direction(name: str) -> str:
    """``↑`` (higher is better), ``↓`` (lower is better) or ``""`` for the column ``name``."""
    name = str(name)
    if name in DIRECTION:
        return DIRECTION[name]
    for where in _WHERE:  # the study's "measured on which images" suffixes
        if name.endswith(where):
            return direction(name[: -len(where)])
    for prefixes in (_STAGES, _METHODS):
        for prefix in prefixes:
            if name.startswith(prefix):
                return direction(name[len(prefix) :])
    return _metric_arrow(name)


def header(name: str) -> str:
    """``name`` with its direction mark appended (``"test/acc ↑"``), unchanged without one."""
    mark = direction(name)
    return f"{name} {mark}" if mark else str(name)
