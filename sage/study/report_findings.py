"""The report's first screen and its findings section: headline findings, each with its
number, interval and a figure of the two sides and their difference; then every finding,
with a forest plot of all differences."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from ..plots.intervals import finding_panel, forest


def _how(findings: dict[str, Any]) -> str:
    seeds = findings.get("seeds") or []
    if len(seeds) > 1:
        return (
            f"Numbers are means over {len(seeds)} training seeds ({', '.join(map(str, seeds))}) "
            "with 95 % t intervals over the seeds."
        )
    return (
        f"One training seed ({seeds[0] if seeds else '?'}); [low, high] is the 95 % bootstrap "
        "interval over test images (paired where two numbers come from the same images). "
        "Run with several <code>study.seeds</code> for intervals over trainings."
    )


def headline_section(page, findings: dict[str, Any], work: Path) -> None:
    """3–5 headline findings in plain language, each with the figure that shows it."""
    by_key = {f.key: f for f in findings["findings"]}
    page.h("Headline findings")
    page.p(
        _how(findings) + " A finding states a direction only when the interval of the "
        "difference excludes 0; otherwise it says <em>no clear difference</em>."
    )
    for k, head in enumerate(findings.get("headlines") or [], 1):
        f = by_key[head["key"]]
        page.parts.append(
            f"<h3>{k}. {html.escape(head['title'])}</h3><p>{html.escape(head['text'])}</p>"
        )
        if f.diff is not None and f.a is not None and f.b is not None:
            path = finding_panel(
                f.a, f.b, f.diff, f.labels, head["title"], work / f"headline_{k}.png"
            )
            page.figure(
                path,
                f"Left: the two numbers compared ({f.labels[0]}, {f.labels[1]}) with their 95 % "
                "intervals. Right: their difference (first − second); the dashed line is 0 — "
                "an interval that crosses it means no clear difference (grey).",
            )


def findings_section(page, findings: dict[str, Any], work: Path) -> None:
    """Every finding (computed from this run's numbers) and a forest plot of them all."""
    page.h("All findings")
    page.items(findings["lines"] or ["no comparison could be computed"])
    rows = [(f.key, f.diff) for f in findings["findings"] if f.diff is not None]
    path = forest(rows, work / "forest.png", "every finding's difference, 95 % interval")
    if path is not None:
        page.figure(
            path,
            "Every finding's difference (first − second, as named in its key) with its 95 % "
            "interval. Blue: the interval excludes 0 (a direction is stated); grey: it holds "
            "0 (no clear difference).",
            wide=True,
        )
