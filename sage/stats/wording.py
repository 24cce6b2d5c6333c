"""What a finding may say about a difference, given its interval.

A direction ("higher", "drops") is stated only when the 95 % interval of the difference
excludes 0; otherwise the finding says "no clear difference" and gives the interval, so the
wording cannot flip with noise that the interval already covers.
"""

from __future__ import annotations

from .intervals import Interval


def direction_word(diff: Interval, more: str = "higher", less: str = "lower") -> str:
    """``more`` / ``less`` when the interval of ``diff`` lies above / below 0, else
    ``"no clear difference"``."""
    return {1: more, -1: less, 0: "no clear difference"}[diff.sign]


def compare_phrase(
    diff: Interval,
    more: str = "higher by",
    less: str = "lower by",
    none: str = "no clear difference",
    digits: int = 2,
) -> str:
    """How a finding states ``diff`` (first minus second): ``"higher by 0.31 [0.20, 0.42]"``
    (the size of the difference with its interval) when the interval lies above 0,
    ``"lower by ..."`` below, else ``"no clear difference (difference −0.02 [−0.10, +0.06])"``.
    """
    if diff.n == 0 or not (diff.finite or diff.n == 1):
        return f"cannot be compared ({diff.n} paired values)"
    if diff.sign == 0:
        return f"{none} (difference {diff.text(digits, signed=True)})"
    low, high = sorted((abs(diff.low), abs(diff.high)))
    word = more if diff.sign > 0 else less
    return f"{word} {abs(diff.value):.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"
