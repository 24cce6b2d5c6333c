"""The prepare step on generated SynthDrivers: layout of §2.3, variants, idempotence, skips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import TINY_SYNTH
from sage.data.prepared import PreparedDataset
from sage.prepare import run as prepare_run

VARIANTS = ("full", "bbox", "seg", "bboxseg")


@pytest.fixture
def prepare(compose_cfg):
    def _prepare(dataset: str = "synth_sf3d/full", extra: tuple[str, ...] = ()) -> dict[str, Path]:
        cfg = compose_cfg(
            "prepare", [f"dataset={dataset}", *TINY_SYNTH, "prepare.progress=false", *extra]
        )
        return prepare_run(cfg)

    return _prepare


@pytest.mark.parametrize("dataset", ["synth_sf3d/full", "synth_driver100/full"])
def test_prepared_layout_counts_and_shared_ids(prepare, dataset):
    out = prepare(dataset)
    assert set(out) == set(VARIANTS)
    ids = None
    for variant, link in out.items():
        # generated data: one link per setting, <dataset>-<variant>-<settings key>
        assert link.is_symlink() and f"-{variant}-" in link.name
        data = PreparedDataset.open(link)
        meta, summary = data.meta, data.summary
        assert data.classes == [f"c{i}" for i in range(10)]
        # summary counts add up to meta.csv and to the index files
        counts = summary["counts"]
        assert sum(sum(c.values()) for c in counts.values()) == len(meta) == summary["n_images"]
        for split in ("train", "val", "test"):
            assert len(data.ids(split)) == sum(counts[split].values()) > 0
        # splits are by driver: no subject in two splits
        assert meta.groupby("subject")["split"].nunique().max() == 1
        assert meta["fg_fraction"].between(0, 1, inclusive="neither").all()
        for sub in ("images", "masks", "parts", "annotations/yolo"):
            assert len([p for p in (link / sub).iterdir() if p.name != "legend.json"]) == len(
                meta
            ), sub
        assert PreparedDataset.open(link).part_names[6] == "spurious"
        assert len(json.loads((link / "annotations/via.json").read_text())) == len(meta)
        assert (link / "mosaics/classes.png").stat().st_size > 0
        assert (link / "mosaics/distribution.png").stat().st_size > 0
        key = meta.set_index("image_id")[["split", "label"]].sort_index()
        if ids is None:
            ids = key
        pd.testing.assert_frame_equal(key, ids)  # same image_ids and splits in every variant


def test_driver100_summary_counts_unmapped_labels(prepare):
    summary = PreparedDataset.open(prepare("synth_driver100/full")["full"]).summary
    unmapped = summary["mapping"]["unmapped"]
    assert "C2_Sleep" in unmapped and "C19_Operate_GPS" in unmapped
    assert all(n > 0 for n in unmapped.values())
    assert summary["mapping"]["reverse"]["c5"] == ["C18_Operate_Radio"]


def test_variant_geometry_on_disk(prepare):
    out = prepare()
    full, seg, bboxseg = (PreparedDataset.open(out[v]) for v in ("full", "seg", "bboxseg"))
    fill = np.array([124, 116, 104])
    for image_id in full.ids("train")[:5]:
        with Image.open(full.image_path(image_id)) as im:
            src = np.asarray(im.convert("RGB"))
        with Image.open(seg.image_path(image_id)) as im:
            seg_img = np.asarray(im.convert("RGB"))
        mask = np.asarray(Image.open(seg.mask_path(image_id))) > 127
        assert (seg_img[mask] == src[mask]).all()  # foreground untouched
        assert (seg_img[~mask] == fill).all()  # every background pixel replaced
        x0, y0, x1, y1 = map(int, full.meta.set_index("image_id").at[image_id, "bbox"].split())
        full_mask = np.asarray(Image.open(full.mask_path(image_id))) > 127
        assert full_mask[y0:y1, x0:x1].sum() == full_mask.sum()  # the box holds the whole mask
        bs_img = np.asarray(Image.open(bboxseg.image_path(image_id)).convert("RGB"))
        bs_mask = np.asarray(Image.open(bboxseg.mask_path(image_id))) > 127
        assert bs_img.shape[:2] == bs_mask.shape == src.shape[:2]
        assert (bs_img[~bs_mask] == fill).all()
        # a crop enlarges the driver: larger foreground fraction than in the full frame
        assert bs_mask.mean() > full_mask.mean()


def test_prepare_again_makes_new_run_and_moves_symlink(prepare):
    first = prepare()["full"].resolve()
    second_link = prepare()["full"]
    second = second_link.resolve()
    assert first != second and first.exists()
    assert second_link.resolve() == second
    a, b = pd.read_csv(first / "meta.csv"), pd.read_csv(second / "meta.csv")
    pd.testing.assert_frame_equal(a, b)
    for image in sorted((first / "images").iterdir())[:10]:
        assert image.read_bytes() == (second / "images" / image.name).read_bytes()


def test_corrupt_image_and_bad_mask_are_recorded_skips(prepare, compose_cfg):
    cfg = compose_cfg("prepare", TINY_SYNTH)
    from sage.data.preparation import ensure_raw

    raw = ensure_raw(cfg.dataset)
    images = sorted((raw / "imgs/train/c3").glob("*.jpg"))
    images[0].write_bytes(images[0].read_bytes()[:200])  # truncated JPEG
    mask = Path(f"{raw}_masks") / images[1].relative_to(raw).with_suffix(".png")
    Image.new("L", (10, 10), 255).save(mask)  # wrong size
    out = prepare()
    summary = PreparedDataset.open(out["full"]).summary
    assert summary["skipped"]["corrupt_image"]["count"] == 1
    assert str(images[0]) in summary["skipped"]["corrupt_image"]["examples"][0]
    size_skips = {k: v for k, v in summary["skipped"].items() if "size_mismatch" in k}
    assert sum(v["count"] for v in size_skips.values()) == 1
    for variant in VARIANTS:
        ids = set(PreparedDataset.open(out[variant]).meta["image_id"])
        assert f"train-c3-{images[0].stem}" not in ids and f"train-c3-{images[1].stem}" not in ids


def test_no_foreground_is_recorded_and_left_out(prepare, compose_cfg):
    cfg = compose_cfg("prepare", TINY_SYNTH)
    from sage.data.preparation import ensure_raw

    raw = ensure_raw(cfg.dataset)
    image = sorted((raw / "imgs/train/c5").glob("*.jpg"))[0]
    mask = Path(f"{raw}_masks") / image.relative_to(raw).with_suffix(".png")
    Image.new("L", Image.open(image).size, 0).save(mask)
    summary = PreparedDataset.open(prepare()["seg"]).summary
    assert summary["skipped"]["masker_no_foreground"]["examples"] == [str(image)]


def _synth_ds(compose_cfg, dataset: str = "synth_sf3d/full") -> dict:
    from omegaconf import OmegaConf

    cfg = compose_cfg("train", [f"dataset={dataset}", *TINY_SYNTH])
    return OmegaConf.to_container(cfg.dataset, resolve=True)


def test_ensure_prepared_reuses_current_and_redoes_stale_synth_data(compose_cfg):
    from sage.data.ensure import ensure_prepared

    ds = _synth_ds(compose_cfg)
    first = ensure_prepared(ds).resolve()
    assert ensure_prepared(ds).resolve() == first  # same settings: reused
    ds["synth"]["p_spurious"] = 0.3  # a generator change makes the prepared copy stale
    second = ensure_prepared(ds).resolve()
    assert second != first
    summary = json.loads((second / "summary.json").read_text())
    assert summary["config"]["synth"]["p_spurious"] == 0.3
    ds["split"]["seed"] = 5  # so does a split change
    assert ensure_prepared(ds).resolve() not in (first, second)


def test_cue_shuffled_twin_differs_only_around_the_sticker(compose_cfg):
    """synth_sf3d_shuffled/full: same images, ids, labels and split; only sticker colours move."""
    from sage.data.ensure import ensure_prepared
    from sage.data.synth.scene import SPURIOUS

    base = PreparedDataset.open(ensure_prepared(_synth_ds(compose_cfg)))
    twin = PreparedDataset.open(ensure_prepared(_synth_ds(compose_cfg, "synth_sf3d_shuffled/full")))
    assert twin.summary["config"]["synth"]["p_spurious"] == 0.0
    cols = ["image_id", "label", "split", "subject"]
    pd.testing.assert_frame_equal(base.meta[cols], twin.meta[cols])
    moved = 0
    for image_id in base.meta.image_id:
        a = np.asarray(Image.open(base.image_path(image_id)), np.int16)
        b = np.asarray(Image.open(twin.image_path(image_id)), np.int16)
        sticker = np.asarray(Image.open(base.parts_path(image_id))) == SPURIOUS
        ys, xs = np.nonzero(sticker)
        near = np.zeros_like(sticker)  # JPEG blocks (8 px) touching the sticker may change
        near[max(ys.min() - 8, 0) : ys.max() + 9, max(xs.min() - 8, 0) : xs.max() + 9] = True
        assert np.abs(a - b)[~near].max() == 0, image_id
        moved += int(np.abs(a - b)[sticker].max() > 40)
    # p_spurious 0.8 vs random colours: most stickers change colour
    assert moved >= len(base.meta) // 2


def test_stratified_head_keeps_every_class_in_order():
    from sage.data.datamodule import stratified_head

    frame = pd.DataFrame({"image_id": list("abcdef"), "label": [0, 0, 0, 1, 1, 2]})
    # ranks within class 0,1,2,0,1,0: the three first-of-class rows, then the next one
    assert list(stratified_head(frame, 4).image_id) == ["a", "b", "d", "f"]
    assert list(stratified_head(frame, 3).image_id) == ["a", "d", "f"]
    assert stratified_head(frame, 4).index.tolist() == [0, 1, 2, 3]
    assert stratified_head(frame, None) is frame and stratified_head(frame, 9) is frame
    with pytest.raises(Exception, match="limit=0"):
        stratified_head(frame, 0)


def test_parallel_prepare_writes_what_the_serial_run_writes(compose_cfg):
    """prepare.workers=2 (worker processes) gives byte-identical output, skip log included."""
    import filecmp

    from omegaconf import OmegaConf

    from sage.data.preparation import prepare_dataset

    cfg = compose_cfg("prepare", TINY_SYNTH)
    ds = OmegaConf.to_container(cfg.dataset, resolve=True)
    for name, workers in (("serial", 1), ("parallel", 2)):
        prepare_dataset(ds, variants=["full", "seg"], workers=workers, run_name=name)
    runs = Path(ds["prepared_root"]) / "runs"
    for variant in ("full", "seg"):
        a, b = (
            runs / "serial" / f"synth-sf3d-{variant}",
            runs / "parallel" / f"synth-sf3d-{variant}",
        )
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
        data = [f for f in files if f.suffix != ".png" or f.parts[0] != "mosaics"]
        _, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in data], shallow=False)
        assert not mismatch and not errors, mismatch[:5]


def test_non_square_synth_prepares_at_its_own_size(prepare):
    """SF3D is 640x480: a [width, height] SynthDrivers size goes through every variant at the
    frame size (crops are resized back to width x height, masks and parts follow)."""
    links = prepare("synth_sf3d/full", ("dataset.synth.size=[80,60]",))
    for variant in VARIANTS:
        ds = PreparedDataset.open(links[variant])
        image_id = ds.meta["image_id"].iloc[0]
        image = next((links[variant] / "images").glob(f"{image_id}.*"))
        with Image.open(image) as im:
            assert im.size == (80, 60)
        for kind in ("masks", "parts"):
            with Image.open(links[variant] / kind / f"{image_id}.png") as im:
                assert im.size == (80, 60)
