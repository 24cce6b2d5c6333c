"""Tables and the markdown report of a divergence analysis.

The report is short on purpose: the verdict lines first (each with the numbers it follows
from), then one table each for behaviour, saliency divergence, the hypothesis test and the
foreground/background split. Every number in it is also in a CSV next to it, where the full
tables (every measure, grid and region) live.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "behaviour_table",
    "fg_bg_table",
    "key_measures",
    "markdown_table",
    "measure_label",
    "render_report",
    "saliency_table",
]

# Display names of per-image divergences (report, plots, verdict lines).
LABELS: dict[str, str] = {
    "js_pred": "JS(pred)",
    "disagree": "disagreement",
    "js_map": "JS(S̃)",
    "js_fg": "JS(S̃) fg part",
    "js_bg": "JS(S̃) bg part",
    "ssim_dist": "1−SSIM",
    "fg_mass_shift": "|ΔA_fg|",
    "embed_dist": "embedding distance",
}


def measure_label(name: str) -> str:
    """Readable name of a measure, e.g. ``euclid_4x4_fg`` -> ``token euclid 4x4 fg``."""
    if name in LABELS:
        return LABELS[name]
    kind, _, rest = name.partition("_")
    if kind == "patch":  # patch_kl_<grid>_<region>
        kind, rest = "patch KL", rest.partition("_")[2]
    elif kind == "spearman":
        kind = "1−Spearman"
    return f"token {kind} {rest.replace('_', ' ')}"


def key_measures(grids: Sequence[str]) -> list[str]:
    """The measures the report shows; the CSVs hold all of them."""
    out = ["js_map", "js_fg", "js_bg", "ssim_dist", "fg_mass_shift"]
    for g in grids:
        out += [f"spearman_{g}_whole", f"euclid_{g}_whole", f"euclid_{g}_fg", f"euclid_{g}_bg"]
    return [*out, "embed_dist"]


def _fmt(v: object) -> str:
    if isinstance(v, str):
        return v
    if v is None or (isinstance(v, float | np.floating) and not np.isfinite(v)):
        return "n/a"
    if isinstance(v, bool | np.bool_):
        return str(bool(v))
    if isinstance(v, int | np.integer):
        return str(int(v))
    if 0 < abs(float(v)) < 0.01:  # e.g. JS(pred) of nearly uniform predictions
        return f"{float(v):.2e}"
    return f"{float(v):.3f}"


def markdown_table(
    frame: pd.DataFrame, formats: Mapping[str, Callable[[object], str]] | None = None
) -> str:
    """GitHub-flavoured markdown of ``frame`` (``n/a`` for NaN; 3 decimals by default)."""
    formats = dict(formats or {})
    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    lines = [head, rule]
    for row in frame.itertuples(index=False):
        cells = [formats.get(c, _fmt)(v) for c, v in zip(frame.columns, row, strict=True)]
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return "\n".join(lines)


def fg_bg_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean foreground and background parts of JS(S̃) per group of images.

    ``frame`` holds per image ``disagree``, ``flip``, ``js_fg``, ``js_bg`` (NaN for images
    without a valid map pair) and optionally ``a_fg_a``, ``a_fg_b`` (each model's A_fg).
    Groups: all, same class, class differs, and every flip type present. ``fg_share`` is
    ``Σ js_fg / Σ js_map`` over the group (the share of the group's total divergence on
    foreground pixels), NaN when the group has no divergence. JS is symmetric: saliency that
    moves from the foreground to the background diverges on both sides, so the *direction* is
    read from ``a_bg_a`` / ``a_bg_b``, each model's mean background mass A_bg = 1 − A_fg.
    """
    valid = frame[np.isfinite(frame.js_fg) & np.isfinite(frame.js_bg)]
    groups = [
        ("all", valid),
        ("same class", valid[~valid.disagree]),
        ("class differs", valid[valid.disagree]),
    ]
    groups += [(f"flip: {f}", part) for f, part in valid.groupby("flip", sort=True)]
    rows = []
    for name, part in groups:
        total = float(part.js_fg.sum() + part.js_bg.sum())
        rows.append(
            {
                "group": name,
                "n": len(part),
                "js_fg": float(part.js_fg.mean()) if len(part) else np.nan,
                "js_bg": float(part.js_bg.mean()) if len(part) else np.nan,
                "fg_share": float(part.js_fg.sum()) / total if total > 0 else np.nan,
            }
        )
        for side in ("a", "b"):
            if f"a_fg_{side}" in part:
                rows[-1][f"a_bg_{side}"] = float((1 - part[f"a_fg_{side}"]).mean())
    return pd.DataFrame(rows)


def _pct(v: object) -> str:
    return "n/a" if not np.isfinite(float(v)) else f"{float(v):.1%}"


def _ci(est: float, lo: float, hi: float) -> str:
    if not np.isfinite(est):
        return "n/a"
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return f"{est:.2f}"
    return f"{est:.2f} [{lo:.2f}, {hi:.2f}]"


def _p(v: object) -> str:
    return "n/a" if not np.isfinite(float(v)) else f"{float(v):.2g}"


