"""Compare two token tables: patch KL and Spearman of cell masses per image (docs/metrics.md §3).

Use it for the same images under two conditions — two variants (``full`` vs ``seg``), two
models, or two explain runs::

    python -m sage.saliency.compare A/tokens.parquet B/tokens.parquet --out cmp.csv \\
        [--method gradcam] [--method-b gradcam]

Images are joined on ``image_id`` (stable across variants), grid and region.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pandas as pd

from .token_analysis import compare_tables


def read_tokens(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"error: token table {path} does not exist")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)


def method_agreement(tokens: pd.DataFrame) -> pd.DataFrame:
    """Patch KL and Spearman between every pair of methods in one explain token table."""
    methods = list(dict.fromkeys(tokens["method"]))
    rows = []
    for a, b in itertools.combinations(methods, 2):
        cmp = compare_tables(tokens[tokens.method == a], tokens[tokens.method == b])
        rows.append(cmp.assign(method_a=a, method_b=b))
    return pd.concat(rows, ignore_index=True) if rows else pd.DataFrame()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("a", help="token table (tokens.parquet or tokens.csv) of condition A")
    parser.add_argument("b", help="token table of condition B")
    parser.add_argument(
        "--out", required=True, help="CSV to write (one row per image, grid, region)"
    )
    parser.add_argument(
        "--method", help="method of table A to compare (default: every method in both)"
    )
    parser.add_argument("--method-b", help="method of table B (default: same as --method)")
    args = parser.parse_args(argv)
    a, b = read_tokens(args.a), read_tokens(args.b)
    pairs = (
        [(args.method, args.method_b or args.method)]
        if args.method
        else [(m, m) for m in dict.fromkeys(a["method"]) if m in set(b["method"])]
    )
    if not pairs:
        raise SystemExit("error: the two tables share no method; pass --method and --method-b")
    frames = []
    for ma, mb in pairs:
        cmp = compare_tables(a[a.method == ma], b[b.method == mb])
        frames.append(cmp.assign(method_a=ma, method_b=mb))
    out = pd.concat(frames, ignore_index=True)
    out.to_csv(args.out, index=False)
    summary = out.groupby(["method_a", "method_b", "grid", "region"])[
        ["patch_kl", "spearman"]
    ].mean()
    print(summary.to_string())


if __name__ == "__main__":
    main()
