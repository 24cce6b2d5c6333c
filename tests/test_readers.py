"""Raw-layout readers: SF3D (both layouts), 100-Driver, generic class folders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from raw_fixtures import (
    make_driver100,
    make_generic,
    make_sf3d,
    write_image,
    write_mask,
    write_text,
)
from sage.data.classes import DRIVER100_CLASSES, SF3D_CLASSES
from sage.data.readers import (
    COLUMNS,
    READERS,
    ReaderError,
    make_image_id,
    read_driver100,
    read_generic,
    read_raw,
    read_sf3d,
    source_labels,
)

SF3D_ROWS = [
    ("p002", "c0", "img_44733.jpg"),
    ("p002", "c1", "img_10.jpg"),
    ("p012", "c0", "img_11.jpg"),
    ("p012", "c9", "img_12.jpg"),
    ("p014", "c5", "img_13.jpg"),
]
SAFE_ID = re.compile(r"^[A-Za-z0-9._-]+$")


def check_schema(df) -> None:
    assert list(df.columns) == COLUMNS
    assert df["image_id"].is_unique
    assert all(SAFE_ID.match(i) for i in df["image_id"])
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["source_path"])
    assert all(isinstance(g, str) and g for g in df["group"])
    json.dumps(df.attrs["report"])  # must be copyable into summary.json as is


# ---------------------------------------------------------------- SF3D


@pytest.mark.parametrize("imgs_prefix", [True, False])
def test_sf3d_reads_both_layouts_and_reports_losses(tmp_path: Path, imgs_prefix: bool) -> None:
    root = make_sf3d(
        tmp_path / "sf3d",
        [*SF3D_ROWS, ("p021", "c3", "img_99.jpg")],
        imgs_prefix=imgs_prefix,
        missing=[("c3", "img_99.jpg")],
        unlisted=[("c4", "img_77.jpg")],
        n_test=3,
    )
    df = read_sf3d(root)
    check_schema(df)
    assert len(df) == len(SF3D_ROWS)
    row = df.set_index("image_id").loc["train-c0-img_44733"]
    assert row["source_label"] == "c0"
    assert row["subject"] == row["group"] == "p002"
    assert row["split"] is None and row["mask_path"] is None and row["parts_path"] is None
    report = df.attrs["report"]
    assert report["layout"]["layout"] == ("imgs" if imgs_prefix else "flat")
    assert report["skipped"] == {"missing_file": 1, "not_in_csv": 1}
    assert any("img_99.jpg" in e for e in report["examples"]["missing_file"])
    assert any("img_77.jpg" in e for e in report["examples"]["not_in_csv"])
    assert report["noted"]["unlabelled_test_images"] == 3
    assert report["kept"] == len(SF3D_ROWS)
    assert df.attrs["source_labels"] == list(SF3D_CLASSES)


def test_sf3d_image_ids_identical_across_layouts(tmp_path: Path) -> None:
    a = read_sf3d(make_sf3d(tmp_path / "a", SF3D_ROWS, imgs_prefix=True))
    b = read_sf3d(make_sf3d(tmp_path / "b", SF3D_ROWS, imgs_prefix=False))
    cols = ["image_id", "source_label", "subject", "group"]
    assert a[cols].equals(b[cols])
    # Stable: reading again gives the same ids in the same order.
    assert read_sf3d(tmp_path / "a")["image_id"].tolist() == a["image_id"].tolist()


def test_sf3d_csv_with_bom_and_lf(tmp_path: Path) -> None:
    df = read_sf3d(make_sf3d(tmp_path / "s", SF3D_ROWS, newline="\n", bom=True))
    assert sorted(df["subject"].unique()) == ["p002", "p012", "p014"]


def test_sf3d_masks_and_parts_beside_root(tmp_path: Path) -> None:
    root = make_sf3d(tmp_path / "sf3d", SF3D_ROWS)
    write_mask(tmp_path / "sf3d_masks" / "imgs" / "train" / "c0" / "img_44733.png")
    # The path relative to the folder holding train/ is accepted too.
    write_mask(tmp_path / "sf3d_masks" / "train" / "c1" / "img_10.png")
    write_mask(tmp_path / "sf3d_parts" / "imgs" / "train" / "c0" / "img_44733.png")
    df = read_sf3d(root).set_index("image_id")
    assert df.loc["train-c0-img_44733", "mask_path"] == str(
        tmp_path / "sf3d_masks" / "imgs" / "train" / "c0" / "img_44733.png"
    )
    assert df.loc["train-c1-img_10", "mask_path"].endswith("train/c1/img_10.png")
    assert df.loc["train-c0-img_44733", "parts_path"].endswith("img_44733.png")
    assert df.loc["train-c0-img_11", "mask_path"] is None
    assert df.attrs["report"]["noted"]["without_mask"] == len(SF3D_ROWS) - 2


def test_sf3d_bad_inputs_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(ReaderError, match=f"data root {re.escape(str(missing))} does not exist"):
        read_sf3d(missing)

    (tmp_path / "empty").mkdir()
    with pytest.raises(ReaderError, match="no SF3D train folder"):
        read_sf3d(tmp_path / "empty")

    root = make_sf3d(tmp_path / "nocsv", SF3D_ROWS)
    (root / "driver_imgs_list.csv").unlink()
    with pytest.raises(ReaderError, match=r"driver_imgs_list\.csv does not exist"):
        read_sf3d(root)

    root = make_sf3d(tmp_path / "badhdr", SF3D_ROWS)
    write_text(root / "driver_imgs_list.csv", ["driver,cls,file", "p002,c0,img_44733.jpg"])
    with pytest.raises(ReaderError, match=r"badhdr/driver_imgs_list\.csv: expected header"):
        read_sf3d(root)

    root = make_sf3d(tmp_path / "badrow", SF3D_ROWS)
    write_text(root / "driver_imgs_list.csv", ["subject,classname,img", "p002,c0"])
    with pytest.raises(ReaderError, match="line 2: expected 3 fields"):
        read_sf3d(root)

    # Every csv row points at a missing file: nothing to return is an error, not an empty frame.
    root = make_sf3d(
        tmp_path / "allgone",
        SF3D_ROWS[:1],
        missing=[("c0", "img_44733.jpg")],
        unlisted=[("c1", "img_5.jpg")],
    )
    with pytest.raises(ReaderError, match=r"no labelled images.*missing_file"):
        read_sf3d(root)


# ---------------------------------------------------------------- 100-Driver

D100_IMAGES = [
    "C1_Drive_Safe/P001_V1_S1_0001.jpg",
    "C2_Sleep/P001_V1_S1_0001.jpg",  # same basename, other class folder
    "C10_Look_Right/P002_V1_S1_0005.jpg",
    "C1_Drive_Safe/P002_V1_S1_0001a.jpg",  # "a" suffix
    "C1_Drive_Safe/P003_V2_S3_0007.jpg",  # not in any split file
    "C22_Talk_to_Passenger/P003_V2_S3_0008.jpg",
]
D100_SPLITS = {
    "train": [
        "0\tC1_Drive_Safe/P001_V1_S1_0001.jpg\t0",
        "1\tC2_Sleep/P001_V1_S1_0001.jpg\t1   ",  # trailing whitespace
        "",
        "2\tC1_Drive_Safe/P001_V1_S1_0002.jpg.tmp\t0",
        "3\tC22_Talk_to_Passenger/P003_V2_S3_0008.jpg\t21",
    ],
    # Longer relative path, including the period and camera folders.
    "val": ["0\tDay/Cam1/C10_Look_Right/P002_V1_S1_0005.jpg\t9"],
    "test": [
        "0\tC1_Drive_Safe/P002_V1_S1_0001a.jpg\t0",
        "1\tC1_Drive_Safe/P004_V1_S1_0001.jpg\t0",  # listed, but not on disk
    ],
}


def test_driver100_reads_splits_by_relative_path(tmp_path: Path) -> None:
    root = make_driver100(tmp_path / "d100", D100_IMAGES, D100_SPLITS)
    df = read_driver100(root)
    check_schema(df)
    assert len(df) == len(D100_IMAGES)
    df = df.set_index("image_id")
    assert df.loc["Day-Cam1-C1_Drive_Safe-P001_V1_S1_0001", "split"] == "train"
    assert df.loc["Day-Cam1-C2_Sleep-P001_V1_S1_0001", "split"] == "train"
    assert df.loc["Day-Cam1-C2_Sleep-P001_V1_S1_0001", "source_label"] == "C2_Sleep"
    assert df.loc["Day-Cam1-C10_Look_Right-P002_V1_S1_0005", "split"] == "val"
    assert df.loc["Day-Cam1-C1_Drive_Safe-P002_V1_S1_0001a", "split"] == "test"
    assert df.loc["Day-Cam1-C1_Drive_Safe-P003_V2_S3_0007", "split"] is None
    assert df.loc["Day-Cam1-C1_Drive_Safe-P002_V1_S1_0001a", "subject"] == "P002"
    assert (df["subject"] == df["group"]).all()
    report = df.attrs["report"]
    assert report["skipped"] == {"tmp_entry": 1, "missing_file": 1}
    assert report["examples"]["tmp_entry"][0].endswith("D1_train.txt:4")
    assert "P004_V1_S1_0001.jpg" in report["examples"]["missing_file"][0]
    assert report["noted"]["no_split_entry"] == 1
    assert report["layout"]["top"] == "Day"
    assert df.attrs["source_labels"] == DRIVER100_CLASSES


def test_driver100_c10_is_label_9_not_1(tmp_path: Path) -> None:
    # Sorted folder order would be C10, C1_..., C22, C2_: labels must not come from it.
    assert sorted(["C1_Drive_Safe", "C10_Look_Right", "C2_Sleep"])[0] == "C10_Look_Right"
    assert source_labels("driver100").index("C10_Look_Right") == 9
    root = make_driver100(
        tmp_path / "d100",
        ["C10_Look_Right/P001_V1_S1_0001.jpg", "C1_Drive_Safe/P001_V1_S1_0002.jpg"],
        {"train": ["0\tC10_Look_Right/P001_V1_S1_0001.jpg\t1"]},
    )
    with pytest.raises(ReaderError) as err:
        read_driver100(root)
    msg = str(err.value)
    assert "D1_train.txt line 1" in msg
    assert "C10_Look_Right" in msg and "label 1" in msg and "official label 9" in msg


def test_driver100_wrong_column_count_names_file_and_line(tmp_path: Path) -> None:
    root = make_driver100(
        tmp_path / "d100",
        ["C1_Drive_Safe/P001_V1_S1_0001.jpg"],
        {"val": ["0\tC1_Drive_Safe/P001_V1_S1_0001.jpg\t0", "1\tC1_Drive_Safe/P001.jpg"]},
    )
    with pytest.raises(ReaderError, match=r"D1_val\.txt line 2: expected 3 tab-separated"):
        read_driver100(root)


def test_driver100_non_integer_label_and_cross_split_duplicate(tmp_path: Path) -> None:
    img = "C1_Drive_Safe/P001_V1_S1_0001.jpg"
    root = make_driver100(tmp_path / "a", [img], {"train": [f"0\t{img}\tzero"]})
    with pytest.raises(ReaderError, match=r"D1_train\.txt line 1: label 'zero'"):
        read_driver100(root)
    root = make_driver100(
        tmp_path / "b", [img], {"train": [f"0\t{img}\t0"], "test": [f"5\t{img}\t0"]}
    )
    with pytest.raises(ReaderError, match=r"listed in both train .* and test"):
        read_driver100(root)


def test_driver100_without_split_files_and_other_top_folder(tmp_path: Path) -> None:
    root = make_driver100(
        tmp_path / "d100",
        ["C1_Drive_Safe/P001_V1_S1_0001.jpg", "C5_Talk_Right/P002_V1_S1_0001.jpg"],
        top="Night_IR",
        camera="Cam3",
    )
    df = read_driver100(root, period="Night", camera="Cam3")
    assert df["split"].isna().all()
    assert df["image_id"].tolist() == [
        "Night_IR-Cam3-C1_Drive_Safe-P001_V1_S1_0001",
        "Night_IR-Cam3-C5_Talk_Right-P002_V1_S1_0001",
    ]
    assert "no_split_entry" not in df.attrs["report"]["noted"]
    assert read_raw("driver100", root, period="Night", camera="Cam3").equals(df)


def test_driver100_night_split_files_and_masks(tmp_path: Path) -> None:
    img = "C4_Talk_Left/P007_V1_S1_0001.jpg"
    root = make_driver100(
        tmp_path / "d100", [img], {"train": [f"0\t{img}\t3"]}, top="Night", split_prefix="N1"
    )
    write_mask(tmp_path / "d100_masks" / "Night" / "Cam1" / "C4_Talk_Left" / "P007_V1_S1_0001.png")
    df = read_driver100(root, period="Night")
    assert df["split"].tolist() == ["train"]
    assert (
        df["mask_path"].iloc[0].endswith("d100_masks/Night/Cam1/C4_Talk_Left/P007_V1_S1_0001.png")
    )


def test_driver100_layout_errors(tmp_path: Path) -> None:
    root = make_driver100(tmp_path / "d100", ["C1_Drive_Safe/P001_V1_S1_0001.jpg"], top="Day_RGB")
    assert read_driver100(root)["image_id"].iloc[0].startswith("Day_RGB-Cam1-")
    with pytest.raises(ReaderError, match="no 100-Driver folder for period 'Night'"):
        read_driver100(root, period="Night")
    with pytest.raises(ReaderError, match=r"Cam2 does not exist \(found \['Cam1'\]\)"):
        read_driver100(root, camera="Cam2")
    make_driver100(root, ["C1_Drive_Safe/P001_V1_S1_0001.jpg"], top="Day_IR")
    with pytest.raises(ReaderError, match="several 100-Driver folders match period 'Day'"):
        read_driver100(root)
    assert len(read_driver100(root, top="Day_IR")) == 1
    with pytest.raises(ReaderError, match=r"split directory .*nosplits does not exist"):
        read_driver100(root, top="Day_IR", split_dir=tmp_path / "nosplits")


def test_driver100_bare_file_name_uses_the_label(tmp_path: Path) -> None:
    root = make_driver100(
        tmp_path / "d100",
        ["C1_Drive_Safe/P001_V1_S1_0001.jpg", "C2_Sleep/P001_V1_S1_0001.jpg"],
        {"train": ["0\tP001_V1_S1_0001.jpg\t1"]},
    )
    df = read_driver100(root).set_index("source_label")
    assert df.loc["C2_Sleep", "split"] == "train"
    assert df.loc["C1_Drive_Safe", "split"] is None


# ---------------------------------------------------------------- generic


def test_generic_layout_with_masks_and_splits(tmp_path: Path) -> None:
    images = [
        "cat/a.jpg",
        "cat/b.PNG",
        "dog/a.jpg",  # same stem as cat/a: distinct ids
        "dog/subject7/x.jpeg",  # nested: group = class-less parent
        "zebra/z.bmp",
    ]
    root = make_generic(tmp_path / "pets", images, masks=["cat/a.jpg", "dog/subject7/x.jpeg"])
    (root / "cat" / "notes.txt").write_text("not an image")
    write_text(root / "train.txt", ["cat/a.jpg", "pets/dog/a.jpg", "dog/subject7/x.jpeg"])
    write_text(root / "test.txt", ["zebra/z.bmp", "zebra/gone.jpg", "cat/b.PNG.tmp"])
    df = read_generic(root)
    check_schema(df)
    assert df["image_id"].tolist() == [
        "cat-a",
        "cat-b",
        "dog-a",
        "dog-subject7-x",
        "zebra-z",
    ]
    d = df.set_index("image_id")
    assert d.loc["cat-a", "mask_path"] == str(tmp_path / "pets_masks" / "cat" / "a.png")
    assert d.loc["dog-subject7-x", "mask_path"].endswith("pets_masks/dog/subject7/x.png")
    assert d.loc["cat-b", "mask_path"] is None
    assert d.loc["dog-subject7-x", "group"] == "subject7"
    assert d.loc["dog-subject7-x", "subject"] == "subject7"
    assert d.loc["cat-a", "group"] == "a" and d.loc["cat-a", "subject"] is None
    assert d["split"].tolist() == ["train", None, "train", "train", "test"]
    report = df.attrs["report"]
    assert report["skipped"] == {"missing_file": 1, "tmp_entry": 1}
    assert report["noted"]["no_split_entry"] == 1
    assert report["noted"]["non_image_files"] == 1
    assert report["noted"]["without_mask"] == 3
    assert df.attrs["source_labels"] == ["cat", "dog", "zebra"]
    assert source_labels("generic", root) == ["cat", "dog", "zebra"]


def test_generic_split_dir_and_errors(tmp_path: Path) -> None:
    root = make_generic(tmp_path / "g", ["a/1.jpg", "b/2.jpg"])
    write_text(tmp_path / "splits" / "val.txt", ["a/1.jpg", "b/2.jpg\tb"])
    with pytest.raises(ReaderError, match=r"val\.txt line 2: expected 1 tab-separated"):
        read_generic(root, split_dir=tmp_path / "splits")
    with pytest.raises(ReaderError, match="no split files"):
        read_generic(root, split_dir=tmp_path)
    # A split folder inside ROOT is not a class.
    write_text(root / "splits" / "train.txt", ["a/1.jpg", "b/2.jpg"])
    df = read_generic(root, split_dir=root / "splits")
    assert df["split"].tolist() == ["train", "train"]
    assert sorted(df["source_label"].unique()) == ["a", "b"]

    write_image(root / "a" / "1.png")  # a/1.jpg and a/1.png would share an id
    with pytest.raises(ReaderError, match="image id 'a-1' is not unique"):
        read_generic(root)

    (tmp_path / "blank" / "cls").mkdir(parents=True)
    with pytest.raises(ReaderError, match=r"no images found under .*blank"):
        read_generic(tmp_path / "blank")


# ---------------------------------------------------------------- registry


def test_registry_and_vocabularies(tmp_path: Path) -> None:
    assert set(READERS) == {"sf3d", "driver100", "generic"}
    root = make_sf3d(tmp_path / "s", SF3D_ROWS)
    assert read_raw("sf3d", root).equals(read_sf3d(root))
    assert source_labels("sf3d") == [f"c{i}" for i in range(10)]
    assert len(source_labels("driver100")) == 22
    with pytest.raises(ReaderError, match="unknown raw layout 'kitti'"):
        read_raw("kitti", root)
    with pytest.raises(ReaderError, match=r"'sf3d' does not take option\(s\) \['period'\]"):
        read_raw("sf3d", root, period="Day")
    with pytest.raises(ReaderError, match="pass root"):
        source_labels("generic")


def test_make_image_id_is_filesystem_safe() -> None:
    assert make_image_id("train/c0/img_44733.jpg") == "train-c0-img_44733"
    assert make_image_id("Day/Cam1/C1_Drive_Safe/P001_V1_S1_0001.jpg") == (
        "Day-Cam1-C1_Drive_Safe-P001_V1_S1_0001"
    )
    assert make_image_id("my class/ünï cødé?.jpg") == "my_class-_n_c_d_"
