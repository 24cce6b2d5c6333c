"""The explain pipeline streams: its memory peak does not grow with the number of batches.

The compute stage feeds the task's sinks (array store, token table, per-image tables, figures,
pooled results) exactly as ``sage.explain.task.run`` does, from a batch source that makes
each batch on demand (so the source holds nothing). Peaks are traced Python/numpy
allocations (``tracemalloc``), for 40 and 400 images of 64 px with a tiny CNN; what may grow
is the per-image scalar rows (a few hundred bytes per image and method), not maps or tokens.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from sage.explain import explain_stream, load_maps
from sage.explain.sinks import (
    ArrayStore,
    MetricRows,
    PooledResults,
    SummaryRows,
    TokenTable,
    Visuals,
)
from sage.models import create_backbone
from sage.saliency.methods import create_method

SIZE, BATCH, CLASSES = 64, 8, ["a", "b", "c"]
MEAN, STD = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
KEYS = {"split": "test", "variant": "full", "model_run": "run"}


def batches(n_images: int) -> Iterator[dict]:
    """Random 64 px images, labels and box masks, made one batch at a time."""
    gen = torch.Generator().manual_seed(0)
    for start in range(0, n_images, BATCH):
        b = min(BATCH, n_images - start)
        masks = torch.zeros(b, SIZE, SIZE, dtype=torch.bool)
        masks[:, 16:48, 8:40] = True
        yield {
            "image": torch.randn(b, 3, SIZE, SIZE, generator=gen),
            "image_id": [f"img{start + i:05d}" for i in range(b)],
            "label": torch.randint(0, len(CLASSES), (b,), generator=gen),
            "mask": masks,
        }


def explain_to_disk(n_images: int, out: Path) -> int:
    """Stream ``n_images`` through gradcam into the task's sinks; the traced peak in bytes."""
    torch.manual_seed(0)
    net = create_backbone("small_cnn", len(CLASSES)).eval()
    method = create_method("gradcam")
    tracemalloc.start()
    try:
        store, tokens = ArrayStore(out / "arrays"), TokenTable(out / "tokens.parquet", CLASSES)
        summary, metrics, pooled = SummaryRows(CLASSES, **KEYS), MetricRows(), PooledResults()
        visuals = Visuals(out, "gradcam", CLASSES, MEAN, STD, overlays=4, title="gradcam")
        for item in explain_stream(
            net,
            method,
            "gradcam",
            batches(n_images),
            grids=[(4, 4), (8, 8)],
            mean=MEAN,
            std=STD,
            metric_sets={"alignment": {}},
        ):
            for sink in (store, tokens, summary, metrics, pooled, visuals):
                sink.add(item)
        tokens.close()
        visuals.close()
        summary.frame().to_csv(out / "summary.csv", index=False)
        metrics.frame().to_csv(out / "metrics.csv", index=False)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_peak_does_not_grow_with_the_batches(tmp_path):
    small = explain_to_disk(40, tmp_path / "small")
    large = explain_to_disk(400, tmp_path / "large")
    # ten times the batches: the peak may grow by the scalar rows only (~1 KB per image
    # here); keeping maps (16 KB per image) or token rows (~30 KB) would add megabytes
    assert large - small < 1_000_000, (small, large)

    out = tmp_path / "large"
    assert len(list((out / "arrays/gradcam").glob("shard-*.npz"))) == 400 // BATCH
    assert len(pd.read_parquet(out / "tokens.parquet")) == 400 * 3 * (16 + 64)
    assert len(pd.read_csv(out / "summary.csv")) == 400
    maps = load_maps(out, ["img00399", "img00000"], method="gradcam")
    assert maps["whole"].shape == (2, SIZE, SIZE)
    assert np.allclose(maps["whole"].sum(axis=(1, 2)), 1, atol=1e-4)


def test_the_stage_explains_unlabelled_images_without_masks(tmp_path):
    """A source with images and ids only: the predicted class is explained, whole-map numbers
    are kept, region numbers are NaN and the store has no mask."""
    net = create_backbone("small_cnn", len(CLASSES)).eval()
    bare = ({"image": b["image"], "image_id": b["image_id"]} for b in batches(12))
    store, summary = ArrayStore(tmp_path / "arrays"), SummaryRows(CLASSES, **KEYS)
    tokens = TokenTable(tmp_path / "tokens.parquet", CLASSES)
    for item in explain_stream(
        net, create_method("gradcam"), "gradcam", bare, grids=[(4, 4)], mean=MEAN, std=STD
    ):
        for sink in (store, summary, tokens):
            sink.add(item)
    tokens.close()
    rows = summary.frame()
    assert rows.fg_mass.isna().all() and rows.correct.isna().all() and rows["class"].isna().all()
    maps = load_maps(tmp_path, ["img00011", "img00003"])  # one method: no method= needed
    assert set(maps) == {"whole", "tokens_4x4"}
    mass = maps["tokens_4x4"][:, 0, ..., 0].sum(axis=(1, 2))  # whole region: S̃'s mass
    assert np.allclose(mass, maps["whole"].sum(axis=(1, 2)), atol=1e-5)
    assert np.isnan(maps["tokens_4x4"][:, 1:]).all()
    assert "class" not in pd.read_parquet(tmp_path / "tokens.parquet").columns