def render_report(
    *,
    title: str,
    setup: Sequence[str],
    verdicts: pd.DataFrame,
    behaviour: pd.DataFrame,
    saliency: pd.DataFrame,
    correlations: pd.DataFrame,
    fg_bg: pd.DataFrame,
    partial: pd.DataFrame,
    across: pd.DataFrame | None,
    grids: Sequence[str],
    alpha: float,
    files: Sequence[str],
) -> str:
    """The markdown report (see the module docstring)."""
    lines = [f"# {title}", ""]
    lines += [f"- {s}" for s in setup]
    lines += ["", "## Verdict", ""]
    lines += [f"- **{r.scope}** ({r.method}): {r.line}" for r in verdicts.itertuples(index=False)]
    lines += [
        "",
        f"*Supported* means the {1 - alpha:.0%} bootstrap interval of Spearman ρ between the "
        "behavioural divergence (JS between the two predictive distributions) and the saliency "
        "divergence (JS between the two ReLU+PDF maps) lies above 0, i.e. images on which the "
        "models behave more differently are also images on which they look at more different "
        "places. Each line is its own test (no correction for multiple comparisons).",
        "",
        "## Behaviour",
        "",
        markdown_table(behaviour),
        "",
        "## Saliency divergence (mean over images)",
        "",
        markdown_table(saliency),
        "",
        f"## Hypothesis test: correlation with {LABELS['js_pred']}",
        "",
    ]
    keys = key_measures(grids)
    shown = correlations[
        (correlations.behaviour == "js_pred") & correlations.measure.isin(keys)
    ].copy()
    shown["order"] = shown.measure.map({k: i for i, k in enumerate(keys)})
    shown = shown.sort_values(["pair", "method", "order"], kind="stable")
    table = pd.DataFrame(
        {
            "pair": shown.pair,
            "method": shown.method,
            "saliency divergence": shown.measure.map(measure_label),
            "n": shown.n,
            "Spearman ρ [CI]": [
                _ci(e, lo, hi)
                for e, lo, hi in zip(
                    shown.spearman, shown.spearman_lo, shown.spearman_hi, strict=True
                )
            ],
            "p (ρ)": shown.spearman_p.map(_p),
            "Pearson r [CI]": [
                _ci(e, lo, hi)
                for e, lo, hi in zip(shown.pearson, shown.pearson_lo, shown.pearson_hi, strict=True)
            ],
            "status": shown.status,
        }
    )
    lines += [markdown_table(table), ""]
    lines += [
        "Correlations with disagreement (0/1) and every grid, region and token distance: "
        "`correlations.csv`.",
        "",
    ]
    if across is not None and len(across):
        lines += ["## Across model pairs", ""]
        a = across.copy()
        lines += [
            markdown_table(
                pd.DataFrame(
                    {
                        "method": a.method,
                        "level": a.level,
                        "points": a.n,
                        "Spearman ρ [CI]": [
                            _ci(e, lo, hi)
                            for e, lo, hi in zip(
                                a.spearman, a.spearman_lo, a.spearman_hi, strict=True
                            )
                        ],
                        "Pearson r [CI]": [
                            _ci(e, lo, hi)
                            for e, lo, hi in zip(a.pearson, a.pearson_lo, a.pearson_hi, strict=True)
                        ],
                        "status": a.status,
                    }
                )
            ),
            "",
            "`pair_means`: one point per pair (mean JS(pred) vs mean JS(S̃)); `pooled`: every "
            "(image, pair). Intervals resample images, keeping the same images for all pairs.",
            "",
        ]
    lines += ["## Foreground vs background", ""]
    lines += [
        "JS(S̃) is a sum of non-negative per-pixel terms, so it splits exactly into the part on "
        "foreground pixels and the part on background pixels. `fg share` = foreground part / "
        "total over the group. JS is symmetric (mass leaving the foreground for the background "
        "diverges on both sides), so the direction is in `A_bg a` / `A_bg b`: each model's "
        "mean saliency mass on the background.",
        "",
        markdown_table(fg_bg, {"fg share": _pct}),
        "",
    ]
    if len(partial):
        rows = []
        for r in partial.itertuples(index=False):
            rows.append(
                {
                    "pair": r.pair,
                    "method": r.method,
                    "partial ρ": r.partial,
                    "n": r.n,
                    "estimate [CI]": _ci(r.estimate, r.lo, r.hi),
                }
            )
        lines += [
            "Partial Spearman correlation of JS(pred) with one part, holding the other fixed:",
            "",
            markdown_table(pd.DataFrame(rows)),
            "",
        ]
    lines += ["## Files", ""] + [f"- `{f}`" for f in files]
    return "\n".join(lines) + "\n"


def behaviour_table(rows: Sequence[dict]) -> pd.DataFrame:
    """The report's behaviour table from the per-pair behaviour summaries."""
    b = pd.DataFrame(rows)
    return pd.DataFrame(
        {
            "pair": b.pair,
            "n": b.n_images.astype(int),
            "acc a": b.acc_a,
            "acc b": b.acc_b,
            "disagreement": b.disagreement,
            "mean JS(pred)": b.js_pred,
            "fixed by b": b["flip/fixed"],
            "broken by b": b["flip/broken"],
            "different wrong": b["flip/different_wrong"],
        }
    )


def saliency_table(frames: Sequence[pd.DataFrame], grids: Sequence[str]) -> pd.DataFrame:
    """The report's saliency table: mean of the key divergences per pair and method."""
    sal = pd.concat(frames, ignore_index=True)
    wide = sal.pivot_table(index=["pair", "method"], columns="measure", values="mean", sort=False)
    keep = ["js_map", "ssim_dist"]
    for g in grids:
        keep += [f"spearman_{g}_whole", f"euclid_{g}_whole", f"patch_kl_{g}_whole"]
    keep.append("embed_dist")
    wide = wide[[k for k in keep if k in wide.columns]]
    wide.columns = [measure_label(c) for c in wide.columns]
    return wide.reset_index()
