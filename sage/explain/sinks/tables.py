"""The per-image tables of the explain task: ``summary.csv`` and ``metrics.csv`` rows.

Both hold scalars only (a row per image and method), so they are kept in memory and written
once; what grows with the images is a few hundred bytes per row, never maps or tokens. Batch
frames are merged every :data:`MERGE_EVERY` batches so a long run does not hold thousands of
small frames.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from ..stage import Explained

MERGE_EVERY = 64


class _Rows:
    def __init__(self) -> None:
        self.frames: list[pd.DataFrame] = []

    def append(self, frame: pd.DataFrame) -> None:
        self.frames.append(frame)
        if len(self.frames) >= MERGE_EVERY:
            self.frames = [pd.concat(self.frames, ignore_index=True)]

    def frame(self) -> pd.DataFrame | None:
        """Every row so far (None before the first)."""
        return pd.concat(self.frames, ignore_index=True) if self.frames else None


class SummaryRows(_Rows):
    """Per image and method: class, prediction, confidence, correct, ``fg_mass`` (A_fg),
    ``bg_mass`` (A_bg), zero_map.

    ``split``, ``variant`` and ``model_run`` are constant columns. Images without a label get
    an empty class, label and correct.
    """

    def __init__(
        self, class_names: Sequence[str], *, split: str, variant: str | None, model_run: str
    ) -> None:
        super().__init__()
        self.class_names = list(class_names)
        self.split, self.variant, self.model_run = split, variant, model_run

    def add(self, item: Explained) -> None:
        res, sb = item.result, item.result.saliency
        pred = res.pred.cpu().numpy()
        if item.labels is None:
            labels, classes, correct = np.full(len(pred), np.nan), None, np.full(len(pred), np.nan)
        else:
            labels = item.labels.cpu().numpy()
            classes = [self.class_names[int(y)] for y in labels]
            correct = pred == labels
        self.append(
            pd.DataFrame(
                {
                    "image_id": item.ids,
                    "split": self.split,
                    "class": classes,
                    "variant": self.variant,
                    "method": item.method,
                    "model_run": self.model_run,
                    "label": labels,
                    "pred": pred,
                    "pred_class": [self.class_names[int(p)] for p in pred],
                    "confidence": res.confidence.detach().cpu().numpy(),
                    "correct": correct,
                    "fg_mass": sb.a_fg.cpu().numpy(),
                    "bg_mass": sb.a_bg.cpu().numpy(),
                    "zero_map": sb.zero.cpu().numpy(),
                }
            )
        )


class MetricRows(_Rows):
    """Per image and method: every per-image column of the selected metric sets."""

    def add(self, item: Explained) -> None:
        columns = item.result.columns
        if columns:
            self.append(
                pd.DataFrame(
                    {"image_id": item.ids, "method": item.method}
                    | {c: v.detach().cpu().numpy() for c, v in columns.items()}
                )
            )
