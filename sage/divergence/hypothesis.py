"""The SAGE hypothesis, tested: does behavioural divergence track saliency divergence?

SAGE (abstract, §6) hypothesises that "behavioral divergence between models is proportional
to divergence in their saliency embeddings". Here that is a correlation between a behavioural
divergence per image (JS between predictive distributions, or disagreement) and a saliency
divergence per image (JS between S̃ maps, 1 − SSIM, token distances, ...):

- Spearman ρ (ranks, ties averaged as ``scipy.stats.spearmanr``) and Pearson r;
- two-sided p-values from the usual t approximation ``t = r·√((n−2)/(1−r²))``, n − 2 d.o.f.
  (what scipy reports for both);
- percentile bootstrap intervals at level 1 − α: images are resampled with replacement
  ``n_boot`` times from a seeded ``numpy.random.Generator``; all resamples are one index
  matrix ``(n_boot, n)`` and every correlation of every measure is computed on it at once
  (in row chunks that bound memory), not in a Python loop over resamples. Resamples on which
  the correlation is undefined (a constant side) are left out and counted; with fewer than
  half of them defined the interval is NaN rather than conditional on the rare non-constant
  draws;
- partial Spearman correlations ``ρ(x, y | z)`` (from the three rank correlations) to
  separate the foreground and background parts of a saliency divergence;
- correlations *across model pairs* (three or more models): of the pairs' mean divergences,
  and pooled over every (pair, image), both bootstrapped by resampling images (the same
  images for every pair, so the pairs' dependence through shared images is kept).

The verdict follows from the numbers: **supported at α** when the lower end of the 1 − α
bootstrap interval of Spearman ρ is above 0 (a positive association, the direction the
hypothesis states), **not supported** otherwise, and **undefined** when a side does not vary
— identical models have no behavioural divergence, so there is nothing to correlate and no
number is reported rather than a spurious one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "across_pairs",
    "bootstrap_indices",
    "correlate",
    "partial_spearman",
    "pearson_rows",
    "spearman_rows",
    "verdict",
]

# Upper bound on the elements of one bootstrap chunk (x and every measure), ~0.5 GB in float64.
_CHUNK_ELEMENTS = 60_000_000
# JS (bits) below this is rounding, not divergence: identical models must not yield tiny noise
# that a rank correlation would happily turn into a "result".
NOISE_FLOOR = 1e-9


def bootstrap_indices(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """``(n_boot, n)`` resampling indices (with replacement)."""
    return rng.integers(0, n, size=(n_boot, n))


def pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pearson r along the last axis (broadcasting); NaN where either side is constant."""
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    const = (np.ptp(x, axis=-1) == 0) | (np.ptp(y, axis=-1) == 0)
    xc = x - x.mean(-1, keepdims=True)
    yc = y - y.mean(-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(-1) * (yc * yc).sum(-1))
    r = (xc * yc).sum(-1) / np.where(const | (den == 0), 1.0, den)
    return np.where(const | (den == 0), np.nan, np.clip(r, -1, 1))


def spearman_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Spearman ρ along the last axis: Pearson r of average ranks; NaN for a constant side."""
    x, y = np.broadcast_arrays(np.asarray(x, np.float64), np.asarray(y, np.float64))
    return pearson_rows(stats.rankdata(x, axis=-1), stats.rankdata(y, axis=-1))


_CORR: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "spearman": spearman_rows,
    "pearson": pearson_rows,
}


def _p_value(r: np.ndarray, n: int) -> np.ndarray:
    r = np.asarray(r, np.float64)
    if n < 3:
        return np.full_like(r, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = r * np.sqrt((n - 2) / np.clip(1 - r * r, 1e-300, None))
    return np.where(np.isfinite(r), 2 * stats.t.sf(np.abs(t), n - 2), np.nan)


def _interval(boot: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile interval per column of ``boot`` (n_boot, m); NaN if < half are defined."""
    valid = np.isfinite(boot).sum(0)
    ok = valid >= max(1, boot.shape[0] / 2)
    lo = np.full(boot.shape[1], np.nan)
    hi = np.full(boot.shape[1], np.nan)
    for j in np.flatnonzero(ok):  # per measure; the resamples themselves are vectorised
        col = boot[:, j][np.isfinite(boot[:, j])]
        lo[j], hi[j] = np.quantile(col, [alpha / 2, 1 - alpha / 2])
    return lo, hi, valid / max(boot.shape[0], 1)


