"""Run names, breakdown keys and the closing table shared by every stage (sage.tracking)."""

from __future__ import annotations

from sage.explain.sinks.scalars import closing_table
from sage.tracking.breakdowns import is_breakdown, split_breakdowns, write_breakdowns
from sage.tracking.console import compact_table, run_name


def test_run_names_lead_with_model_and_variant_and_end_with_the_time():
    assert run_name("resnet18", "seg", "synth-sf3d", 10, "explain", "20260101-000000") == (
        "resnet18-seg/synth-sf3d-nc10/explain-20260101-000000"
    )
    assert run_name("vit", None, None, 3, "evaluate").startswith("vit-unknown/unknown-nc3/")


def test_breakdowns_are_per_class_part_bin_split_and_pair():
    parts = ["head", "spurious", "fg"]
    headline = [
        "val_sage/gradcam/fg_mass",
        "val_sage/gradcam/fg_mass/correct",
        "explain/gradcam/fg_mass/error",
        "explain/gradcam/iou/fg",
        "explain/gradcam/arcc",
        "explain/rfs/rfs",
        "eval/gradcam/fg_mass",
        "eval/clusters/groups_with_fewer_bins",
        "val_sage/acc",
    ]
    broken = [
        "val_sage/gradcam/fg_mass/c3",
        "val_sage/gradcam/arcc/error",
        "val_sage/gradcam/iou/fg/correct",
        "explain/gradcam/iou/head",
        "explain/gradcam/saliency_precision/spurious",
        "eval/clusters/correct/bin2/n",
        "explain/agreement/gradcam_vs_saliency/4x4/spearman",
    ]
    assert not [k for k in headline if is_breakdown(k, parts)]
    assert all(is_breakdown(k, parts) for k in broken)
    top, rest = split_breakdowns(dict.fromkeys(headline + broken, 0.5), parts)
    assert set(top) == set(headline) and set(rest) == set(broken)


def test_breakdowns_table_and_closing_table(tmp_path):
    path = write_breakdowns(tmp_path / "b.csv", {"explain/m/iou/head": 0.25}, epoch=3)
    assert path.read_text().splitlines() == ["epoch,key,value", "3,explain/m/iou/head,0.25"]
    result = {
        "explain/gradcam/fg_mass": 0.61,
        "explain/gradcam/iou/fg": 0.4,
        "explain/gradcam/iou/head": 0.1,  # a breakdown: not a column
        "explain/saliency/fg_mass": 0.55,
        "explain/rfs/rfs": 0.2,  # model-level, not a method row
        "explain/acc": 0.9,
        "run_id": "abc",
    }
    lines = closing_table(result, ("head",)).splitlines()
    assert lines[0].split() == ["method", "fg_mass", "iou/fg"]
    assert lines[1].split() == ["gradcam", "0.610", "0.400"]
    assert lines[2].split() == ["saliency", "0.550", "-"]
    assert compact_table({}, []) == ""
