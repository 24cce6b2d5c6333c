"""The model-parameter randomisation curves of Adebayo et al. (2018, Fig. 2 / Fig. 4 style).

One figure per mode (cascading, independent), one panel per similarity; x: the randomisation
steps from the logits layer down (labelled with the layer names), y: the mean similarity of
the randomised map to the original over the images, with the interquartile range as a band,
one line per method. Drawn from the per-image table explain.py writes (``metrics.csv``:
columns ``mprt/<mode>/<k>_<layer>/<similarity>`` of :mod:`sage.metrics.randomisation`,
one row per image and method). A method whose curve stays near 1 fails the check. Sized to be
shown across the report page (:data:`~sage.plots.style.WIDE_W`).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..metrics.randomisation import parse_column
from .style import DPI, WIDE_W, styled

LABELS = {"spearman": "Spearman ρ (|maps|)", "ssim": "SSIM", "topk": "top-k intersection"}


def mprt_columns(frame: pd.DataFrame) -> dict[str, dict[str, list[tuple[int, str, str]]]]:
    """``{mode: {similarity: [(step, layer, column), ...] sorted by step}}``."""
    out: dict[str, dict[str, list[tuple[int, str, str]]]] = {}
    for column in frame.columns:
        parsed = parse_column(str(column))
        if parsed is not None:
            mode, step, layer, sim = parsed
            out.setdefault(mode, {}).setdefault(sim, []).append((step, layer, column))
    for sims in out.values():
        for cols in sims.values():
            cols.sort()
    return out


@styled
def plot_mprt(
    frame: pd.DataFrame, mode: str, path: str | Path, title: str = "", method_col: str = "method"
) -> Path | None:
    """Draw the ``mode`` curves of ``frame`` to ``path``; None when it has no finite value."""
    sims = mprt_columns(frame).get(mode)
    if not sims:
        return None
    methods = list(dict.fromkeys(frame[method_col])) if method_col in frame else [None]
    fig, axes = plt.subplots(
        1, len(sims), figsize=(min(WIDE_W - 2, 1.2 + 3.2 * len(sims)), 4.2), squeeze=False
    )
    cmap = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
    drawn = False
    for ax, (sim, cols) in zip(axes[0], sims.items(), strict=True):
        steps = np.array([s for s, _, _ in cols])
        for i, method in enumerate(methods):
            rows = frame if method is None else frame[frame[method_col] == method]
            values = rows[[c for _, _, c in cols]].to_numpy(dtype=float)
            finite = np.isfinite(values).any(0)
            if not finite.any():
                continue
            with np.errstate(all="ignore"):
                mean = np.nanmean(values[:, finite], 0)
                q1, q3 = np.nanpercentile(values[:, finite], [25, 75], axis=0)
            colour = cmap(i % cmap.N)
            ax.plot(steps[finite], mean, marker="o", ms=3, lw=1.5, color=colour, label=method)
            ax.fill_between(steps[finite], q1, q3, color=colour, alpha=0.18, linewidth=0)
            drawn = True
        ax.axhline(0, color="grey", lw=0.6, ls=":")
        ax.set_xticks(steps)
        ax.set_xticklabels([layer for _, layer, _ in cols], rotation=60, ha="right")
        ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.05)
        ax.set_xlabel(
            "re-initialised down to (logits → input)"
            if mode == "cascading"
            else "re-initialised layer (logits → input)",
            fontsize=8,
        )
        ax.set_ylabel(f"{LABELS.get(sim, sim)} to original", fontsize=8)
        ax.set_title(LABELS.get(sim, sim), fontsize=9)
        ax.grid(alpha=0.25)
    if not drawn:  # every value NaN (e.g. flat maps throughout): no curve to show
        plt.close(fig)
        return None
    handles, labels = axes[0][0].get_legend_handles_labels()
    if any(labels):
        fig.legend(
            handles,
            labels,
            loc="center left",
            bbox_to_anchor=(1.0, 0.5),
            title="method (band: IQR)",
        )
    fig.suptitle(title or f"model-parameter randomisation, {mode}")
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def plot_randomisation_figures(frame: pd.DataFrame, out: str | Path, title: str = "") -> list[Path]:
    """``<out>/mprt_cascading.png`` and ``<out>/mprt_independent.png`` (those with columns)."""
    out = Path(out)
    paths = []
    for mode in ("cascading", "independent"):
        if mode in mprt_columns(frame):
            out.mkdir(parents=True, exist_ok=True)
            label = f"{title}: " if title else ""
            drawn = plot_mprt(
                frame,
                mode,
                out / f"mprt_{mode}.png",
                f"{label}model-parameter randomisation, {mode}",
            )
            if drawn is not None:
                paths.append(drawn)
    return paths
