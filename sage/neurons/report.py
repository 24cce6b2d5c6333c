"""Tables, MLflow metrics and figures of the neural-feature attribution analysis.

``neurons_table.csv`` has one row per (class, region): the best unit, its train IoU (mean
over its top-k training images), its held-out IoU (mean and share above 0.5 over every
held-out image of the class that has the region), the activation-IoU rank correlation
(RIVAL10 appendix: activation and alignment need not go together), and the counts of images
skipped for an empty region mask. ``status`` says why a pair has no candidate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from ..plots.neurons import generalisation_figure, table_figure, unit_mosaic
from .activations import loader, region_masks
from .search import PairSearch
from .unit_cam import UnitGradCAM

ABOVE = 0.5  # "share above 0.5" of the held-out IoUs (RIVAL10 reads > 0.5 as generalising)
TABLE_COLUMNS = [
    "class",
    "class_name",
    "region",
    "best_unit",
    "train_iou",
    "n_train",
    "n_train_skipped_empty",
    "heldout_iou_mean",
    "heldout_share_above_0.5",
    "n_heldout",
    "n_skipped_empty",
    "n_heldout_nonfinite",
    "heldout_act_iou_spearman",
    "status",
]


def _spearman(x: pd.Series, y: pd.Series) -> float:
    if len(x) < 3 or x.nunique() < 2 or y.nunique() < 2:
        return float("nan")
    return float(x.rank().corr(y.rank()))  # Pearson of ranks = Spearman (average ties)


def summary_table(
    pairs: Sequence[PairSearch],
    heldout: pd.DataFrame,
    counts: pd.DataFrame,
    classes: Sequence[str],
    class_names: Sequence[str],
) -> pd.DataFrame:
    """One row per searched (class, region); see the module docstring for the columns."""
    empty = {(int(r.label), r.region): int(r.n_skipped_empty) for r in counts.itertuples()}
    groups = dict(list(heldout.groupby(["label", "region"]))) if len(heldout) else {}
    rows = []
    for pair in pairs:
        scores = groups.get((pair.label, pair.region), pd.DataFrame(columns=["iou", "activation"]))
        finite = scores[np.isfinite(scores["iou"].astype(float))]
        status = "ok"
        if not pair.ok:
            status = "no_train_image_with_region"
        elif scores.empty:
            status = "no_heldout_image_with_region"
        elif finite.empty:
            status = "heldout_maps_nonfinite"
        rows.append(
            {
                "class": classes[pair.label],
                "class_name": class_names[pair.label],
                "region": pair.region,
                "best_unit": pair.best_unit,
                "train_iou": pair.train_iou,
                "n_train": int(pair.top.shape[0]) if pair.ok else 0,
                "n_train_skipped_empty": pair.n_skipped_empty,
                "heldout_iou_mean": float(finite.iou.mean()) if len(finite) else math.nan,
                "heldout_share_above_0.5": float((finite.iou > ABOVE).mean())
                if len(finite)
                else math.nan,
                "n_heldout": len(finite),
                "n_skipped_empty": empty.get((pair.label, pair.region), 0),
                "n_heldout_nonfinite": len(scores) - len(finite),
                "heldout_act_iou_spearman": _spearman(finite.activation, finite.iou),
                "status": status,
            }
        )
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    table["best_unit"] = table["best_unit"].astype("Int64")
    return table


def unit_scores_frame(pairs: Sequence[PairSearch], classes: Sequence[str]) -> pd.DataFrame:
    """Every searched unit's train IoU per (class, region), best first (the runner-ups too)."""
    frames = [
        pd.DataFrame(
            {
                "class": classes[p.label],
                "region": p.region,
                "unit": p.units.numpy(),
                "train_iou": p.scores.numpy(),
            }
        )
        .sort_values("train_iou", ascending=False, na_position="last", kind="stable")
        .assign(rank=lambda f: np.arange(1, len(f) + 1))
        for p in pairs
        if p.ok
    ]
    columns = ["class", "region", "unit", "train_iou", "rank"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def table_metrics(table: pd.DataFrame) -> dict[str, float]:
    """``neurons/<class>/<region>/...`` per pair with a candidate, and run-level totals."""
    out: dict[str, float] = {}
    ok = table[table.status != "no_train_image_with_region"]
    for row in ok.to_dict("records"):
        prefix = f"neurons/{row['class']}/{row['region']}"
        out[f"{prefix}/best_unit"] = float(row["best_unit"])
        out[f"{prefix}/train_iou"] = float(row["train_iou"])
        out[f"{prefix}/heldout_iou"] = float(row["heldout_iou_mean"])
        out[f"{prefix}/heldout_share_above_0.5"] = float(row["heldout_share_above_0.5"])
    scored = table[table.status == "ok"]
    out["neurons/pairs"] = float(len(table))
    out["neurons/pairs_scored"] = float(len(scored))
    out["neurons/pairs_skipped"] = float(len(table) - len(scored))
    out["neurons/skipped_empty_heldout"] = float(table.n_skipped_empty.sum())
    out["neurons/skipped_empty_train"] = float(table.n_train_skipped_empty.sum())
    if len(scored):
        out["neurons/train_iou_mean"] = float(scored.train_iou.mean())
        out["neurons/heldout_iou_mean"] = float(scored.heldout_iou_mean.mean())
    return {k: v for k, v in out.items() if math.isfinite(v)}


def _denormalise(images: torch.Tensor, mean, std) -> np.ndarray:
    m = torch.tensor(mean, dtype=images.dtype)[:, None, None]
    s = torch.tensor(std, dtype=images.dtype)[:, None, None]
    return ((images.cpu() * s + m).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def render_tiles(
    engine: UnitGradCAM,
    dataset: Dataset,
    items: Sequence[tuple[int, int, str, str]],
    regions: Mapping[str, int | None],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, str]]:
    """Overlay tiles for ``(dataset index, unit, region, caption)`` items: the image, the
    unit's ReLU map scaled by its max, and the region mask (recomputed for these few
    images only, so the passes above never keep full-resolution maps)."""
    names = list(regions)
    tiles = []
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        (batch,) = loader(dataset, [i for i, *_ in chunk], len(chunk))
        units = torch.as_tensor([[u] for _, u, _, _ in chunk])
        with engine.forward(batch["image"].to(device)) as fwd:
            cams = fwd.cams(units.to(device))[:, 0].detach().clamp(min=0).cpu()
        peak = cams.flatten(1).amax(1).clamp(min=1e-12)[:, None, None]
        scaled = (cams / peak).numpy()
        masks = region_masks(batch, regions).numpy()
        rgb = _denormalise(batch["image"], mean, std)
        for k, (_, _, region, caption) in enumerate(chunk):
            tiles.append((rgb[k], scaled[k], masks[k, names.index(region)], caption))
    return tiles


def write_figures(
    out: Path,
    table: pd.DataFrame,
    pairs: Sequence[PairSearch],
    heldout: pd.DataFrame,
    engine: UnitGradCAM,
    datasets: tuple[Dataset, Dataset],
    regions: Mapping[str, int | None],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    classes: Sequence[str],
    n_mosaic: int = 8,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    progress: bool = False,
    title: str = "",
) -> None:
    """``neurons_table.png``, ``generalisation/<class>_<region>.png`` and
    ``mosaics/<class>_<region>.png`` (train top-k and held-out top by activation)."""
    table_figure(
        table.assign(row_label=table["class"] + " " + table["class_name"].astype(str)),
        out / "neurons_table.png",
        title,
    )
    (out / "generalisation").mkdir(parents=True, exist_ok=True)
    (out / "mosaics").mkdir(parents=True, exist_ok=True)
    groups = dict(list(heldout.groupby(["label", "region"]))) if len(heldout) else {}
    ok = [p for p in pairs if p.ok]
    # mosaic items of every pair first, so their maps are rendered in a few full batches
    items: dict[str, list] = {"train": [], "heldout": []}
    spans = []
    for pair in ok:
        unit = pair.best_unit
        scores = groups.get((pair.label, pair.region), pd.DataFrame(columns=heldout.columns))
        tops = zip(
            pair.top[:n_mosaic, pair.best].tolist(),
            pair.top_act[:n_mosaic, pair.best].tolist(),
            pair.top_iou[:n_mosaic, pair.best].tolist(),
            strict=True,
        )
        best = scores.sort_values("activation", ascending=False, kind="stable").head(n_mosaic)
        held = zip(best["position"], best["activation"], best["iou"], strict=True)
        span = {}
        for split, rows in (("train", tops), ("heldout", held)):
            start = len(items[split])
            items[split] += [
                (int(i), unit, pair.region, f"act {a:.2f} IoU {v:.2f}") for i, a, v in rows
            ]
            span[split] = slice(start, len(items[split]))
        spans.append((pair, scores, span))
    kwargs = {"batch_size": batch_size, "device": device}
    tiles = {
        split: render_tiles(engine, dataset, items[split], regions, mean, std, **kwargs)
        for split, dataset in zip(("train", "heldout"), datasets, strict=True)
    }
    for pair, scores, span in tqdm(spans, desc="neuron figures", disable=not progress):
        cls = classes[pair.label]
        stem, head = f"{cls}_{pair.region}", f"{cls} / {pair.region}: unit {pair.best_unit}"
        generalisation_figure(
            scores.iou.to_numpy(float),
            scores.activation.to_numpy(float),
            pair.top_iou[:, pair.best].numpy(),
            pair.top_act[:, pair.best].numpy(),
            out / "generalisation" / f"{stem}.png",
            f"{head} (train IoU {pair.train_iou:.2f})",
        )
        rows = [
            ("train top-k", tiles["train"][span["train"]]),
            ("held-out top", tiles["heldout"][span["heldout"]]),
        ]
        unit_mosaic(rows, out / "mosaics" / f"{stem}.png", head)
