"""Uncertainty for the study's numbers: intervals (bootstrap over images, t over seeds) and
the wording a finding may use given its interval."""

from .intervals import (
    Interval,
    difference_interval,
    mean_interval,
    seed_interval,
    statistic_interval,
)
from .wording import compare_phrase, direction_word

__all__ = [
    "Interval",
    "compare_phrase",
    "difference_interval",
    "direction_word",
    "mean_interval",
    "seed_interval",
    "statistic_interval",
]
