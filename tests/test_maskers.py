"""Maskers: gt, grabcut on a known object, yolov8_seg code path with random weights."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from conftest import compose_config
from sage.errors import SageError
from sage.maskers import build_masker, list_maskers, mask_box
from sage.maskers.yolov8_seg import select_driver
from sage.models import MissingWeightsError


def _scene(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A textured background with a red disc: the disc is the known foreground."""
    rng = np.random.default_rng(0)
    image = rng.integers(60, 140, (size, size, 3)).astype(np.uint8)
    image[..., 2] = 200  # bluish background
    yy, xx = np.mgrid[:size, :size]
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
    image[mask] = (220, 40, 40)
    return image, mask


def test_registry_lists_the_three_maskers():
    assert {"gt", "yolov8_seg", "grabcut"} <= set(list_maskers())
    with pytest.raises(SageError, match="unknown masker 'sam'"):
        build_masker({"name": "sam"})


def test_gt_masker_reads_mask_and_records_failures(tmp_path):
    image, mask = _scene()
    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp_path / "m.png")
    Image.new("L", (8, 8)).save(tmp_path / "small.png")
    rows = [SimpleNamespace(mask_path=str(tmp_path / p)) for p in ("m.png", "small.png")]
    rows.append(SimpleNamespace(mask_path=None))
    ok, wrong_size, missing = build_masker({"name": "gt"})([image] * 3, rows)
    assert (ok.mask == mask).all() and ok.box == mask_box(mask)
    assert wrong_size.failure.startswith("gt_mask_size_mismatch") and wrong_size.mask is None
    assert missing.failure == "no_gt_mask"


def test_grabcut_recovers_a_known_object():
    image, mask = _scene()
    # Box = the disc's box plus a 4 px margin (what a detector would give). GrabCut models
    # colour inside vs outside the box; a flat-coloured disc on a different background is
    # its easy case, so anything below 0.8 IoU would mean the seeding is wrong.
    x0, y0, x1, y1 = mask_box(mask)
    box = [(x0 - 4) / 64, (y0 - 4) / 64, (x1 + 4) / 64, (y1 + 4) / 64]
    (result,) = build_masker({"name": "grabcut", "box": box})([image], [SimpleNamespace()])
    iou = (result.mask & mask).sum() / (result.mask | mask).sum()
    assert iou > 0.8, iou


def test_grabcut_rejects_bad_box():
    with pytest.raises(SageError, match=r"masker\.box"):
        build_masker({"name": "grabcut", "box": [0.5, 0.5, 0.2, 0.9]})


def test_yolov8_seg_needs_weights_and_names_the_file(tmp_path):
    with pytest.raises(MissingWeightsError, match=r"yolov8s-seg\.pt"):
        build_masker({"name": "yolov8_seg", "weights": str(tmp_path / "yolov8s-seg.pt")})
    with pytest.raises(MissingWeightsError, match=r"masker\.weights"):
        build_masker({"name": "yolov8_seg"})


def test_yolov8_seg_random_weights_runs_batched_and_reports_no_person():
    masker = build_masker(
        {"name": "yolov8_seg", "weights": "yolov8n-seg.yaml", "imgsz": 64, "batch_size": 2}
    )
    images = [_scene()[0] for _ in range(3)]
    results = masker(images, [SimpleNamespace()] * 3)
    assert len(results) == 3
    # random weights find nobody; the failure is a recorded reason, not an empty mask
    assert all(r.failure == "no_person_found" and r.mask is None for r in results)


def test_select_driver_rules():
    masks = np.zeros((2, 100, 100), bool)
    masks[0, 0:60, 0:60] = True  # large, in the corner
    masks[1, 40:60, 40:60] = True  # small, central
    boxes = np.array([mask_box(m) for m in masks], float)
    assert select_driver(masks, boxes, "largest") == 0
    assert select_driver(masks, boxes, "central") == 1
    with pytest.raises(SageError):
        select_driver(masks, boxes, "random")


class _WritesMarker:
    """Unpickling this runs ``exec``: what a crafted weights file would do."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('ran')",)


@pytest.fixture
def fake_yolo(monkeypatch):
    """ultralytics.YOLO replaced by a recorder: which file would have been unpickled."""
    import ultralytics

    handed = []
    monkeypatch.setattr(ultralytics, "YOLO", lambda weights: handed.append(weights))
    return handed


def test_yolov8_seg_refuses_weights_that_need_full_unpickling(tmp_path, fake_yolo):
    import torch

    marker = tmp_path / "marker"
    crafted = tmp_path / "yolov8s-seg.pt"
    torch.save({"model": _WritesMarker(str(marker))}, crafted)
    with pytest.raises(SageError) as err:
        build_masker({"name": "yolov8_seg", "weights": str(crafted)})
    message = str(err.value)
    assert f"masker.weights={crafted} is not loadable with weights_only=True" in message
    assert "set masker.trust_weights=true if you trust it" in message and "\n" not in message
    assert not marker.exists() and fake_yolo == []  # nothing ran, nothing was handed on

    # the user's opt-in hands the file to ultralytics unchecked
    build_masker({"name": "yolov8_seg", "weights": str(crafted), "trust_weights": True})
    assert fake_yolo == [str(crafted)]
    assert not marker.exists()  # our check did not unpickle it either


def test_yolov8_seg_passes_on_weights_only_files_without_opt_in(tmp_path, fake_yolo):
    import torch

    plain = tmp_path / "plain.pt"
    torch.save({"model": {"w": torch.zeros(2)}}, plain)
    build_masker({"name": "yolov8_seg", "weights": str(plain)})
    assert fake_yolo == [str(plain)]
    cfg = compose_config("prepare", tmp_path, ["masker=yolov8_seg"])
    assert cfg.masker.trust_weights is False  # the default: refused unless the user opts in
