"""Split assignment holds groups out whole and fails loudly on impossible requests."""

from __future__ import annotations

import pandas as pd
import pytest

from sage.data.splits import assign_splits
from sage.errors import SageError


def _frame(n_groups: int = 10, per_group: int = 3) -> pd.DataFrame:
    groups = [f"p{g:03d}" for g in range(n_groups) for _ in range(per_group)]
    return pd.DataFrame(
        {"image_id": [f"i{i}" for i in range(len(groups))], "group": groups, "split": None}
    )


def test_group_holdout_keeps_groups_whole_and_is_seeded():
    df, report = assign_splits(
        _frame(), {"method": "group_holdout", "val_fraction": 0.2, "test_fraction": 0.2, "seed": 3}
    )
    assert df.groupby("group")["split"].nunique().max() == 1
    assert df.drop_duplicates("group")["split"].value_counts().to_dict() == {
        "train": 6,
        "val": 2,
        "test": 2,
    }
    again, _ = assign_splits(
        _frame(), {"method": "group_holdout", "val_fraction": 0.2, "test_fraction": 0.2, "seed": 3}
    )
    assert df["split"].tolist() == again["split"].tolist()
    assert sorted(report["groups"]["test"]) == sorted(df.loc[df.split == "test", "group"].unique())


def test_explicit_groups_and_unknown_group_error():
    df, _ = assign_splits(
        _frame(), {"method": "group_holdout", "val_groups": ["p001"], "test_groups": ["p002"]}
    )
    assert set(df.loc[df.split == "test", "group"]) == {"p002"}
    with pytest.raises(SageError, match="p999"):
        assign_splits(
            _frame(), {"method": "group_holdout", "val_groups": ["p999"], "test_groups": ["p002"]}
        )


def test_group_kfold_folds_partition_groups():
    tests = set()
    for fold in range(5):
        df, _ = assign_splits(_frame(), {"method": "group_kfold", "n_folds": 5, "fold": fold})
        fold_test = set(df.loc[df.split == "test", "group"])
        assert not fold_test & tests
        assert not fold_test & set(df.loc[df.split == "val", "group"])
        tests |= fold_test
    assert len(tests) == 10


def test_official_split_drops_and_counts_rows_without_split():
    df = _frame(2, 3)
    df["split"] = ["train", "val", "test", "train", None, "test"]
    out, report = assign_splits(df, {"method": "official"})
    assert len(out) == 5 and report["no_official_split"] == 1


def test_empty_split_is_an_error():
    df = _frame(2, 2)
    df["split"] = ["train", "train", "val", "val"]
    with pytest.raises(SageError, match="'test' is empty"):
        assign_splits(df, {"method": "official"})
    with pytest.raises(SageError, match="too few"):
        assign_splits(
            _frame(2), {"method": "group_holdout", "val_fraction": 0.5, "test_fraction": 0.5}
        )
