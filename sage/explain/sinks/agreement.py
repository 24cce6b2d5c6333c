"""Method agreement from the array store: patch KL and Spearman of cell masses, shard by shard.

Every method streams the same batches in the same order, so shard ``k`` of two methods holds
the same images; comparing them pair by pair needs two shards in memory at a time, never the
whole token table. The result (a row per image, grid, region and pair of methods) is a small
scalar table, sorted as :func:`sage.saliency.compare.method_agreement` sorts it. Regions an
image has no mask for (NaN fg/bg tokens) are left out: it is compared on ``whole`` only.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ...saliency.token_analysis import compare_tables
from ...saliency.tokens import tokens_to_frame
from .arrays import INDEX


def _tokens(npz: np.lib.npyio.NpzFile) -> pd.DataFrame:
    ids = [str(i) for i in npz["image_id"]]
    frames = [
        tokens_to_frame(npz[key], key.removeprefix("tokens_"), ids)
        for key in npz.files
        if key.startswith("tokens_")
    ]
    table = pd.concat(frames, ignore_index=True)
    # images without a foreground mask have NaN fg/bg tokens: only their whole region compares
    return table[np.isfinite(table["mass"].to_numpy())]


def method_agreement(arrays: Path, methods: Sequence[str]) -> pd.DataFrame:
    """Patch KL and Spearman between every two ``methods`` of the store under ``arrays``."""
    shards = sorted(pd.read_csv(arrays / INDEX, dtype={"shard": str}).shard.unique())
    rows = {pair: [] for pair in itertools.combinations(methods, 2)}
    for shard in shards:
        tables = {}
        for method in methods:
            with np.load(arrays / method / shard) as npz:
                tables[method] = _tokens(npz)
        for a, b in rows:
            rows[(a, b)].append(compare_tables(tables[a], tables[b]))
    frames = [
        pd.concat(parts, ignore_index=True)
        .sort_values(["image_id", "grid", "region"], kind="stable", ignore_index=True)
        .assign(method_a=a, method_b=b)
        for (a, b), parts in rows.items()
        if parts
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
