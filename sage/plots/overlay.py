"""Saliency overlays (jet heatmap over the image, foreground outline) and correct/error mosaics."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib.pyplot as plt
import numpy as np


def overlay(
    image: np.ndarray, saliency: np.ndarray, mask: np.ndarray | None = None, alpha: float = 0.5
) -> np.ndarray:
    """RGB uint8 image with a [0, 1] saliency map blended in jet and the mask outlined in white."""
    heat = plt.get_cmap("jet")(np.clip(saliency, 0, 1))[..., :3]
    out = (1 - alpha) * image.astype(np.float32) / 255 + alpha * heat
    out = (np.clip(out, 0, 1) * 255).astype(np.uint8)
    if mask is not None:
        contours, _ = cv2.findContours(
            mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        out = cv2.drawContours(np.ascontiguousarray(out), contours, -1, (255, 255, 255), 1)
    return out


def correct_error_mosaic(
    tiles: dict[str, dict[str, Sequence[tuple[np.ndarray, str]]]],
    path: str | Path,
    title: str = "",
    per_side: int = 3,
) -> Path:
    """Rows = classes; left ``per_side`` columns correct predictions, right ones errors.

    ``tiles[class]["correct" | "error"]`` holds (overlay image, caption) pairs.
    """
    classes = list(tiles)
    cols = 2 * per_side
    fig, axes = plt.subplots(
        len(classes), cols, figsize=(1.3 * cols + 1.2, 1.35 * len(classes) + 0.6), squeeze=False
    )
    for r, cls in enumerate(classes):
        for side, offset in (("correct", 0), ("error", per_side)):
            items = list(tiles[cls].get(side, []))[:per_side]
            for c in range(per_side):
                ax = axes[r, offset + c]
                ax.set_xticks([])
                ax.set_yticks([])
                if c < len(items):
                    ax.imshow(items[c][0])
                    ax.set_title(items[c][1], fontsize=6, pad=2)
                    for spine in ax.spines.values():
                        spine.set_edgecolor("tab:green" if side == "correct" else "tab:red")
                        spine.set_linewidth(2)
                else:  # hide the frame but keep the axes, so the row label still shows
                    for spine in ax.spines.values():
                        spine.set_visible(False)
        axes[r, 0].set_ylabel(cls, rotation=0, ha="right", va="center", fontsize=8)
    axes[0, 0].annotate(
        "correct", (0, 1.35), xycoords="axes fraction", fontsize=8, color="tab:green"
    )
    axes[0, per_side].annotate(
        "error", (0, 1.35), xycoords="axes fraction", fontsize=8, color="tab:red"
    )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