def _chunks(n_boot: int, per_row: int) -> list[slice]:
    step = max(1, _CHUNK_ELEMENTS // max(per_row, 1))
    return [slice(s, min(s + step, n_boot)) for s in range(0, n_boot, step)]


def _status(x: np.ndarray, y: np.ndarray) -> str:
    if len(x) < 3:
        return "undefined: fewer than 3 images"
    if np.ptp(x) == 0:
        return "undefined: no behavioural divergence"
    if np.ptp(y) == 0:
        return "undefined: no saliency divergence"
    return "ok"


def _floor(x: np.ndarray, floor: float) -> np.ndarray:
    return np.where(np.abs(x) < floor, 0.0, x)


def correlate(
    x: np.ndarray,
    measures: Mapping[str, np.ndarray],
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
    noise_floor: float = NOISE_FLOOR,
) -> pd.DataFrame:
    """Spearman and Pearson correlation of ``x`` with every measure, with bootstrap CIs.

    Args:
        x: behavioural divergence per image ``(n,)``.
        measures: name -> saliency divergence per image ``(n,)``; NaN marks images where the
            measure is undefined (each measure uses the images where it and ``x`` are finite).
        n_boot: bootstrap resamples (0: no intervals).
        alpha: the intervals have level ``1 − alpha``.
        rng: seeded generator (default ``default_rng(0)``).
        noise_floor: absolute values below it count as 0 (rounding, not divergence).

    Returns:
        One row per measure: ``measure``, ``n``, ``status`` ("ok" or why undefined), then for
        ``spearman`` and ``pearson``: the estimate, ``_lo``, ``_hi``, ``_p`` and ``_boot_valid``
        (share of defined resamples).
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    x = _floor(np.asarray(x, np.float64), noise_floor)
    names = list(measures)
    ys = {k: _floor(np.asarray(v, np.float64), noise_floor) for k, v in measures.items()}
    rows: dict[str, dict] = {}
    # Measures defined on the same images share one index matrix.
    groups: dict[bytes, list[str]] = {}
    for name in names:
        if ys[name].shape != x.shape:
            raise ValueError(f"measure {name!r} has shape {ys[name].shape}, x has {x.shape}")
        ok = np.isfinite(x) & np.isfinite(ys[name])
        groups.setdefault(ok.tobytes(), []).append(name)
    for members in groups.values():
        ok = np.isfinite(x) & np.isfinite(ys[members[0]])
        xs = x[ok]
        ymat = np.stack([ys[m][ok] for m in members])  # (m, n)
        n = len(xs)
        idx = bootstrap_indices(n, n_boot, rng) if n_boot > 0 and n >= 3 else None
        for kind, fn in _CORR.items():
            est = fn(xs[None, :], ymat) if n >= 3 else np.full(len(members), np.nan)
            if idx is not None:
                # every resample of every measure at once: (chunk, m, n) after the gather
                boot = np.concatenate(
                    [
                        fn(xs[idx[c]][:, None, :], ymat[:, idx[c]].transpose(1, 0, 2))
                        for c in _chunks(n_boot, n * (len(members) + 1))
                    ]
                )
                lo, hi, valid = _interval(boot, alpha)
            else:
                lo = hi = np.full(len(members), np.nan)
                valid = np.zeros(len(members))
            p = _p_value(est, n)
            for j, m in enumerate(members):
                row = rows.setdefault(m, {"measure": m, "n": n, "status": _status(xs, ymat[j])})
                row |= {
                    kind: est[j],
                    f"{kind}_lo": lo[j],
                    f"{kind}_hi": hi[j],
                    f"{kind}_p": p[j],
                    f"{kind}_boot_valid": valid[j],
                }
    return pd.DataFrame([rows[m] for m in names])


def _partial(rxy: np.ndarray, rxz: np.ndarray, ryz: np.ndarray) -> np.ndarray:
    den = np.sqrt((1 - rxz**2) * (1 - ryz**2))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = (rxy - rxz * ryz) / den
    return np.where(den > 0, np.clip(r, -1, 1), np.nan)


def partial_spearman(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
) -> dict[str, float]:
    """Partial Spearman ``ρ(x, y | z)`` with a bootstrap interval (finite rows only).

    E.g. x = JS(pred), y = foreground part of JS(S̃), z = background part: how much the
    foreground divergence tracks behaviour beyond what the background divergence explains.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    x, y, z = (np.asarray(v, np.float64) for v in (x, y, z))
    ok = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    x, y, z = x[ok], y[ok], z[ok]
    n = len(x)

    def estimate(xs: np.ndarray, ys: np.ndarray, zs: np.ndarray) -> np.ndarray:
        return _partial(spearman_rows(xs, ys), spearman_rows(xs, zs), spearman_rows(ys, zs))

    if n < 4:
        return {"n": n, "estimate": np.nan, "lo": np.nan, "hi": np.nan}
    est = float(estimate(x, y, z))
    lo = hi = np.nan
    if n_boot > 0:
        idx = bootstrap_indices(n, n_boot, rng)
        boot = np.concatenate(
            [estimate(x[idx[c]], y[idx[c]], z[idx[c]]) for c in _chunks(n_boot, 3 * n)]
        )
        lo_a, hi_a, _ = _interval(boot[:, None], alpha)
        lo, hi = float(lo_a[0]), float(hi_a[0])
    return {"n": n, "estimate": est, "lo": lo, "hi": hi}


def across_pairs(
    x: np.ndarray,
    y: np.ndarray,
    *,
    n_boot: int = 1000,
    alpha: float = 0.05,
    rng: np.random.Generator | None = None,
    noise_floor: float = NOISE_FLOOR,
) -> pd.DataFrame:
    """Correlation across model pairs, bootstrapped over images.

    Args:
        x, y: ``(n_images, n_pairs)`` behavioural and saliency divergence of every pair on the
            same images (rows with a NaN in any pair are left out).

    Returns:
        Two rows: ``level = "pair_means"`` (correlation of the pairs' mean divergences, one
        point per pair; needs ≥ 3 pairs) and ``level = "pooled"`` (over every (image, pair)).
        Columns as :func:`correlate` plus ``n_pairs``.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    x = _floor(np.asarray(x, np.float64), noise_floor)
    y = _floor(np.asarray(y, np.float64), noise_floor)
    ok = np.isfinite(x).all(1) & np.isfinite(y).all(1)
    x, y = x[ok], y[ok]
    n, n_pairs = x.shape
    idx = bootstrap_indices(n, n_boot, rng) if n_boot > 0 and n >= 3 else None
    levels = {
        "pair_means": (lambda a: a.mean(-2), n_pairs),
        "pooled": (lambda a: a.reshape(*a.shape[:-2], -1), n * n_pairs),
    }
    rows = []
    for level, (reduce, points) in levels.items():
        row: dict = {"level": level, "n": points, "n_images": n, "n_pairs": n_pairs}
        xr, yr = reduce(x), reduce(y)
        row["status"] = _status(xr, yr) if points >= 3 else "undefined: fewer than 3 points"
        for kind, fn in _CORR.items():
            est = float(fn(xr, yr)) if points >= 3 else np.nan
            lo = hi = np.nan
            valid = 0.0
            if idx is not None and points >= 3:
                boot = np.concatenate(
                    [
                        fn(reduce(x[idx[c]]), reduce(y[idx[c]]))
                        for c in _chunks(n_boot, 2 * n * n_pairs)
                    ]
                )
                lo_a, hi_a, valid_a = _interval(boot[:, None], alpha)
                lo, hi, valid = float(lo_a[0]), float(hi_a[0]), float(valid_a[0])
            row |= {
                kind: est,
                f"{kind}_lo": lo,
                f"{kind}_hi": hi,
                f"{kind}_p": float(_p_value(np.asarray(est), points)),
                f"{kind}_boot_valid": valid,
            }
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(
    row: Mapping[str, object],
    alpha: float,
    x_name: str = "JS(pred)",
    y_name: str = "JS(S̃)",
    unit: str = "images",
) -> tuple[str, str]:
    """``(status, line)`` for one correlation row (:func:`correlate` / :func:`across_pairs`).

    ``status`` is ``supported``, ``not supported`` or ``undefined``; the line states it with
    the numbers it follows from, e.g. ``supported at α=0.05: Spearman ρ=0.41 [0.30, 0.52]
    between JS(pred) and JS(S̃) over 160 images``. An interval entirely below 0 is still
    "not supported", and the line says the association runs the other way.
    """
    n = int(row["n"])
    status = str(row["status"])
    if status != "ok":
        reason = status.removeprefix("undefined: ")
        return "undefined", f"undefined: {reason} ({x_name} vs {y_name} over {n} {unit})"
    rho, lo, hi = (float(row[k]) for k in ("spearman", "spearman_lo", "spearman_hi"))
    if not np.isfinite(lo):
        return "undefined", (
            f"undefined: no bootstrap interval (Spearman ρ={rho:.2f} between {x_name} and "
            f"{y_name} over {n} {unit}; too few defined resamples or bootstrap=0)"
        )
    outcome = "supported" if lo > 0 else "not supported"
    line = (
        f"{outcome} at α={alpha:g}: Spearman ρ={rho:.2f} [{lo:.2f}, {hi:.2f}] between "
        f"{x_name} and {y_name} over {n} {unit}"
    )
    if hi < 0:  # significant, but against the hypothesis: worth saying in words
        line += " (the whole interval is below 0: they move in opposite directions)"
    return outcome, line
