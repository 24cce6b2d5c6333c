"""95 % intervals for the study's numbers: bootstrap over test images, t over seeds.

Every number that enters a finding is an :class:`Interval`. Within one training seed the
uncertainty is the test set's: a percentile bootstrap over test images (``scipy.stats.
bootstrap``; images resampled with replacement, paired when two numbers come from the same
images, so a difference between two models on the same images keeps their correlation).
Across seeds (``study.seeds`` with several values) it is the seeds': mean ± t·sd/√n, the
spread of whole trainings, which includes the test set's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

LEVEL = 0.95
N_BOOT = 2000


@dataclass(frozen=True)
class Interval:
    """A number with its interval: ``value`` in [``low``, ``high``] at ``level``, from ``n``
    items (images or seeds) by ``method`` (``bootstrap`` or ``seeds``)."""

    value: float
    low: float
    high: float
    n: int
    method: str
    level: float = LEVEL

    @property
    def finite(self) -> bool:
        return all(math.isfinite(v) for v in (self.value, self.low, self.high))

    @property
    def sign(self) -> int:
        """+1 / −1 when the whole interval is above / below 0; 0 when it holds 0 (or is
        unknown): the direction a finding may state."""
        if not self.finite:
            return 0
        return 1 if self.low > 0 else -1 if self.high < 0 else 0

    def text(self, digits: int = 2, signed: bool = False) -> str:
        """``0.70 [0.62, 0.78]`` (``signed``: ``+0.31 [+0.20, +0.42]``)."""
        if not math.isfinite(self.value):
            return "n/a"
        f = f"{{:+.{digits}f}}" if signed else f"{{:.{digits}f}}"
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return f"{f.format(self.value)} [no interval]"
        return f"{f.format(self.value)} [{f.format(self.low)}, {f.format(self.high)}]"

    def as_dict(self) -> dict:
        return asdict(self)


def _clean(arrays: Sequence[np.ndarray], paired: bool) -> list[np.ndarray]:
    arrays = [np.asarray(a, dtype=np.float64).ravel() for a in arrays]
    if paired:
        if len({len(a) for a in arrays}) > 1:
            raise ValueError(f"paired samples differ in length: {[len(a) for a in arrays]}")
        keep = np.logical_and.reduce([np.isfinite(a) for a in arrays])
        return [a[keep] for a in arrays]
    return [a[np.isfinite(a)] for a in arrays]


def statistic_interval(
    statistic: Callable[..., np.ndarray | float],
    samples: Sequence[np.ndarray],
    *,
    paired: bool = True,
    level: float = LEVEL,
    n_boot: int = N_BOOT,
    seed: int = 0,
) -> Interval:
    """``statistic(*samples)`` with its percentile-bootstrap interval.

    ``statistic`` must be vectorised: called with arrays of shape ``(..., n)`` it reduces the
    last axis. ``paired``: the samples are aligned item by item (the same images) and are
    resampled together; otherwise each is resampled on its own. Non-finite entries are
    dropped (in paired samples, the whole item). Fewer than 2 items: the value without an
    interval (NaN bounds).
    """
    samples = _clean(samples, paired)
    n = min(len(s) for s in samples)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, "bootstrap", level)
    value = float(statistic(*samples))
    if n < 2 or all(np.ptp(s) == 0 for s in samples):  # nothing varies: the interval is the point
        low = high = value if n >= 2 else math.nan
        return Interval(value, low, high, n, "bootstrap", level)
    res = stats.bootstrap(
        tuple(samples),
        lambda *s, axis=-1: statistic(*(np.moveaxis(x, axis, -1) for x in s)),
        paired=paired,
        vectorized=True,
        n_resamples=n_boot,
        confidence_level=level,
        method="percentile",
        random_state=np.random.default_rng(seed),
    )
    ci = res.confidence_interval
    return Interval(value, float(ci.low), float(ci.high), n, "bootstrap", level)


def _mean(x: np.ndarray) -> np.ndarray:
    return np.mean(x, axis=-1)


def _mean_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.mean(a, axis=-1) - np.mean(b, axis=-1)


def mean_interval(values: np.ndarray, **kwargs) -> Interval:
    """The mean of ``values`` (one per image) with its bootstrap interval."""
    return statistic_interval(_mean, [values], **kwargs)


def difference_interval(a: np.ndarray, b: np.ndarray, *, paired: bool, **kwargs) -> Interval:
    """mean(a) − mean(b) with its bootstrap interval; ``paired``: a[i] and b[i] come from the
    same image (two models, or one model on two versions of the image)."""
    return statistic_interval(_mean_difference, [a, b], paired=paired, **kwargs)


def seed_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """Mean over seeds ± the t interval (``t_{(1+level)/2, n−1}·sd/√n``); one seed: no
    interval (NaN bounds) — use the within-seed bootstrap then."""
    x = np.asarray([v for v in values if math.isfinite(v)], dtype=np.float64)
    n = len(x)
    if n == 0:
        return Interval(math.nan, math.nan, math.nan, 0, "seeds", level)
    mean = float(x.mean())
    if n == 1:
        return Interval(mean, math.nan, math.nan, 1, "seeds", level)
    half = float(stats.t.ppf((1 + level) / 2, n - 1) * x.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n, "seeds", level)
