"""The study's per-image evidence: what each model got right and where its saliency fell, on
every test image, read back from the files its grid cells and explain runs wrote.

Intervals are bootstrapped over test images, so findings need the per-image values behind
each number, not the run's aggregates: a grid cell's ``predictions.csv`` (one row per image,
``correct``), explain's ``summary.csv`` (``fg_mass``, ``bg_mass`` per image and method),
``metrics.csv`` (``saliency_precision/spurious``, ``arcc``) and ``rfs_per_image.csv``
(``acc_fg``, ``acc_bg``). One :class:`SeedEvidence` holds one training seed's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..evaluation.cell_runs import cell_slug

METHOD = "gradcam"  # the method every model is explained with
SALIENCY_COLUMNS = ("fg_mass", "bg_mass", "saliency_precision/spurious", "arcc")


@dataclass
class SeedEvidence:
    """One seed's models and their per-image tables (all indexed by image_id).

    ``predictions[(model, target)]``: ``correct`` (0/1) of model label ``"<dataset>/<variant>"``
    on test set label ``target``; ``saliency[(model, "full" | "own")]``: GradCAM's
    :data:`SALIENCY_COLUMNS` on the source domain's full test images or on the model's own
    variant; ``rfs[model]``: ``acc_fg``, ``acc_bg`` under foreground / background noise.
    """

    seed: int
    runs: dict[tuple[str, str], str]
    predictions: dict[tuple[str, str], pd.Series] = field(default_factory=dict)
    saliency: dict[tuple[str, str], pd.DataFrame] = field(default_factory=dict)
    rfs: dict[str, pd.DataFrame] = field(default_factory=dict)
    train_metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    def correct(self, model: str, target: str) -> pd.Series | None:
        return self.predictions.get((model, target))


def _cell_dir(grid_dir: Path, model: str, target: str) -> Path | None:
    pattern = re.compile(rf"\d+-{re.escape(cell_slug(model))}--{re.escape(cell_slug(target))}")
    found = [d for d in (grid_dir / "cells").glob("*") if pattern.fullmatch(d.name)]
    return found[0] if found else None


def grid_predictions(result: dict, client=None) -> dict[tuple[str, str], pd.Series]:
    """``{(model label, target label): correct by image_id}`` of one evaluation grid.

    Read from the cell's directory, or, for a cell the grid reused from an earlier run with
    the same grid key (no local directory), from that cell run's MLflow artifacts."""
    out_dir = Path(result.get("output_dir", ""))
    listing = out_dir / "grid" / "cells.csv"
    if not listing.is_file():
        return {}
    out = {}
    for cell in pd.read_csv(listing).itertuples():
        local = _cell_dir(out_dir, cell.row, cell.column)
        path = local / "predictions.csv" if local is not None else None
        if (path is None or not path.is_file()) and client is not None and cell.run_id:
            dest = out_dir / "reused_cells" / str(cell.run_id)
            dest.mkdir(parents=True, exist_ok=True)
            try:
                path = Path(client.download_artifacts(cell.run_id, "predictions.csv", str(dest)))
            except Exception:  # an older cell run without the table: no per-image evidence
                path = None
        if path is None or not path.is_file():
            continue
        frame = pd.read_csv(path, usecols=["image_id", "correct"])
        out[(cell.row, cell.column)] = frame.set_index("image_id")["correct"].astype(float)
    return out


def explain_saliency(explain_dir: str | Path | None) -> pd.DataFrame | None:
    """GradCAM's per-image :data:`SALIENCY_COLUMNS` of one explain run (None when absent)."""
    if explain_dir is None:
        return None
    explain_dir = Path(explain_dir)
    summary = explain_dir / "summary.csv"
    if not summary.is_file():
        return None
    table = pd.read_csv(summary)
    table = table[table["method"] == METHOD].set_index("image_id")
    out = table[["fg_mass", "bg_mass"]].astype(float)
    metrics = explain_dir / "metrics.csv"
    if metrics.is_file():
        per_image = pd.read_csv(metrics)
        per_image = per_image[per_image["method"] == METHOD].set_index("image_id")
        for column in SALIENCY_COLUMNS[2:]:
            if column in per_image:
                out[column] = per_image[column].astype(float)
    return out


def explain_rfs(explain_dir: str | Path | None) -> pd.DataFrame | None:
    """Per-image RFS accuracies (``acc_fg``, ``acc_bg``) of one explain run."""
    if explain_dir is None:
        return None
    path = Path(explain_dir) / "rfs_per_image.csv"
    if not path.is_file():
        return None
    return pd.read_csv(path).set_index("image_id")[["acc_fg", "acc_bg"]].astype(float)


def load_seed_evidence(
    seed: int,
    runs: dict[tuple[str, str], str],
    grids: dict[str, dict],
    explains: dict[tuple[str, str], dict],
    own: dict[tuple[str, str], dict],
    train_metrics: dict[str, dict[str, float]] | None = None,
    client=None,
) -> SeedEvidence:
    """Read one seed's evidence from its grids' cells and explain runs' output dirs
    (``client``: the MLflow client to fetch reused grid cells' predictions with)."""
    ev = SeedEvidence(seed, runs, train_metrics=train_metrics or {})
    for result in grids.values():
        ev.predictions.update(grid_predictions(result, client))
    for (name, variant), result in explains.items():
        label = f"{name}/{variant}"
        table = explain_saliency(result.get("output_dir"))
        if table is not None:
            ev.saliency[(label, "full")] = table
        rfs = explain_rfs(result.get("output_dir"))
        if rfs is not None:
            ev.rfs[label] = rfs
        # the full-trained model's own variant is the full images; others' need their run
        mine = result if variant == "full" else own.get((name, variant), {})
        table = explain_saliency(mine.get("output_dir"))
        if table is not None:
            ev.saliency[(label, "own")] = table
    return ev
