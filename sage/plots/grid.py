"""Heatmap of a cross-domain grid: rows = training condition, columns = target (SAGE Table 1).

Every cell is annotated with its value; missing cells are grey and marked "n/a"
rather than coloured as if they were 0.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd


def plot_grid_heatmap(
    matrix: pd.DataFrame,
    path: str | Path,
    title: str = "",
    *,
    lower_is_better: bool = False,
    vmin: float | None = None,
    vmax: float | None = None,
    fmt: str = "{:.3f}",
) -> Path:
    """Save ``matrix`` (index = training condition, columns = target) as an annotated heatmap.

    ``lower_is_better`` reverses the colour map (e.g. for ECE), so a good cell always looks the
    same. ``vmin``/``vmax`` default to the finite range of the data.
    """
    values = matrix.to_numpy(dtype=np.float64)
    finite = values[np.isfinite(values)]
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        hi = lo + 1e-9
    rows, cols = values.shape
    width = 2.0 + 0.09 * max(len(str(r)) for r in matrix.index) + 1.3 * cols
    height = 1.2 + 0.1 * max(len(str(c)) for c in matrix.columns) + 0.55 * rows
    fig, ax = plt.subplots(figsize=(width, height))
    cmap = plt.get_cmap("viridis_r" if lower_is_better else "viridis").with_extremes(
        bad="lightgrey"
    )
    ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
    for i in range(rows):
        for j in range(cols):
            v = values[i, j]
            if not np.isfinite(v):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=8, color="dimgrey")
                continue
            shade = (v - lo) / (hi - lo)
            dark = shade > 0.5 if lower_is_better else shade < 0.5
            ax.text(
                j,
                i,
                fmt.format(v),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark else "black",
            )
    ax.set_xticks(range(cols), [str(c) for c in matrix.columns], rotation=30, ha="right")
    ax.set_yticks(range(rows), [str(r) for r in matrix.index])
    ax.set_xlabel("target")
    ax.set_ylabel("trained on")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)
