"""The study's numbers with their intervals: per model, and the differences its findings state.

Every quantity is computed from per-image evidence (:mod:`.evidence`) and bootstrapped over
test images; differences between two models, or one model on two versions of the images,
are paired by image_id (the variants and the cue-shuffled twin share image ids), so the
interval of a difference is narrower than the two intervals side by side suggest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..metrics.rfs import relative_sensitivity
from ..stats import Interval, difference_interval, mean_interval, statistic_interval
from .evidence import SALIENCY_COLUMNS, SeedEvidence

STICKER = "saliency_precision/spurious"


@dataclass(frozen=True)
class Domain:
    """A source domain of the study: its name, its cross-domain target and, where the
    domain has a spurious cue, its twin with the cue shuffled."""

    name: str
    target: str | None
    twin: str | None


@dataclass(frozen=True)
class Comparison:
    """One difference a finding states: ``a − b`` with the two sides' own intervals."""

    diff: Interval
    a: Interval
    b: Interval


def _paired(a: pd.Series | None, b: pd.Series | None) -> tuple[np.ndarray, np.ndarray]:
    if a is None or b is None:
        return np.array([]), np.array([])
    joined = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner")
    return joined["a"].to_numpy(float), joined["b"].to_numpy(float)


def compare_series(a: pd.Series | None, b: pd.Series | None, seed: int = 0) -> Comparison:
    """mean(a) − mean(b) over the images both have (paired), and each side over those."""
    x, y = _paired(a, b)
    return Comparison(
        difference_interval(x, y, paired=True, seed=seed),
        mean_interval(x, seed=seed),
        mean_interval(y, seed=seed),
    )


def _rfs_statistic(fg: np.ndarray, bg: np.ndarray) -> np.ndarray:
    return relative_sensitivity(np.mean(fg, -1), np.mean(bg, -1)).numpy()


def rfs_interval(table: pd.DataFrame | None, seed: int = 0) -> Interval:
    """RFS (RIVAL10) of a model from its per-image noise accuracies, bootstrapped."""
    if table is None:
        return mean_interval(np.array([]))
    return statistic_interval(
        _rfs_statistic, [table["acc_fg"].to_numpy(), table["acc_bg"].to_numpy()], seed=seed
    )


def _rfs_difference(fa, ba, fb, bb) -> np.ndarray:
    return _rfs_statistic(fa, ba) - _rfs_statistic(fb, bb)


def compare_rfs(a: pd.DataFrame | None, b: pd.DataFrame | None, seed: int = 0) -> Comparison:
    """RFS(a) − RFS(b) over the images both were tested on, resampled together."""
    if a is None or b is None:
        empty = mean_interval(np.array([]))
        return Comparison(empty, empty, empty)
    joined = a.join(b, how="inner", lsuffix="_a", rsuffix="_b")
    cols = [joined[c].to_numpy() for c in ("acc_fg_a", "acc_bg_a", "acc_fg_b", "acc_bg_b")]
    return Comparison(
        statistic_interval(_rfs_difference, cols, seed=seed),
        rfs_interval(a.loc[joined.index], seed),
        rfs_interval(b.loc[joined.index], seed),
    )


# ---------------------------------------------------------------------- per model


def model_quantities(ev: SeedEvidence, domain: Domain, variant: str) -> dict[str, Interval]:
    """One model's numbers (``{column: Interval}``), the columns of the report's tables.

    test/acc: in-domain test images of its own variant; cue_acc / shuffled_acc: full test
    images with the cue as generated / shuffled; cross_acc_full / cross_acc_same_variant:
    the other domain's full images / same variant; ``<saliency>/full_images`` and
    ``<saliency>/own_variant``: GradCAM on the source domain's full test images / on the
    model's own variant; rfs/rfs on full images.
    """
    model, seed = f"{domain.name}/{variant}", ev.seed
    cells = {
        "test/acc": f"{domain.name}/{variant}",
        "cue_acc": f"{domain.name}/full" if domain.twin else None,
        "shuffled_acc": f"{domain.twin}/full" if domain.twin else None,
        "cross_acc_full": f"{domain.target}/full" if domain.target else None,
        "cross_acc_same_variant": f"{domain.target}/{variant}" if domain.target else None,
    }
    out = {}
    for column, target in cells.items():
        values = ev.correct(model, target) if target else None
        if values is not None:
            out[column] = mean_interval(values.to_numpy(), seed=seed)
    for where in ("full", "own"):
        table = ev.saliency.get((model, where))
        if table is None:
            continue
        suffix = "full_images" if where == "full" else "own_variant"
        for column in SALIENCY_COLUMNS:
            if column in table and (column != STICKER or domain.twin):
                out[f"{column}/{suffix}"] = mean_interval(table[column].to_numpy(), seed=seed)
    if model in ev.rfs:
        out["rfs/rfs"] = rfs_interval(ev.rfs[model], seed)
    return out


# ---------------------------------------------------------------------- comparisons


def _cue_cells(ev: SeedEvidence, d: Domain, variant: str) -> tuple:
    """A model's per-image correctness on full test images with the cue as generated and
    with it shuffled (the same scenes)."""
    model = f"{d.name}/{variant}"
    return ev.correct(model, f"{d.name}/full"), ev.correct(model, f"{d.twin}/full")


def shortcut_drop(ev: SeedEvidence, d: Domain, variant: str) -> Comparison:
    """A model's accuracy on full test images with the cue as generated minus with the cue
    shuffled (the same scenes)."""
    return compare_series(*_cue_cells(ev, d, variant), ev.seed)


def _drop(ev: SeedEvidence, d: Domain, variant: str) -> pd.Series | None:
    cue, shuffled = _cue_cells(ev, d, variant)
    if cue is None or shuffled is None:
        return None
    return (cue - shuffled).dropna()


def shortcut_gap(ev: SeedEvidence, d: Domain, pair: tuple[str, str]) -> Comparison:
    """How much more the first model's accuracy drops under the shuffle than the second's,
    per image (same scenes, same images for both models)."""
    return compare_series(_drop(ev, d, pair[0]), _drop(ev, d, pair[1]), ev.seed)


def saliency_gap(
    ev: SeedEvidence, d: Domain, pair: tuple[str, str], column: str, where: str
) -> Comparison:
    """A saliency number of two models; ``where``: ``full`` (both on full images) or
    ``own`` (each on its own variant; same image ids)."""
    tables = [ev.saliency.get((f"{d.name}/{v}", where)) for v in pair]
    series = [t[column] if t is not None and column in t else None for t in tables]
    return compare_series(*series, ev.seed)


def accuracy_gap(
    ev: SeedEvidence, d: Domain, pair: tuple[str, str], targets: tuple[str, str]
) -> Comparison:
    """Accuracy of model ``pair[0]`` on ``targets[0]`` vs ``pair[1]`` on ``targets[1]``."""
    a = ev.correct(f"{d.name}/{pair[0]}", targets[0])
    b = ev.correct(f"{d.name}/{pair[1]}", targets[1])
    return compare_series(a, b, ev.seed)


def rfs_gap(ev: SeedEvidence, d: Domain, pair: tuple[str, str]) -> Comparison:
    return compare_rfs(ev.rfs.get(f"{d.name}/{pair[0]}"), ev.rfs.get(f"{d.name}/{pair[1]}"))
