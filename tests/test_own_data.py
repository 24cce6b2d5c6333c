"""Your own data: a folder of class subfolders prepared without masks (masker=none) and
trained on (dataset=folder/*), extra regions through ROOT_parts, the metric sets left out
without masks, arbitrary images as a dataset and a pretrained model with its own head."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from sage.data.image_folder import ImageFolderDataset, collate_images
from sage.data.prepared import PreparedDataset
from sage.errors import MissingWeightsError, SageError
from sage.maskers import build_masker
from sage.metrics.suite import mask_free_sets
from sage.models.pretrained import load_pretrained
from sage.models.weights import WeightsMismatchError
from sage.prepare import run as prepare_run

CLASSES = ("cat", "dog", "fox")
PER_CLASS = 10  # with split seed 0, every class lands in train, val and test
SPURIOUS = 1


def _rgb(path: Path, value: int, size: int = 32) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(value)
    a = rng.integers(0, 40, (size, size, 3), dtype=np.uint8)
    a[..., value % 3] += 180  # a class colour: learnable in a couple of steps
    Image.fromarray(a).save(path)


def _own_folder(tmp_path: Path, parts: bool = False) -> Path:
    """ROOT/<class>/img_<i>.png, and with ``parts`` a spurious corner patch per image in
    ROOT_parts (ids 0/1) with its legend."""
    root = tmp_path / "pets"
    for k, name in enumerate(CLASSES):
        for i in range(PER_CLASS):
            _rgb(root / name / f"img_{i}.png", k)
            if parts:
                label = np.zeros((32, 32), np.uint8)
                label[:8, :8] = SPURIOUS
                out = tmp_path / "pets_parts" / name / f"img_{i}.png"
                out.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(label).save(out)
    if parts:
        legend = {"0": "background", str(SPURIOUS): "spurious"}
        (tmp_path / "pets_parts" / "legend.json").write_text(json.dumps(legend))
    return root


def test_none_masker_gives_the_whole_frame():
    masker = build_masker({"name": "none"})
    (result,) = masker([np.zeros((6, 8, 3), np.uint8)], [None])
    assert result.failure is None and result.mask.all() and result.mask.shape == (6, 8)
    assert result.box == (0, 0, 8, 6) and masker.real_masks is False


def test_folder_without_masks_prepares_and_trains(compose_cfg, tmp_path):
    root = _own_folder(tmp_path, parts=True)
    cfg = compose_cfg(
        "prepare",
        ["dataset=folder/full", f"dataset.root={root}", "masker=none", "prepare.progress=false"],
    )
    assert cfg.dataset.num_classes == len(CLASSES)  # counted in the class folders
    out = prepare_run(cfg)
    assert set(out) == {"full"}  # a box or cut-out of the whole frame is the frame
    data = PreparedDataset.open(out["full"])
    assert data.classes == data.class_names == list(CLASSES)
    assert not data.has_masks and data.summary["has_masks"] is False
    assert set(data.summary["skipped_variants"]) == {"bbox", "seg", "bboxseg"}
    assert len(data.meta) == len(CLASSES) * PER_CLASS and data.gaps() == []
    # the extra region travels with the data: metrics can still score it
    assert data.part_names == {0: "background", SPURIOUS: "spurious"}
    kept, skipped = mask_free_sets({"alignment": {"tau": 0.5}}, data.part_names.values())
    assert kept == {"alignment": {"tau": 0.5, "regions": ["spurious"]}}
    assert set(skipped) == {"alignment/fg"}

    from sage.train import run as train_run

    metrics = train_run(
        compose_cfg(
            "train",
            [
                "dataset=folder/full",
                f"dataset.root={root}",
                "debug=fast",
                "callbacks=none",
                "model.input_size=32",
                "data.batch_size=8",
            ],
        )
    )
    assert 0 <= metrics["test/acc"] <= 1


def test_folder_with_masks_prepares_every_variant(compose_cfg, tmp_path):
    root = _own_folder(tmp_path)
    for image in root.rglob("*.png"):
        mask = np.zeros((32, 32), np.uint8)
        mask[8:24, 8:24] = 255
        out = tmp_path / "pets_masks" / image.relative_to(root)
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask).save(out)
    cfg = compose_cfg(
        "prepare",
        ["dataset=folder/seg", f"dataset.root={root}", "prepare.progress=false"],
    )
    out = prepare_run(cfg)
    assert set(out) == {"full", "bbox", "seg", "bboxseg"}
    assert PreparedDataset.open(out["seg"]).has_masks


def test_folder_config_errors(compose_cfg, tmp_path):
    cfg = compose_cfg("prepare", ["dataset=folder/full", f"dataset.root={tmp_path / 'nope'}"])
    with pytest.raises(Exception, match="does not exist"):
        cfg.dataset.num_classes  # noqa: B018  (resolves the class count)
    cfg = compose_cfg("prepare", ["dataset=folder/full"])
    with pytest.raises(Exception, match=r"dataset\.root"):
        OmegaConf.to_container(cfg.dataset, resolve=True, throw_on_missing=True)


@pytest.mark.parametrize(
    ("root", "message"),
    [
        (None, "Missing mandatory value: dataset.root (config key dataset.num_classes)"),
        ("nope", "nope does not exist (config key dataset.num_classes)"),
    ],
)
def test_folder_config_errors_are_one_line_on_the_command_line(tmp_path, root, message):
    args = ["dataset=folder/full", "masker=none"]
    args += [f"dataset.root={tmp_path / root}"] if root else []
    result = subprocess.run(
        [sys.executable, "-m", "sage.prepare", *args],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "SAGE_ROOT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line
    assert result.stderr.startswith("error: ") and message in result.stderr


def test_mask_free_sets_keep_what_needs_no_mask():
    sets = {"road": None, "rfs": {}, "mask_ranking": {"k": 0.1}, "alignment": {}}
    kept, skipped = mask_free_sets(sets)
    assert kept == {"road": {}}
    assert set(skipped) == {"rfs", "mask_ranking", "alignment"}
    assert all("no masks" in reason for reason in skipped.values())
    # regions asked for explicitly: fg is dropped, named parts stay
    kept, skipped = mask_free_sets(
        {"mask_ranking": {"regions": ["fg", "spurious"]}}, ["background", "spurious", "head"]
    )
    assert kept == {"mask_ranking": {"regions": ["spurious"]}}
    assert set(skipped) == {"mask_ranking/fg"}
    kept, skipped = mask_free_sets({"alignment": {"regions": ["head"]}}, ["head"])
    assert kept == {"alignment": {"regions": ["head"]}} and skipped == {}


# ---------------------------------------------------------------- arbitrary images


def test_image_folder_ids_masks_and_batches(tmp_path):
    images = tmp_path / "imgs"
    _rgb(images / "b" / "two.jpg", 1, size=20)
    _rgb(images / "a one.png", 0, size=20)
    (images / "notes.txt").write_text("not an image")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.full((20, 20), 255, np.uint8)).save(masks / "two.png")  # by file stem
    data = ImageFolderDataset(images, size=16, masks=masks)
    assert data.image_ids == ["a_one", "b-two"] and data.n_masks == 1
    first, second = data[0], data[1]
    assert "mask" not in first and first["image"].shape == (3, 16, 16)
    assert second["mask"].shape == (16, 16) and second["mask"].all()
    batch = collate_images([first, second])
    assert batch["image"].shape == (2, 3, 16, 16) and batch["has_mask"].tolist() == [False, True]
    assert not batch["mask"][0].any()
    # the same files through a glob: the same ids (relative to the glob's fixed folder)
    assert ImageFolderDataset(f"{images}/**/*", size=16).image_ids == data.image_ids
    assert ImageFolderDataset(images / "b" / "two.jpg", size=16).image_ids == ["two"]


def test_image_folder_errors_name_the_culprit(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SageError, match="no images"):
        ImageFolderDataset(tmp_path / "empty")
    with pytest.raises(SageError, match="no images"):
        ImageFolderDataset(f"{tmp_path}/*.jpg")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SageError, match=r"broken\.jpg"):
        ImageFolderDataset(bad)[0]
    with pytest.raises(SageError, match="masks folder"):
        ImageFolderDataset(bad, masks=tmp_path / "nowhere")


# ---------------------------------------------------------------- pretrained models


def test_load_pretrained_takes_the_class_count_from_the_file(tmp_path):
    from sage.models import create_backbone

    imagenet = tmp_path / "mobilenet_v2_imagenet.pth"
    torch.save(create_backbone("mobilenet_v2", 1000).state_dict(), imagenet)
    net, names, spec = load_pretrained("mobilenet_v2", imagenet)
    assert len(names) == 1000 and names[0] == "tench" and spec.name == "mobilenet_v2"
    assert not net.training and net(torch.zeros(1, 3, 32, 32)).shape == (1, 1000)

    five = tmp_path / "mobilenet_v2_five.pth"
    torch.save(create_backbone("mobilenet_v2", 5).state_dict(), five)
    net, names, _ = load_pretrained("mobilenet_v2", five)
    assert names == [f"class_{k}" for k in range(5)]
    assert torch.equal(net.classifier[1].weight, torch.load(five)["classifier.1.weight"])

    with pytest.raises(MissingWeightsError, match=r"missing\.pth"):
        load_pretrained("mobilenet_v2", tmp_path / "missing.pth")
    with pytest.raises(WeightsMismatchError):  # another architecture's file
        load_pretrained("resnet18", five)
