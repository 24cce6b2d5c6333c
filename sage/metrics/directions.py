"""Which way is better for each metric column: +1 (higher is better), -1 (lower), or None.

One table for every consumer that has to compare scores (the meta-evaluation, tables that mark
↑/↓). Alignment columns ``<metric>/<region>`` flip sign on regions where saliency is a fault
(the background, the spurious sticker); on a single body part the right answer depends on the
class, so no direction is claimed there.

Names are the vocabulary of docs/metrics.md: one name per quantity in every stage (the mass is
``fg_mass`` / ``bg_mass``, never ``a_fg``; Explanation Alignment's EA_IoU / EA_PG are the means
of ``iou`` / ``pointing_game``, not columns of their own).
"""

from __future__ import annotations

HIGHER, LOWER = 1, -1

_BY_NAME: dict[str, int] = {
    # alignment (per region; sign for the foreground / discriminative regions)
    "iou": HIGHER,
    "pointing_game": HIGHER,
    "delta_density": HIGHER,
    "average_precision": HIGHER,
    "saliency_precision": HIGHER,
    "saliency_recall": HIGHER,
    # foreground / background mass of the rectified map (summary.csv, every stage's scalars)
    "fg_mass": HIGHER,
    "bg_mass": LOWER,
    # faithfulness (Poppi et al.)
    "average_drop": LOWER,
    "increase_in_confidence": HIGHER,
    "coherency": HIGHER,
    "complexity": LOWER,
    "adcc": HIGHER,
    # ROAD / ARCC
    "road/morf": LOWER,
    "road/lerf": HIGHER,
    "road": HIGHER,
    "arcc": HIGHER,
    "cosine_gt": HIGHER,
    # the faithfulness / robustness / complexity catalogue
    "deletion": LOWER,
    "insertion": HIGHER,
    "aopc/morf": HIGHER,
    "aopc/lerf": LOWER,
    "aopc/gap": HIGHER,
    "faithfulness_correlation": HIGHER,
    "infidelity": LOWER,
    "max_sensitivity": LOWER,
    "sparseness": HIGHER,
    "effective_complexity": LOWER,
    "rank_accuracy": HIGHER,  # per region, like alignment
    "topk_intersection": HIGHER,
}

# region suffix -> sign applied to an alignment metric measured on it
_REGION_SIGN = {"fg": HIGHER, "discriminative": HIGHER, "bg": LOWER, "spurious": LOWER}


def register_direction(column: str, sign: int) -> None:
    """Declare the direction of a metric column (for metric sets defined elsewhere)."""
    if sign not in (HIGHER, LOWER):
        raise ValueError(f"direction of {column!r} must be +1 or -1, got {sign!r}")
    _BY_NAME[column] = sign


def direction(column: str) -> int | None:
    """+1 when a higher value of ``column`` is better, -1 when lower is, None when unknown or
    when it depends on the image (alignment on a single part)."""
    if column in _BY_NAME:
        return _BY_NAME[column]
    name, _, region = column.rpartition("/")
    if name in _BY_NAME and name not in ("road", "aopc") and region:
        sign = _REGION_SIGN.get(region)
        return None if sign is None else _BY_NAME[name] * sign
    return None


def arrow(column: str) -> str:
    """``↑``, ``↓`` or ``""`` for ``column`` (for table headers)."""
    return {HIGHER: "↑", LOWER: "↓"}.get(direction(column), "")
