"""Compare two studies' findings: do their stated directions agree?

``python -m sage.study.compare A/findings.json B/findings.json`` (each study writes
``findings.json`` beside its report) prints one row per finding with both differences and
intervals and whether the directions agree: ``same`` (both state the same direction, or both
"no clear difference"), ``one-sided`` (one states a direction, the other's interval holds 0:
no contradiction, less certainty) or ``OPPOSITE`` (the two runs state opposite directions).
Exit status 1 when any finding is opposite.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from ..errors import SageError
from ..evaluation.grid import markdown_table
from ..stats import Interval


def _load(path: Path) -> dict[str, dict]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise SageError(f"cannot read findings from {path}: {err}") from err
    return {f["key"]: f for f in data.get("findings", [])}


def _text(f: dict | None) -> str:
    if f is None or f.get("diff") is None:
        return "–"
    diff = Interval(**f["diff"])
    return diff.text(3 if abs(diff.value) < 0.1 else 2, signed=True)


def agreement(a: int, b: int) -> str:
    """``same`` / ``one-sided`` / ``OPPOSITE`` for two stated directions (−1, 0, +1)."""
    if a == b:
        return "same"
    return "OPPOSITE" if a * b < 0 else "one-sided"


def compare_findings(a: Path, b: Path) -> pd.DataFrame:
    """One row per finding in either file: both differences and their agreement."""
    fa, fb = _load(a), _load(b)
    rows = []
    for key in dict.fromkeys([*fa, *fb]):
        x, y = fa.get(key), fb.get(key)
        rows.append(
            {
                "finding": key,
                "A": _text(x),
                "B": _text(y),
                "agree": (
                    "missing"
                    if not (x and y)
                    else "n/a (no interval)"
                    if x.get("diff") is None or y.get("diff") is None
                    else agreement(x["direction"], y["direction"])
                ),
            }
        )
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path, help="findings.json of the first study")
    ap.add_argument("b", type=Path, help="findings.json of the second study")
    args = ap.parse_args(argv)
    try:
        table = compare_findings(args.a, args.b)
    except SageError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown_table(table.set_index("finding"), "{}", "finding"))
    counts = table["agree"].value_counts().to_dict()
    print("\n" + ", ".join(f"{n} {k}" for k, n in counts.items()))
    return 1 if counts.get("OPPOSITE") else 0


if __name__ == "__main__":
    sys.exit(main())
