"""The long token table, streamed to ``tokens.parquet`` with a pyarrow ParquetWriter.

One row per (image, method, grid, region, cell) is ~240 rows per image and method: the table
of a 22k-image split does not fit comfortably in memory, so batches are converted to Arrow
and written as row groups of about :data:`ROW_GROUP_ROWS` rows (small row groups would grow
the footer the writer keeps until it closes). The first batch fixes the schema. There is no
``tokens.csv`` any more: read the table with ``pandas.read_parquet`` (or pyarrow, by row
group, for large runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ...saliency.tokens import tokens_to_frame
from ..stage import Explained

ROW_GROUP_ROWS = 1 << 14


def token_frames(
    item: Explained, class_names: Sequence[str] | None = None, **keys: object
) -> list[pd.DataFrame]:
    """The batch's token table, one frame per grid, keyed by ``keys`` and the method.

    With ``class_names`` and labelled images a ``class`` column follows ``image_id``.
    """
    frames = []
    for grid, t in item.result.tokens.items():
        frame = tokens_to_frame(t, grid, item.ids, **keys, method=item.method)
        if class_names is not None and item.labels is not None:
            classes = [class_names[int(y)] for y in item.labels]
            frame.insert(1, "class", np.repeat(classes, len(frame) // len(item.ids)))
        frames.append(frame)
    return frames


class TokenTable:
    """Appends every explained batch's tokens to one parquet file."""

    def __init__(
        self,
        path: Path,
        class_names: Sequence[str] | None = None,
        row_group_rows: int = ROW_GROUP_ROWS,
        **keys: object,
    ) -> None:
        self.path, self.class_names, self.keys = Path(path), class_names, keys
        self.row_group_rows = row_group_rows
        self.writer: pq.ParquetWriter | None = None
        self.pending: list[pa.Table] = []
        self.rows = 0

    def add(self, item: Explained) -> None:
        for frame in token_frames(item, self.class_names, **self.keys):
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.path, table.schema)
            self.pending.append(table.cast(self.writer.schema))
            self.rows += len(frame)
        if self.rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self.pending and self.writer is not None:
            self.writer.write_table(pa.concat_tables(self.pending), self.row_group_rows)
        self.pending, self.rows = [], 0

    def close(self) -> None:
        """Write what is pending and the footer (an empty stream writes no file)."""
        self._flush()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
