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
    """One row per class, up to ``len(examples[c])`` tiles per row, saved as PNG."""
    classes = list(examples)
    cols = max((len(v) for v in examples.values()), default=1) or 1
    fig, axes = plt.subplots(
        len(classes), cols, figsize=(1.2 * cols + 1.6, 1.2 * len(classes) + 0.4), squeeze=False
    )
    for r, cls in enumerate(classes):
        for c in range(cols):
            ax = axes[r, c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c < len(examples[cls]):
                with Image.open(examples[cls][c]) as im:
                    ax.imshow(np.asarray(im.convert("RGB").resize((tile, tile))))
            else:
                ax.axis("off")
        label = f"{cls}\n{names[cls]}" if names and cls in names else cls
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
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
