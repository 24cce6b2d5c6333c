"""Localisation / alignment of saliency maps with region masks (docs/metrics.md §4).

Sources, cited per function:

- RIVAL10 (Moayeri et al., CVPR 2022), appendix E "Saliency Alignment": IoU, Δ Densities,
  Average Precision, Saliency Precision and Saliency Recall for a binary mask ``m`` and a
  saliency map ``s ∈ [0, 1]``.
- Explanation Alignment (Bang, Boggust, Satyanarayan, 2024), §3.3-3.4: per-image IoU
  (Shared Interest) and the Pointing Game (Zhang et al.), averaged over a dataset into
  ``EA_IoU`` and ``EA_PG``; thresholds 0.5 for Grad-CAM and ``mean + 1·std`` for Vanilla
  Gradients (their appendix A.3).

Conventions shared by every function:

- ``maps`` are raw saliency maps ``(B, H, W)`` of any sign and float dtype; ``mask`` is a
  binary region mask of the same shape (bool or 0/1, validated by
  :func:`sage.saliency.normalize.check_mask`). ``s`` below is the per-image min-max map
  ``(S − min)/(max − min)`` from :func:`sage.saliency.normalize.minmax`.
- Everything runs on the maps' device, vectorised over the batch (no Python loop over
  images or pixels), and returns ``(B,)`` float tensors (float64 for float64 maps, float32
  otherwise).
- A *flat* map (constant, or holding NaN/±inf: ``minmax``'s ``flat`` flag) carries no
  localisation, so **every metric is NaN for it**: a recorded skip, never a fake score.
  Aggregation (:func:`explanation_alignment`) is NaN-aware and reports counts.
- An empty region mask gives NaN for every metric (nothing to align with: a recorded skip,
  never a 0 that would enter the dataset means); a region covering the whole image gives
  NaN for Δ densities (no outside).

Where the papers' printed formulas differ from docs/metrics.md §4, its definition is the
default and the printed one is a named option: ``iou(denominator="sum")`` and
``delta_density(combine="ratio")`` (RIVAL10 appendix E as printed); TorchRay's strict
tolerance disc is ``pointing_game(strict=True)``.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Literal

import pandas as pd
import torch
from torch import Tensor

from sage.saliency.normalize import check_mask, minmax, working_dtype

__all__ = [
    "ALIGNMENT_METRICS",
    "EA_NAMES",
    "alignment_scores",
    "average_precision",
    "delta_density",
    "explanation_alignment",
    "iou",
    "pointing_game",
    "rank_spurious_candidates",
    "saliency_precision",
    "saliency_recall",
    "threshold",
]

Tau = float | Literal["mean_std"]

# Relative slack when saliency recall compares a cumulative mass with mass·Σs: absorbs the
# rounding of a float64 cumulative sum so a top set holding *exactly* 75% is found.
_MASS_RTOL = 1e-9


# ------------------------------------------------------------------------------ helpers


def _nan_where(invalid: Tensor, value: Tensor) -> Tensor:
    return torch.where(invalid, torch.full_like(value, math.nan), value)


def _safe(den: Tensor) -> Tensor:
    """Denominator with zeros replaced by one (the caller masks those entries afterwards)."""
    return torch.where(den == 0, torch.ones_like(den), den)


def _bool_mask(mask: Tensor, like: Tensor) -> Tensor:
    return check_mask(mask, like) > 0.5


def _accumulation_dtype(x: Tensor) -> torch.dtype:
    # float64 cumulative sums everywhere except on MPS, which has no float64.
    return x.dtype if x.device.type == "mps" else torch.float64


def _binarize(s: Tensor, flat: Tensor, tau: Tau) -> Tensor:
    if isinstance(tau, str):
        if tau != "mean_std":
            raise ValueError(f"tau must be a number or 'mean_std', got {tau!r}")
        flat_s = s.flatten(1)
        # Population std (ddof 0), as Shared Interest's binarize_std (numpy) computes it.
        thr = flat_s.mean(1) + flat_s.std(1, correction=0)
    else:
        if isinstance(tau, bool) or not isinstance(tau, int | float) or not math.isfinite(tau):
            raise ValueError(f"tau must be a finite number or 'mean_std', got {tau!r}")
        thr = torch.full((s.shape[0],), float(tau), dtype=s.dtype, device=s.device)
    return (s >= thr[:, None, None]) & ~flat[:, None, None]


def _mass_binarize(s: Tensor, mass: float) -> Tensor:
    """``s ≥ τ*`` with τ* the value of the pixel at which the descending cumulative mass
    first reaches ``mass · Σs`` (so ties with that pixel are kept too)."""
    if isinstance(mass, bool) or not isinstance(mass, int | float) or not 0 < mass <= 1:
        raise ValueError(f"mass must be a fraction in (0, 1], got {mass!r}")
    desc = torch.sort(s.flatten(1), dim=1, descending=True).values
    cum = desc.to(_accumulation_dtype(desc)).cumsum(1)
    total = cum[:, -1:]
    reached = cum >= mass * total * (1 - _MASS_RTOL)
    first = reached.to(torch.uint8).argmax(1, keepdim=True)  # first True (the last always is)
    tau_star = desc.gather(1, first)
    return s >= tau_star[:, :, None]


def _iou(b: Tensor, m: Tensor, flat: Tensor, denominator: str, dtype: torch.dtype) -> Tensor:
    inter = (b & m).flatten(1).sum(1)
    if denominator == "union":
        den = (b | m).flatten(1).sum(1)
    elif denominator == "sum":
        den = b.flatten(1).sum(1) + m.flatten(1).sum(1)
    else:
        raise ValueError(f"denominator must be 'union' or 'sum', got {denominator!r}")
    value = inter.to(dtype) / _safe(den).to(dtype)
    return _nan_where(flat | ~m.flatten(1).any(1), value)


def _near(m: Tensor, tolerance: float, strict: bool) -> Tensor:
    """Pixels within ``tolerance`` of the region (``d ≤ r``, or ``d < r`` when strict): the
    region dilated by a disc, one convolution for the whole batch."""
    if tolerance == 0 and not strict:
        return m
    r = math.floor(tolerance)
    off = torch.arange(-r, r + 1, device=m.device)
    d2 = off[:, None] ** 2 + off[None, :] ** 2  # exact integer squared distances
    r2 = float(tolerance) ** 2
    disc = (d2 < r2) if strict else (d2 <= r2)
    if not bool(disc.any()):
        return torch.zeros_like(m)
    hits = torch.nn.functional.conv2d(
        m[:, None].float(), disc[None, None].float(), padding=r
    )  # counts of region pixels in the disc, exact in float32 for any practical radius
    return hits[:, 0] > 0.5


def _pointing(
    raw: Tensor,
    m: Tensor,
    flat: Tensor,
    tolerance: float,
    strict: bool,
    dtype: torch.dtype,
    ties: str = "first",
) -> Tensor:
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or tolerance < 0:
        raise ValueError(f"tolerance must be a non-negative number of pixels, got {tolerance!r}")
    near = _near(m, tolerance, strict)
    if ties == "first":
        # torch.argmax returns the first maximal index: row-major first among ties.
        idx = raw.flatten(1).argmax(1)
        hit = near.flatten(1).gather(1, idx[:, None]).squeeze(1)
    elif ties == "any":
        peak = raw.flatten(1).amax(1)
        hit = ((raw == peak[:, None, None]) & near).flatten(1).any(1)
    else:
        raise ValueError(f"ties must be 'first' or 'any', got {ties!r}")
    return _nan_where(flat | ~m.flatten(1).any(1), hit.to(dtype))


def _density(s: Tensor, m: Tensor, flat: Tensor, combine: str) -> Tensor:
    mf = m.to(s.dtype)
    n = s[0].numel()
    area_in = mf.flatten(1).sum(1)
    area_out = n - area_in
    mass_in = (s * mf).flatten(1).sum(1)
    mass_out = (s * (1 - mf)).flatten(1).sum(1)
    d_in = mass_in / _safe(area_in)
    d_out = mass_out / _safe(area_out)
    if combine == "difference":
        value = d_in - d_out
    elif combine == "ratio":
        value = d_in / d_out  # +inf when no saliency lies outside the region
    else:
        raise ValueError(f"combine must be 'difference' or 'ratio', got {combine!r}")
    return _nan_where(flat | (area_in == 0) | (area_out == 0), value)


def _ap_from_sorted(desc: Tensor, order: Tensor, m: Tensor, flat: Tensor) -> Tensor:
    """AP = Σ_k (R_k − R_{k−1}) P_k over the distinct score thresholds, descending."""
    y = m.flatten(1).gather(1, order).to(torch.int64)
    tp = y.cumsum(1)  # true positives among the top i+1 pixels (exact integer counts)
    npos = tp[:, -1]
    # A threshold of the step function sits at the last pixel of each run of tied scores.
    end = torch.ones_like(desc, dtype=torch.bool)
    end[:, :-1] = desc[:, :-1] != desc[:, 1:]
    start = torch.ones_like(end)
    start[:, 1:] = end[:, :-1]
    # tp just before each tie group, propagated through the group (tp is non-decreasing).
    tp_prev = torch.zeros_like(tp)
    tp_prev[:, 1:] = tp[:, :-1]
    before = torch.where(start, tp_prev, torch.zeros_like(tp)).cummax(1).values
    gain = torch.where(end, tp - before, torch.zeros_like(tp))  # positives gained at threshold
    acc = _accumulation_dtype(desc)
    rank = torch.arange(1, desc.shape[1] + 1, device=desc.device, dtype=acc)
    precision = tp.to(acc) / rank
    value = (gain.to(acc) * precision).sum(1) / _safe(npos).to(acc)
    return _nan_where(flat | (npos == 0), value.to(desc.dtype))


def _sort_desc(s: Tensor) -> tuple[Tensor, Tensor]:
    desc, order = torch.sort(s.flatten(1), dim=1, descending=True, stable=True)
    return desc, order


def _precision(s: Tensor, m: Tensor, flat: Tensor) -> Tensor:
    total = s.flatten(1).sum(1)
    inside = (s * m.to(s.dtype)).flatten(1).sum(1)
    return _nan_where(flat | (total == 0) | ~m.flatten(1).any(1), inside / _safe(total))


def _recall(b: Tensor, m: Tensor, flat: Tensor, dtype: torch.dtype) -> Tensor:
    area = m.flatten(1).sum(1)
    hit = (b & m).flatten(1).sum(1)
    return _nan_where(flat | (area == 0), hit.to(dtype) / _safe(area).to(dtype))


def _raw(maps: Tensor) -> Tensor:
    return maps.to(working_dtype(maps))


# ------------------------------------------------------------------------- public API


def threshold(maps: Tensor, tau: Tau = 0.5) -> Tensor:
    """Binarise the min-max map: ``b = s ≥ τ`` per image, ``(B, H, W)`` bool.

    RIVAL10 appendix E: "a pixel of s_τ is 1 only when its corresponding value in s is at
    least τ" (τ = 0.5 for GradCAM). Explanation Alignment A.3: τ = 0.5 for Grad-CAM and
    "one standard deviation above the mean" for Vanilla Gradients.

    Args:
        maps: raw saliency ``(B, H, W)``; min-max scaled here.
        tau: a number (compared with ``s`` directly), or ``"mean_std"`` for the per-image
            threshold ``mean(s) + 1·std(s)`` with the population std (ddof 0), as Shared
            Interest's ``binarize_std`` (the Explanation Alignment reference code).

    Returns:
        bool ``(B, H, W)``; all False for a flat map. Note that ``mean + std`` can exceed 1
        for a map that is mostly at its maximum, leaving ``b`` empty (as in the reference).
    """
    s, flat = minmax(maps)
    return _binarize(s, flat, tau)


def iou(
    maps: Tensor, mask: Tensor, tau: Tau = 0.5, denominator: Literal["union", "sum"] = "union"
) -> Tensor:
    """Intersection over union of the binarised map and the region: ``|m ∧ b| / |m ∨ b|``.

    ``b = threshold(maps, tau)``. Explanation Alignment eq. (1) (Shared Interest IoU
    coverage); per image. NaN for an empty region (alignment with nothing is undefined, and
    a 0 would drag dataset means down) and for a flat map.

    ``denominator="sum"`` is RIVAL10 appendix E's formula as printed,
    ``Σ(m ⊙ s_0.5) / (Σm + Σs_0.5)`` (intersection over the sum of the sizes, at most 0.5).
    """
    s, flat = minmax(maps)
    m = _bool_mask(mask, s)
    return _iou(_binarize(s, flat, tau), m, flat, denominator, s.dtype)


def pointing_game(
    maps: Tensor,
    mask: Tensor,
    tolerance: float = 0,
    strict: bool = False,
    ties: Literal["first", "any"] = "first",
) -> Tensor:
    """Pointing game: 1.0 if the maximum of the (scored) map lies in the region, else 0.0.

    Explanation Alignment eq. (2): ``PG_i = 1[H_{b',c'} = 1]`` with ``(b', c') = argmax S``
    (Zhang et al.'s pointing game). NaN for an empty region (there is nothing to point at)
    and for a flat (constant or non-finite) map.

    Args:
        tolerance: radius r in pixels. With r > 0 it is a hit when any region pixel lies at
            Euclidean distance ``≤ r`` from the maximum (TorchRay's benchmark uses r = 15):
            the region is dilated by the disc (one convolution for the batch).
        strict: TorchRay's exact rule ``d² < r²`` instead of ``d ≤ r`` (with r = 0 nothing
            is accepted, so every point misses).
        ties: ``"first"`` (default): the first maximal pixel in row-major order
            (``torch.argmax``, as TorchRay); ``"any"``: a hit when any pixel tied at the
            maximum is in the region (Quantus' ``PointingGame``), which credits flat-topped
            maps such as all-ones-but-one with every region.
    """
    raw = _raw(maps)
    s, flat = minmax(maps)
    m = _bool_mask(mask, s)
    return _pointing(raw, m, flat, tolerance, strict, s.dtype, ties)


def delta_density(
    maps: Tensor, mask: Tensor, combine: Literal["difference", "ratio"] = "difference"
) -> Tensor:
    """Δ Densities: ``Σ(s⊙m)/Σm − Σ(s⊙(1−m))/Σ(1−m)`` on the min-max map.

    The difference of mean saliency inside and outside the region, RIVAL10's "difference in
    average pixel saliency in foreground and background" (§4.3, used to surface spurious
    background features); in [−1, 1]. NaN when the region is empty or covers the whole
    image (one of the two means is undefined) and for a flat map.

    ``combine="ratio"`` is RIVAL10 appendix E's formula as printed,
    ``(Σ m⊙s / Σm) / (Σ(1−m)⊙s / Σ(1−m))``; +inf when no saliency lies outside the region.
    """
    s, flat = minmax(maps)
    m = _bool_mask(mask, s)
    return _density(s, m, flat, combine)


def average_precision(maps: Tensor, mask: Tensor) -> Tensor:
    """Average precision of ``s`` as a per-pixel region score (RIVAL10 appendix E).

    ``AP = Σ_n (R_n − R_{n−1}) P_n`` over the distinct values of ``s`` taken as thresholds in
    descending order (``R_0 = 0``), identical to sklearn's
    ``average_precision_score(mask.ravel(), s.ravel())`` per image, including tied scores
    (a run of equal scores is one threshold). Computed per batch by one sort, integer
    cumulative true-positive counts and a cummax that finds each tie group's start.

    NaN when the region is empty (no positives; sklearn warns and returns a meaningless
    value) and for a flat map (sklearn would give the prevalence of a constant score).
    """
    s, flat = minmax(maps)
    m = _bool_mask(mask, s)
    desc, order = _sort_desc(s)
    return _ap_from_sorted(desc, order, m, flat)


def saliency_precision(maps: Tensor, mask: Tensor) -> Tensor:
    """Saliency precision ``Σ(s⊙m) / Σs`` on the min-max map (RIVAL10 appendix E).

    The share of (min-max) saliency inside the region, a relevance-mass-style weighted
    precision. NaN for an empty region and for a flat map (``Σs = 0`` happens only for a flat
    map: an unflagged min-max map has a pixel at 1). For a non-negative map with a zero pixel,
    e.g. a rectified CAM (min-max scaling then only divides by the maximum), it equals the
    rectified mass A_fg.
    """
    s, flat = minmax(maps)
    m = _bool_mask(mask, s)
    return _precision(s, m, flat)


def saliency_recall(maps: Tensor, mask: Tensor, mass: float = 0.75) -> Tensor:
    """Saliency recall ``Σ(b⊙m) / Σm`` with ``b`` the pixels holding ``mass`` of ``Σs``.

    RIVAL10 appendix E: "the binarization threshold τ* is chosen dynamically so to only
    retain the pixels that account for 75% of total saliency", i.e. ``Σ s_τ* / Σ s = 0.75``.
    With discrete pixels: sort ``s`` descending, take the cumulative sum and let τ* be the
    value of the first pixel where it reaches ``mass · Σs`` (inclusive); ``b = s ≥ τ*``, so
    the kept pixels hold at least ``mass`` of the saliency and pixels tied with τ* are kept
    too (a threshold cannot split a tie). NaN for an empty region and for a flat map.
    """
    s, flat = minmax(maps)
    m = _bool_mask(mask, s)
    return _recall(_mass_binarize(s, mass), m, flat, s.dtype)


# --------------------------------------------------------------- registry and batching


def _uniform(fn: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """Wrap ``fn`` as ``(maps, mask, **options)``, passing on only the options it takes."""
    accepted = set(inspect.signature(fn).parameters) - {"maps", "mask"}

    @functools.wraps(fn)
    def call(maps: Tensor, mask: Tensor, **options: object) -> Tensor:
        _check_options(options)
        return fn(maps, mask, **{k: v for k, v in options.items() if k in accepted})

    return call


_FUNCTIONS: dict[str, Callable[..., Tensor]] = {
    "iou": iou,
    "pointing_game": pointing_game,
    "delta_density": delta_density,
    "average_precision": average_precision,
    "saliency_precision": saliency_precision,
    "saliency_recall": saliency_recall,
}
_OPTIONS = frozenset(p for f in _FUNCTIONS.values() for p in inspect.signature(f).parameters) - {
    "maps",
    "mask",
}


def _check_options(options: Mapping[str, object]) -> None:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise TypeError(f"unknown alignment option(s) {unknown}; known options: {sorted(_OPTIONS)}")


ALIGNMENT_METRICS: dict[str, Callable[..., Tensor]] = {
    name: _uniform(fn) for name, fn in _FUNCTIONS.items()
}
"""Metric name -> ``f(maps, mask, **options) -> (B,)``. Options (``tau``, ``denominator``,
``tolerance``, ``strict``, ``combine``, ``mass``) go to the metrics that take them; an
option no metric takes is a TypeError."""

EA_NAMES: dict[str, str] = {"iou": "EA_IoU", "pointing_game": "EA_PG"}
"""Explanation Alignment's names for the dataset means of IoU and the pointing game."""


def alignment_scores(
    maps: Tensor,
    masks: Mapping[str, Tensor],
    tau: Tau = 0.5,
    tolerance: float = 0,
    **options: object,
) -> dict[str, dict[str, Tensor]]:
    """Every alignment metric for every named region: ``{region: {metric: (B,)}}``.

    ``masks`` maps region names to ``(B, H, W)`` masks, e.g. ``{"fg": m, "bg": ~m,
    "spurious": patch}``. The min-max map, the argmax, the descending sort (for AP) and the
    75%-mass binarisation do not depend on the region, so they are computed once per batch.
    ``options`` are the named variants (``denominator``, ``strict``, ``combine``, ``mass``).
    Values equal the single-metric functions exactly.
    """
    _check_options({"tau": tau, "tolerance": tolerance, **options})
    denominator = options.get("denominator", "union")
    strict = bool(options.get("strict", False))
    ties = str(options.get("ties", "first"))
    combine = options.get("combine", "difference")
    mass = options.get("mass", 0.75)

    raw = _raw(maps)
    s, flat = minmax(maps)
    b_tau = _binarize(s, flat, tau)
    b_mass = _mass_binarize(s, mass)
    desc, order = _sort_desc(s)
    out: dict[str, dict[str, Tensor]] = {}
    for region, mask in masks.items():  # a handful of named regions, not images or pixels
        m = _bool_mask(mask, s)
        out[region] = {
            "iou": _iou(b_tau, m, flat, denominator, s.dtype),
            "pointing_game": _pointing(raw, m, flat, tolerance, strict, s.dtype, ties),
            "delta_density": _density(s, m, flat, combine),
            "average_precision": _ap_from_sorted(desc, order, m, flat),
            "saliency_precision": _precision(s, m, flat),
            "saliency_recall": _recall(b_mass, m, flat, s.dtype),
        }
    return out


# -------------------------------------------------------------------------- aggregation


def explanation_alignment(
    frame: pd.DataFrame,
    by: str | Iterable[str] = ("method", "region"),
    metrics: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Dataset means of per-image alignment per group (Explanation Alignment §3.4, eq. 3).

    ``EA_A = (1/N) Σ_i A_i``: ``EA_IoU`` and ``EA_PG`` for IoU and the pointing game, and
    ``EA_<metric>`` for every other metric column present (delta_density,
    average_precision, saliency_precision, saliency_recall). Means skip NaN (flat maps,
    empty regions); ``n_<metric>`` counts the values that entered each mean and
    ``n_images`` the rows of the group.

    Args:
        frame: long per-image table with the ``by`` columns and metric columns named as in
            :data:`ALIGNMENT_METRICS`.
        by: grouping column(s), e.g. ``("model", "method", "region")``.
        metrics: metric columns to aggregate; default every ``ALIGNMENT_METRICS`` column
            present in ``frame``.

    Returns:
        One row per group (sorted by ``by``): ``by`` columns, ``n_images``, then per metric
        its ``EA_*`` mean and ``n_*`` count.
    """
    keys = [by] if isinstance(by, str) else list(by)
    missing = [c for c in keys if c not in frame.columns]
    if missing:
        raise KeyError(f"grouping column(s) {missing} not in the frame {list(frame.columns)}")
    if metrics is None:
        names = [c for c in ALIGNMENT_METRICS if c in frame.columns]
    else:
        names = list(metrics)
        absent = [c for c in names if c not in frame.columns]
        if absent:
            raise KeyError(f"metric column(s) {absent} not in the frame {list(frame.columns)}")
    if not names:
        raise ValueError(
            f"the frame has no alignment metric columns (expected some of "
            f"{list(ALIGNMENT_METRICS)}), got {list(frame.columns)}"
        )
    values = frame[keys].copy()
    for name in names:
        values[name] = pd.to_numeric(frame[name], errors="raise").astype(float)
    grouped = values.groupby(keys, dropna=False, sort=True)
    means = grouped[names].mean()
    counts = grouped[names].count()
    out = pd.DataFrame({"n_images": grouped.size()})
    for name in names:
        out[EA_NAMES.get(name, f"EA_{name}")] = means[name]
        out[f"n_{name}"] = counts[name].astype(int)
    return out.reset_index()


def rank_spurious_candidates(
    frame: pd.DataFrame, metric: str = "delta_density", k: int = 20
) -> pd.DataFrame:
    """The ``k`` images with the lowest ``metric``: spurious-feature candidates.

    RIVAL10 §4.3 / appendix Fig. 20 sorts images by Δ Densities and inspects the lowest
    (most saliency outside the object: water for ships, branches for birds); Explanation
    Alignment uses low alignment the same way. Rows with a NaN metric are dropped; ties are
    broken by ``image_id`` (ascending). Filter ``frame`` to one model/method/region first
    if it holds several.

    Returns:
        The selected rows, lowest first, with a 1-based ``rank`` column in front.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    for col in (metric, "image_id"):
        if col not in frame.columns:
            raise KeyError(f"column {col!r} not in the frame {list(frame.columns)}")
    valid = frame[frame[metric].notna()]
    ranked = valid.sort_values([metric, "image_id"], kind="mergesort").head(k)
    ranked = ranked.reset_index(drop=True)
    ranked.insert(0, "rank", range(1, len(ranked) + 1))
    return ranked
