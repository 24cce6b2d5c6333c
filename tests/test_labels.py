"""Declarative label mappings: shipped files, validation errors, apply, balancing weights."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from raw_fixtures import make_driver100
from sage.data.classes import DRIVER100_CLASSES, SF3D_CLASSES
from sage.data.labels import (
    LabelMapping,
    MappingError,
    list_mappings,
    load_mapping,
    mapping_from_dict,
)
from sage.data.readers import read_driver100, source_labels

SHIPPED = ["driver100_to_sf3d_nc10", "driver100_to_sf3d_nc10_merged", "sf3d_nc10"]


def frame(counts: dict[str, int]) -> pd.DataFrame:
    labels = [s for s, n in counts.items() for _ in range(n)]
    return pd.DataFrame({"image_id": [f"i{k}" for k in range(len(labels))], "source_label": labels})


def write_json(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def small(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "name": "x",
        "unified": {"u0": "zero", "u1": "one"},
        "forward": {"a": "u0", "b": "u1"},
        "drop": "unmapped",
    }
    data.update(overrides)
    return data


# ---------------------------------------------------------------- shipped mappings


def test_shipped_mappings_load_and_validate() -> None:
    assert list_mappings() == SHIPPED
    sf3d = load_mapping("sf3d_nc10")
    sf3d.validate(source_labels("sf3d"))
    assert sf3d.forward == {c: c for c in SF3D_CLASSES}
    for name in SHIPPED:
        m = load_mapping(name)
        assert m.classes == list(SF3D_CLASSES)
        assert m.unified == SF3D_CLASSES
    d = load_mapping("driver100_to_sf3d_nc10")
    assert d.name == "100-driver-sf3d-nc10" and d.source == "driver100"
    d.validate(DRIVER100_CLASSES)
    assert d.forward["C7_Text_Right"] == "c1" and d.forward["C22_Talk_to_Passenger"] == "c9"
    with pytest.raises(MappingError, match="names unknown source label"):
        d.validate(source_labels("sf3d"))  # wrong vocabulary is caught


def test_load_by_path_by_internal_name_and_not_found(tmp_path: Path) -> None:
    shipped = load_mapping("driver100_to_sf3d_nc10_merged")
    assert load_mapping("100-driver-sf3d-nc10-merged") == shipped
    assert load_mapping("driver100_to_sf3d_nc10_merged.json") == shipped
    path = write_json(tmp_path / "mine.json", json.dumps(small()))
    assert load_mapping(path).name == "x"
    assert load_mapping(str(path)).classes == ["u0", "u1"]
    with pytest.raises(MappingError) as err:
        load_mapping("driver100_to_sf3d_nc12")
    assert "'driver100_to_sf3d_nc12' not found" in str(err.value)
    assert all(name in str(err.value) for name in SHIPPED)


def test_reverse_is_derived_for_provenance() -> None:
    merged = load_mapping("driver100_to_sf3d_nc10_merged")
    assert merged.reverse["c5"] == ["C18_Operate_Radio", "C19_Operate_GPS"]
    assert merged.reverse["c6"] == ["C16_Eat_Left", "C17_Eat_Right"]
    assert merged.reverse["c0"] == ["C1_Drive_Safe"]
    assert sum(len(v) for v in merged.reverse.values()) == len(merged.forward) == 12
    assert merged.to_dict()["reverse"] == merged.reverse
    json.dumps(merged.to_dict())


# ---------------------------------------------------------------- apply and weights


def test_apply_counts_every_unmapped_label() -> None:
    m = load_mapping("driver100_to_sf3d_nc10")
    df = frame({"C1_Drive_Safe": 2, "C2_Sleep": 3, "C10_Look_Right": 1, "C22_Talk_to_Passenger": 1})
    out, stats = m.apply(df)
    assert stats["unmapped"] == {"C10_Look_Right": 1, "C2_Sleep": 3}
    assert stats["kept"] == 3 and stats["dropped"] == 4
    assert out["label"].tolist() == [0, 0, 9]
    assert out["label_name"].tolist() == ["c0", "c0", "c9"]
    assert out["weight"].tolist() == [1.0, 1.0, 1.0]
    assert stats["per_class"]["c0"] == 2 and stats["per_class"]["c5"] == 0
    assert out["image_id"].tolist() == ["i0", "i1", "i6"]
    assert len(df) == 7  # input untouched


def test_merged_weights_hand_computed() -> None:
    m = load_mapping("driver100_to_sf3d_nc10_merged")
    df = frame({"C18_Operate_Radio": 2, "C19_Operate_GPS": 6, "C1_Drive_Safe": 3})
    out, stats = m.apply(df)
    # c5 = C18 (2) + C19 (6): mean 4, k 2 -> 4/(2*2) = 1.0 and 4/(2*6) = 1/3.
    assert stats["weights"]["C18_Operate_Radio"] == pytest.approx(1.0)
    assert stats["weights"]["C19_Operate_GPS"] == pytest.approx(1 / 3)
    assert stats["weights"]["C1_Drive_Safe"] == 1.0
    totals = out.groupby("source_label")["weight"].sum()
    assert totals["C18_Operate_Radio"] == pytest.approx(2.0)
    assert totals["C19_Operate_GPS"] == pytest.approx(2.0)
    assert out.groupby("label_name")["weight"].sum()["c5"] == pytest.approx(4.0)
    assert (out.loc[out["label_name"] == "c0", "weight"] == 1.0).all()
    assert set(out.loc[out["label_name"] == "c5", "label"]) == {5}
    # A merged class with only one constituent present is unmerged in effect: weight 1.
    out, _ = m.apply(frame({"C17_Eat_Right": 5}))
    assert out["weight"].tolist() == [1.0] * 5 and out["label"].tolist() == [6] * 5


def test_apply_on_a_read_dataset(tmp_path: Path) -> None:
    root = make_driver100(
        tmp_path / "d100",
        [
            "C1_Drive_Safe/P001_V1_S1_0001.jpg",
            "C10_Look_Right/P001_V1_S1_0001.jpg",
            "C19_Operate_GPS/P002_V1_S1_0001.jpg",
        ],
    )
    out, stats = load_mapping("driver100_to_sf3d_nc10_merged").apply(read_driver100(root))
    assert stats["unmapped"] == {"C10_Look_Right": 1}
    assert dict(zip(out["source_label"], out["label"], strict=True)) == {
        "C1_Drive_Safe": 0,
        "C19_Operate_GPS": 5,
    }
    assert {"image_id", "source_path", "split", "label", "label_name", "weight"} <= set(out)


def test_drop_error_policy_and_missing_column() -> None:
    m = mapping_from_dict(small(drop="error"))
    with pytest.raises(MappingError, match=r"does not map source labels .*'c'"):
        m.apply(frame({"a": 1, "c": 2}))
    with pytest.raises(MappingError, match="no 'source_label' column"):
        m.apply(pd.DataFrame({"label": [1]}))


# ---------------------------------------------------------------- validation errors


def test_unknown_source_label_is_named() -> None:
    m = LabelMapping("x", {"c0": "safe"}, {"C1_Drive_Safe": "c0", "C99_Foo": "c0"})
    with pytest.raises(MappingError, match="mapping 'x' names unknown source label 'C99_Foo'"):
        m.validate(DRIVER100_CLASSES)


def test_undeclared_unified_code_is_named() -> None:
    with pytest.raises(
        MappingError, match="maps source label 'b' to undeclared unified class 'u7'"
    ):
        mapping_from_dict(small(forward={"a": "u0", "b": "u7"}))


def test_empty_unified_class_is_named() -> None:
    with pytest.raises(MappingError, match="mapping 'x': unified class 'u1' receives no source"):
        mapping_from_dict(small(forward={"a": "u0", "b": "u0"}))


def test_duplicate_keys_are_detected_while_parsing(tmp_path: Path) -> None:
    text = (
        '{"name": "dup", "unified": {"u0": "zero"},'
        ' "forward": {"C1_Drive_Safe": "u0", "C1_Drive_Safe": "u0"}}'
    )
    with pytest.raises(
        MappingError, match=r"mapping 'dup' .* maps source label 'C1_Drive_Safe' twice"
    ):
        load_mapping(write_json(tmp_path / "dup.json", text))
    text = '{"name": "dupu", "unified": {"u0": "a", "u0": "b"}, "forward": {"s": "u0"}}'
    with pytest.raises(MappingError, match="declares unified class 'u0' twice"):
        load_mapping(write_json(tmp_path / "dupu.json", text))
    text = '{"name": "a", "name": "b", "unified": {"u0": "a"}, "forward": {"s": "u0"}}'
    with pytest.raises(MappingError, match="key 'name' appears twice"):
        load_mapping(write_json(tmp_path / "dupname.json", text))


def test_bad_or_missing_keys(tmp_path: Path) -> None:
    data = small()
    del data["forward"]
    with pytest.raises(MappingError, match=r"missing key\(s\) \['forward'\]"):
        mapping_from_dict(data)
    with pytest.raises(MappingError, match=r"unexpected key\(s\) \['foward'\]"):
        mapping_from_dict(small(foward={}))
    with pytest.raises(MappingError, match="drop must be one of"):
        mapping_from_dict(small(drop="keep"))
    with pytest.raises(MappingError, match="'unified' must be a JSON object"):
        mapping_from_dict(small(unified=["u0", "u1"]))
    with pytest.raises(MappingError, match="declares unknown source 'kitti'"):
        load_mapping(write_json(tmp_path / "src.json", json.dumps(small(source="kitti"))))
    with pytest.raises(MappingError, match=r"broken\.json is not valid JSON"):
        load_mapping(write_json(tmp_path / "broken.json", '{"name": "x",'))


def test_mapping_is_frozen_and_hashable() -> None:
    m = load_mapping("sf3d_nc10")
    with pytest.raises(AttributeError):
        m.name = "y"  # type: ignore[misc]
    assert hash(m) == hash(load_mapping("sf3d_nc10"))
    assert isinstance(m, ValueError) is False and issubclass(MappingError, ValueError)
