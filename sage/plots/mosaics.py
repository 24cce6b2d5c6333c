"""Per-class mosaics (a row of examples per class) and the class-distribution plot."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image


def class_mosaic(
    examples: Mapping[str, Sequence[Path]],
    path: str | Path,
    title: str = "",
    tile: int = 96,
    names: Mapping[str, str] | None = None,
) -> Path:
    """One row per class, up to ``len(examples[c])`` tiles per row, saved as PNG.

    The tiles are pasted into one array and drawn as one image: a subplot per tile made
    this ~10x slower (2.5 s per variant), which added up in every prepare.
    """
    classes = list(examples)
    cols = max((len(v) for v in examples.values()), default=1) or 1
    gap = 4
    step = tile + gap
    sheet = np.full((len(classes) * step - gap, cols * step - gap, 3), 255, np.uint8)
    for r, cls in enumerate(classes):
        for c, image_path in enumerate(examples[cls][:cols]):
            with Image.open(image_path) as im:
                tile_rgb = np.asarray(im.convert("RGB").resize((tile, tile)))
            sheet[r * step : r * step + tile, c * step : c * step + tile] = tile_rgb
    fig, ax = plt.subplots(figsize=(1.2 * cols + 1.6, 1.2 * len(classes) + 0.4))
    ax.imshow(sheet)
    ax.set_xticks([])
    ax.set_yticks([r * step + tile / 2 for r in range(len(classes))])
    ax.set_yticklabels(
        [f"{c}\n{names[c]}" if names and c in names else c for c in classes], fontsize=7
    )
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    ax.set_title(title, fontsize=9)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def class_distribution(meta: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Stacked bars: images per class, split by train/val/test."""
    table = meta.pivot_table(
        index="label_name", columns="split", values="image_id", aggfunc="count", fill_value=0
    )
    table = table.reindex(columns=[s for s in ("train", "val", "test") if s in table.columns])
    fig, ax = plt.subplots(figsize=(1 + 0.5 * len(table), 3))
    table.plot.bar(stacked=True, ax=ax)
    ax.set_xlabel("class")
    ax.set_ylabel("images")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
