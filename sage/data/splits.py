"""Split assignment: official split files, or by group (driver) — never random by image.

SF3D frames are video stills of 26 drivers: a random split by image leaks drivers between
train and test and inflates accuracy, so groups (subjects) are held out whole.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from ..errors import SageError


def _holdout(groups: list[str], cfg: Mapping) -> dict[str, str]:
    rng = np.random.default_rng(int(cfg.get("seed", 0)))
    val_groups: Sequence[str] | None = cfg.get("val_groups")
    test_groups: Sequence[str] | None = cfg.get("test_groups")
    if val_groups is not None or test_groups is not None:
        val, test = set(val_groups or []), set(test_groups or [])
        unknown = sorted((val | test) - set(groups))
        if unknown:
            raise SageError(f"split names unknown groups {unknown}; known: {sorted(groups)}")
        if val & test:
            raise SageError(f"groups {sorted(val & test)} are both val and test")
    else:
        order = [groups[i] for i in rng.permutation(len(groups))]
        n_test = round(len(groups) * float(cfg.get("test_fraction", 0.2)))
        n_val = round(len(groups) * float(cfg.get("val_fraction", 0.2)))
        if len(groups) - n_test - n_val < 1:
            raise SageError(
                f"{len(groups)} groups are too few for the requested val/test fractions"
            )
        test, val = set(order[:n_test]), set(order[n_test : n_test + n_val])
    return {g: "test" if g in test else "val" if g in val else "train" for g in groups}


def _kfold(groups: list[str], cfg: Mapping) -> dict[str, str]:
    n_folds, fold = int(cfg.get("n_folds", 5)), int(cfg.get("fold", 0))
    if not 0 <= fold < n_folds:
        raise SageError(f"split.fold={fold} must be in [0, {n_folds})")
    if len(groups) < n_folds:
        raise SageError(f"{len(groups)} groups are too few for {n_folds} folds")
    folds = list(GroupKFold(n_splits=n_folds).split(groups, groups=groups))
    test_idx = set(folds[fold][1])
    val_idx = set(folds[(fold + 1) % n_folds][1])  # next fold validates, so val != test
    return {
        g: "test" if i in test_idx else "val" if i in val_idx else "train"
        for i, g in enumerate(groups)
    }


def assign_splits(df: pd.DataFrame, cfg: Mapping) -> tuple[pd.DataFrame, dict]:
    """Return ``df`` with a filled ``split`` column and a report of what was left out.

    ``cfg.method``: ``official`` (keep the reader's split; rows without one are dropped and
    counted), ``group_holdout`` (seeded shuffle of groups into val/test fractions, or explicit
    ``val_groups``/``test_groups``) or ``group_kfold`` (``n_folds``, ``fold``).
    """
    method = cfg.get("method", "group_holdout")
    df = df.copy()
    report: dict = {"method": method}
    if method == "official":
        missing = df["split"].isna()
        if missing.all():
            raise SageError("split.method=official but the dataset has no split files")
        report["no_official_split"] = int(missing.sum())
        df = df[~missing]
    elif method in ("group_holdout", "group_kfold"):
        if df["group"].isna().any():
            raise SageError(f"{int(df['group'].isna().sum())} images have no group to split by")
        groups = sorted(df["group"].astype(str).unique())
        assign = (_holdout if method == "group_holdout" else _kfold)(groups, cfg)
        df["split"] = df["group"].astype(str).map(assign)
        report["groups"] = {
            s: sorted(g for g, v in assign.items() if v == s) for s in ("train", "val", "test")
        }
    else:
        raise SageError(
            f"unknown split.method {method!r}; use official, group_holdout or group_kfold"
        )
    for split in ("train", "val", "test"):
        if not (df["split"] == split).any():
            raise SageError(f"split {split!r} is empty after split.method={method}")
    return df, report
