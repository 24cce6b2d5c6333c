"""Reader for the State Farm Distracted Driver Detection layout (SF3D, Kaggle 2016).

Layout (both accepted, detected)::

    ROOT/imgs/train/c0..c9/img_N.jpg     Kaggle download
    ROOT/train/c0..c9/img_N.jpg          older copies without the ``imgs/`` prefix
    ROOT/imgs/test/img_N.jpg             unlabelled: not returned, counted in the report
    ROOT/driver_imgs_list.csv            subject,classname,img (labels and drivers)

Labels and subjects come from the csv; the class folder must agree because the file is
looked up as ``train/<classname>/<img>``. ``image_id`` is the path relative to the folder
holding ``train/`` (``train-c0-img_44733``), so it is identical for both layouts. SF3D has
no official split: ``split`` is ``None`` and ``group`` is the subject, for by-driver splits.

Masks: ``ROOT_masks/<path relative to ROOT>.png`` (so ``ROOT_masks/imgs/train/c0/x.png``
for the Kaggle layout); ``ROOT_masks/train/c0/x.png`` is accepted as well. Part-label
images likewise under ``ROOT_parts``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pandas as pd

from sage.data.classes import SF3D_CLASSES
from sage.data.readers._common import (
    CompanionIndex,
    ReaderError,
    ReaderReport,
    absolute,
    check_root,
    finish,
    is_image,
    list_dirs,
    list_files,
    make_image_id,
)

CSV_NAME = "driver_imgs_list.csv"
CSV_HEADER: tuple[str, ...] = ("subject", "classname", "img")


def source_labels() -> list[str]:
    """The SF3D label vocabulary, c0..c9 in official order."""
    return list(SF3D_CLASSES)


def _detect_base(root: Path) -> tuple[Path, str]:
    """The folder that holds ``train/`` and the layout name."""
    if (root / "imgs" / "train").is_dir():
        return root / "imgs", "imgs"
    if (root / "train").is_dir():
        return root, "flat"
    raise ReaderError(
        f"no SF3D train folder under {root}: expected {root / 'imgs' / 'train'}/c0..c9 "
        f"or {root / 'train'}/c0..c9"
    )


def _read_csv(path: Path, report: ReaderReport) -> dict[tuple[str, str], tuple[str, int]]:
    """``(classname, img) -> (subject, line)`` from ``driver_imgs_list.csv``."""
    if not path.is_file():
        raise ReaderError(f"SF3D label list {path} does not exist")
    rows: dict[tuple[str, str], tuple[str, int]] = {}
    # utf-8-sig strips a BOM; newline="" lets csv handle CRLF itself.
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        names = [h.strip().lower() for h in header] if header else []
        if not header or any(col not in names for col in CSV_HEADER):
            found = ",".join(header) if header else "an empty file"
            raise ReaderError(
                f"SF3D label list {path}: expected header {','.join(CSV_HEADER)!r}, found {found!r}"
            )
        col = {name: names.index(name) for name in CSV_HEADER}
        for fields in reader:
            lineno = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(names):
                raise ReaderError(
                    f"SF3D label list {path} line {lineno}: expected {len(names)} fields, "
                    f"found {len(fields)}: {','.join(fields)!r}"
                )
            subject, classname, img = (fields[col[c]].strip() for c in CSV_HEADER)
            where = f"{path}:{lineno}"
            if not subject or not img:
                raise ReaderError(f"SF3D label list {path} line {lineno}: empty subject or img")
            if classname not in SF3D_CLASSES:
                report.skip("csv_unknown_class", where)
                continue
            key = (classname, img)
            if key in rows:
                prev_subject, prev_line = rows[key]
                if prev_subject != subject:
                    raise ReaderError(
                        f"SF3D label list {path}: {classname}/{img} is listed for subject "
                        f"{prev_subject!r} (line {prev_line}) and {subject!r} (line {lineno})"
                    )
                report.skip("csv_duplicate_row", where)
                continue
            rows[key] = (subject, lineno)
    return rows


def read_sf3d(
    root: str | os.PathLike[str], csv_path: str | os.PathLike[str] | None = None
) -> pd.DataFrame:
    """Read an SF3D copy into the reader schema (see :mod:`sage.data.readers`).

    ``csv_path`` overrides ``ROOT/driver_imgs_list.csv``. Skipped and noted items land in
    ``df.attrs["report"]``: ``missing_file`` (csv row whose image is absent),
    ``not_in_csv`` (image without a csv row: no subject, so it cannot be split by driver),
    ``unknown_class_folder``, ``csv_unknown_class``, ``csv_duplicate_row``; noted:
    ``unlabelled_test_images``, ``non_image_files``.
    """
    root = check_root(root)
    base, layout = _detect_base(root)
    csv_file = absolute(csv_path) if csv_path is not None else root / CSV_NAME
    report = ReaderReport(
        reader="sf3d",
        root=str(root),
        layout={"layout": layout, "images": str(base), "csv": str(csv_file)},
    )
    listed = _read_csv(csv_file, report)
    masks = CompanionIndex(root, "masks")
    parts = CompanionIndex(root, "parts")
    report.layout["masks"] = str(masks.dir) if masks.exists else None
    report.layout["parts"] = str(parts.dir) if parts.exists else None

    train = base / "train"
    on_disk: set[tuple[str, str]] = set()
    for folder in list_dirs(train):
        files = list_files(train / folder)
        images = [f for f in files if is_image(f)]
        if len(images) != len(files):
            report.note("non_image_files", str(train / folder), n=len(files) - len(images))
        if folder not in SF3D_CLASSES:
            if images:
                report.skip("unknown_class_folder", str(train / folder), n=len(images))
            continue
        on_disk.update((folder, img) for img in images)
    stray = [f for f in list_files(train) if is_image(f)]
    if stray:
        report.skip("image_outside_class_folder", str(train / stray[0]), n=len(stray))

    rows: list[dict[str, object]] = []
    for (classname, img), (subject, lineno) in sorted(listed.items()):
        if (classname, img) not in on_disk:
            report.skip("missing_file", f"{train / classname / img} ({csv_file.name}:{lineno})")
            continue
        rel_base = f"train/{classname}/{img}"
        rel_root = (base / rel_base).relative_to(root).as_posix()
        candidates = [rel_root, rel_base]
        rows.append(
            {
                "image_id": make_image_id(rel_base),
                "source_path": str(base / rel_base),
                "source_label": classname,
                "subject": subject,
                "group": subject,
                "split": None,
                "mask_path": masks.find(candidates),
                "parts_path": parts.find(candidates),
            }
        )
    for classname, img in sorted(on_disk - listed.keys()):
        report.skip("not_in_csv", str(train / classname / img))

    test = base / "test"
    if test.is_dir():
        n_test = sum(1 for dirpath, _, files in os.walk(test) for f in files if is_image(f))
        if n_test:
            report.note("unlabelled_test_images", str(test), n=n_test)
    if masks.exists:
        n_without = sum(r["mask_path"] is None for r in rows)
        if n_without:
            report.note("without_mask", None, n=n_without)
    return finish(rows, report, source_labels(), "SF3D")
