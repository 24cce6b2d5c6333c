"""In-memory per-image columns of a stream: for small image sets held whole anyway.

The training callback's probe set and a grid cell's split keep a few numbers per image
(prediction, confidence, A_fg, A_bg, the zero-map flag, metric columns, whole-map cell masses)
and reduce them once the stream ends; this sink collects them, batch after batch, as numpy.
"""

from __future__ import annotations

import numpy as np
from torch import Tensor

from ..stage import Explained


class Columns:
    """Named per-image columns; :meth:`arrays` concatenates them over the batches seen.

    Args:
        metrics: keep the metric sets' per-image columns.
        masses: keep ``mass_<P>x<Q>``: the whole-map cell masses ``(B, P·Q)`` of every grid.
        minmax: keep the min-max scaled maps ``(B, H, W)`` (for a mosaic of every image).
        as_float: convert every column to float32 (the callback's scalars) instead of keeping
            the tensors' dtypes (the grid's tables print booleans as booleans).
    """

    def __init__(
        self,
        *,
        metrics: bool = True,
        masses: bool = False,
        minmax: bool = False,
        as_float: bool = False,
    ) -> None:
        self.metrics, self.masses, self.minmax, self.as_float = metrics, masses, minmax, as_float
        self.rows: dict[str, list[np.ndarray]] = {}

    def add(self, item: Explained) -> None:
        res, sb = item.result, item.result.saliency
        values: dict[str, Tensor] = {
            "pred": res.pred,
            "conf": res.confidence,
            "a_fg": sb.a_fg,
            "a_bg": sb.a_bg,
            "zero": sb.zero,
        }
        if self.metrics:
            values |= res.columns
        if self.masses:  # whole region (0), mass feature (0)
            values |= {f"mass_{g}": t[:, 0, :, :, 0].flatten(1) for g, t in res.tokens.items()}
        for name, value in values.items():
            value = value.detach()
            self.rows.setdefault(name, []).append(
                (value.float() if self.as_float else value).cpu().numpy()
            )
        if self.minmax:  # kept as computed: the mosaic scales it itself
            self.rows.setdefault("minmax", []).append(sb.minmax.cpu().numpy())

    def arrays(self) -> dict[str, np.ndarray]:
        """Every column over the images seen so far, in stream order."""
        return {name: np.concatenate(chunks) for name, chunks in self.rows.items()}
