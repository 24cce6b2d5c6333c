"""Figures of one method's stream, in bounded memory: overlays, the mosaic, a token grid.

- ``overlays/<method>/<image_id>.png`` for the first ``overlays`` images (image | overlay);
- ``mosaics/<method>_correct_error.png``: rows = classes, :data:`MOSAIC_PER_SIDE` correct
  then error tiles each, the first met in the stream (only those tiles are kept);
- ``mosaics/<method>_predicted.png`` instead for unlabelled images (no correct/error split):
  rows = the first :data:`PREDICTED_ROWS` predicted classes met, ``2 * MOSAIC_PER_SIDE``
  tiles each;
- ``token_grids/<method>.png``: cell masses and centroids of the stream's first image.

Images are denormalised only for the tiles and overlays actually drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...plots.overlay import correct_error_mosaic, overlay
from ...plots.tile_sheet import Tile, tile_sheet
from ...plots.tokens import plot_token_grid
from ..stage import Explained

MOSAIC_PER_SIDE = 3
PREDICTED_ROWS = 12  # unlabelled images: predicted classes drawn (of up to 1000 for ImageNet)
PREDICTED = "predicted"


def denormalise(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(B, C, H, W)`` normalised inputs back to ``(B, H, W, C)`` uint8 RGB."""
    mean_t = torch.tensor(mean, device=images.device)[:, None, None]
    std_t = torch.tensor(std, device=images.device)[:, None, None]
    rgb = ((images * std_t + mean_t).clamp(0, 1) * 255).round().byte()
    return rgb.permute(0, 2, 3, 1).cpu().numpy()


class Visuals:
    """Overlays, correct/error mosaic and token grid of one method (see the module doc)."""

    def __init__(
        self,
        out: Path,
        method: str,
        class_names: Sequence[str],
        mean: Sequence[float],
        std: Sequence[float],
        *,
        overlays: int,
        title: str,
    ) -> None:
        self.out, self.method, self.class_names = Path(out), method, list(class_names)
        self.mean, self.std, self.overlays, self.title = mean, std, int(overlays), title
        self.tiles: dict[str, dict[str, list]] = {
            c: {"correct": [], "error": []} for c in self.class_names
        }
        self.counts: dict[tuple[str, str], int] = {}  # tiles taken per (class, side)
        self.predicted: dict[str, list] = {}  # unlabelled: predicted class -> tiles
        self.rows: set[str] = set()  # the predicted classes given a mosaic row
        self.labelled = True
        self.n_overlays = 0
        (self.out / "overlays" / method).mkdir(parents=True, exist_ok=True)

    def add(self, item: Explained) -> None:
        res, sb = item.result, item.result.saliency
        pred = res.pred.cpu().numpy()
        # unlabelled images: grouped by predicted class, never an error
        self.labelled = item.labels is not None
        labels = pred if item.labels is None else item.labels.cpu().numpy()
        drawn = []  # (row, class, side, tile?, save?): decided first, drawn for these rows only
        for i in range(len(item.ids)):
            cls = self.class_names[int(labels[i])]
            side = ("correct" if pred[i] == labels[i] else "error") if self.labelled else PREDICTED
            tile = self._room(cls, side)
            save = self.n_overlays < self.overlays
            if tile or save:
                drawn.append((i, cls, side, tile, save))
                self.counts[(cls, side)] = self.counts.get((cls, side), 0) + tile
                self.n_overlays += save
        grid = not (self.out / "token_grids" / f"{self.method}.png").exists()
        rows = sorted({i for i, *_ in drawn} | ({0} if grid else set()))
        if not rows:
            return
        rgb = dict(zip(rows, denormalise(item.images[rows], self.mean, self.std), strict=True))
        mm = dict(zip(rows, sb.minmax[rows].cpu().numpy(), strict=True))
        masks = (
            {}
            if item.masks is None
            else dict(zip(rows, item.masks[rows].cpu().numpy(), strict=True))
        )
        conf, a_fg = res.confidence.detach().cpu().numpy(), sb.a_fg.cpu().numpy()
        for i, cls, side, tile, save in drawn:
            mask = masks[i].astype(bool) if i in masks else None
            over = overlay(rgb[i], mm[i], mask)
            if tile:
                fg = "" if np.isnan(a_fg[i]) else f" fg {a_fg[i]:.2f}"
                caption = f"{self.class_names[int(pred[i])]} {conf[i]:.2f}{fg}"
                if side == PREDICTED:
                    self.predicted.setdefault(cls, []).append(Tile(over, caption))
                else:
                    self.tiles[cls][side].append((over, caption))
            if save:
                Image.fromarray(np.concatenate([rgb[i], over], axis=1)).save(
                    self.out / "overlays" / self.method / f"{item.ids[i]}.png"
                )
        if grid:
            (self.out / "token_grids").mkdir(exist_ok=True)
            name = max(res.tokens, key=lambda n: int(n.split("x")[0]))
            plot_token_grid(
                rgb[0],
                sb.pdf[0].detach().cpu().numpy(),
                res.tokens[name][0].detach().cpu().numpy(),
                self.out / "token_grids" / f"{self.method}.png",
                f"{self.method} {item.ids[0]} ({name})",
            )

    def _room(self, cls: str, side: str) -> bool:
        """Whether a tile of ``cls`` on ``side`` is still wanted."""
        if side != PREDICTED:
            return self.counts.get((cls, side), 0) < MOSAIC_PER_SIDE
        if cls not in self.rows and len(self.rows) >= PREDICTED_ROWS:
            return False
        self.rows.add(cls)  # decided here, before the batch's tiles are drawn
        return self.counts.get((cls, side), 0) < 2 * MOSAIC_PER_SIDE

    def close(self) -> None:
        """Draw the correct/error mosaic (the predicted-class one for unlabelled images)."""
        (self.out / "mosaics").mkdir(exist_ok=True)
        if not self.labelled:
            tile_sheet(
                list(self.predicted.items()),
                self.out / "mosaics" / f"{self.method}_predicted.png",
                f"{self.title} (rows: predicted class; no labels)",
            )
            return
        correct_error_mosaic(
            self.tiles,
            self.out / "mosaics" / f"{self.method}_correct_error.png",
            self.title,
            MOSAIC_PER_SIDE,
        )
