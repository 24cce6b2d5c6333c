"""Which logged numbers are breakdowns, and where breakdowns go instead of MLflow scalars.

A run used to log 150–350 scalars (every metric per class, per body part, per correct/error
split, per confidence bin, per pair of methods), which made the MLflow UI's metric list and
charts unusable. Every stage now logs the headline numbers as scalars — per method the mean
of each metric on the whole region (``fg``) and the A_fg correct/error split the SAGE paper
compares — and writes the breakdowns to a CSV table beside its other artifacts (explain:
``breakdowns.csv``; the training callback: ``val_sage/breakdowns.csv``, every probe epoch;
the grid cells: ``clusters/pooled.csv``). ``tracking.breakdowns=true`` logs them as scalars
too (the callback: ``callbacks.sage.breakdowns=true``).

A key ``<stage>/<...>`` is a breakdown when one of its segments is

- ``c<k>``: one class;
- ``bin<k>``: one confidence bin of the grid's clustering;
- a named part of the dataset (``head``, ``spurious``, ...; any region but ``fg``, ``bg`` and
  the ground-truth ``discriminative`` region);
- ``correct`` / ``error`` of a metric other than ``fg_mass`` (the split the paper reports);
- ``agreement`` (one pair of methods), or a model-randomisation step (``mprt``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from pathlib import Path

import pandas as pd

# regions that are the headline of an alignment metric, never a breakdown
HEADLINE_REGIONS = frozenset({"fg", "bg", "discriminative"})
_ONE_OF_MANY = re.compile(r"c\d+|bin\d+")
_SPLITS = frozenset({"correct", "error"})
_GROUPS = frozenset({"agreement", "mprt"})


def is_breakdown(key: str, parts: Collection[str] = ()) -> bool:
    """Whether ``key`` (``<stage>/...``) breaks a headline number down (module docstring);
    ``parts`` are the dataset's named part regions."""
    segments = key.split("/")[1:]  # the stage prefix is never a breakdown
    named = set(parts) - HEADLINE_REGIONS
    for i, segment in enumerate(segments):
        if _ONE_OF_MANY.fullmatch(segment) or segment in named or segment in _GROUPS:
            return True
        if segment in _SPLITS and (i == 0 or segments[i - 1] != "fg_mass"):
            return True
    return False


def split_breakdowns(
    metrics: Mapping[str, float], parts: Collection[str] = ()
) -> tuple[dict[str, float], dict[str, float]]:
    """``(headline, breakdowns)`` of ``metrics`` by :func:`is_breakdown`."""
    headline, breakdowns = {}, {}
    for key, value in metrics.items():
        (breakdowns if is_breakdown(key, parts) else headline)[key] = value
    return headline, breakdowns


def write_breakdowns(path: Path, breakdowns: Mapping[str, float], **columns: object) -> Path:
    """Write ``breakdowns`` as a long table ``[columns...,] key, value`` to ``path``."""
    frame = pd.DataFrame({"key": list(breakdowns), "value": list(breakdowns.values())})
    for name, value in reversed(columns.items()):
        frame.insert(0, name, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
