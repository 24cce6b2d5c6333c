"""Timing helpers shared by the benchmarks (ratios measured in one run).

The machine is assumed noisy (2 shared CPU cores): background load only ever *adds* time, so
every benchmark reports the fastest repeat of each step (the least disturbed measurement) next
to the median, and compares steps measured *interleaved* — step A, step B, step A, step B, ... —
so a burst of load hits both sides of a ratio instead of deciding it.

- :func:`timed`: repeats of one step (the simplest benchmarks).
- :func:`interleaved`: several steps, round-robin within each repeat, after a warm-up; cheap
  steps are called several times per sample (calibrated in the warm-up) so a sample is never
  shorter than the clock and the scheduler can resolve.
- :func:`ratio`: min / median ratios of two steps' per-image costs.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

__all__ = ["Timing", "interleaved", "ratio", "sync", "timed"]


def sync(device: torch.device | str | None) -> None:
    """Wait for queued GPU work, so a timer measures the work and not its launch."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    """Seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


@dataclass
class Timing:
    """Seconds per call of one step, one sample per repeat; ``images`` processed per call."""

    seconds: list[float]
    images: int
    calls_per_sample: int = 1

    @property
    def min(self) -> float:
        return min(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def per_image(self) -> dict[str, float]:
        """``{"min", "median"}`` seconds per image."""
        return {"min": self.min / self.images, "median": self.median / self.images}

    def to_dict(self) -> dict[str, object]:
        return {
            "images": self.images,
            "calls_per_sample": self.calls_per_sample,
            "seconds_per_call": self.seconds,
            "per_image_s": self.per_image(),
        }


def _once(fn: Callable[[], object], device: torch.device | str | None) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def interleaved(
    steps: Mapping[str, tuple[Callable[[], object], int]],
    repeats: int,
    warmup: int = 1,
    min_time: float = 0.05,
    device: torch.device | str | None = None,
    budget: float = 0.0,
    max_repeats: int | None = None,
) -> dict[str, Timing]:
    """Time ``steps`` (``name -> (fn, images per call)``) round-robin, ``repeats`` times or more.

    Each step is first called ``warmup`` times (one-off costs: allocator, caches, lazy
    imports); the slowest warm-up call sets how many calls make one sample
    (``ceil(min_time / t)``, at least 1), so millisecond steps are summed over enough calls to
    rise above timer and scheduler resolution. The order of the steps rotates by one every
    repeat, so no step always runs right after the same neighbour.

    Cheap groups get more repeats: after ``repeats`` rounds, rounds continue while the timed
    rounds have taken less than ``budget`` seconds, up to ``max_repeats`` (default
    ``5 × repeats``) — more chances for the fastest repeat to be an undisturbed one, at a
    bounded cost; groups whose rounds take longer than ``budget`` run exactly ``repeats``.

    Returns:
        ``name -> Timing`` with one seconds-per-call sample per repeat.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    names = list(steps)
    calls: dict[str, int] = {}
    for name in names:
        fn = steps[name][0]
        first = [_once(fn, device) for _ in range(max(warmup, 1))]
        calls[name] = max(1, math.ceil(min_time / max(min(first), 1e-9)))
    samples: dict[str, list[float]] = {n: [] for n in names}
    cap = max(repeats, max_repeats if max_repeats is not None else 5 * repeats)
    started = time.perf_counter()
    r = 0
    while r < repeats or (r < cap and time.perf_counter() - started < budget):
        shift = r % len(names)
        r += 1
        for name in names[shift:] + names[:shift]:
            fn, n = steps[name][0], calls[name]
            sync(device)
            start = time.perf_counter()
            for _ in range(n):
                fn()
            sync(device)
            samples[name].append((time.perf_counter() - start) / n)
    return {n: Timing(samples[n], steps[n][1], calls[n]) for n in names}


def ratio(a: Timing, b: Timing) -> dict[str, float]:
    """Per-image cost of ``a`` over ``b``: ratio of the fastest repeats and of the medians."""
    pa, pb = a.per_image(), b.per_image()
    return {"min": pa["min"] / pb["min"], "median": pa["median"] / pb["median"]}
