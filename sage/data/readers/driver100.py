"""Reader for the 100-Driver layout (Wang et al., 2023).

Layout::

    ROOT/<top>/Cam{1..4}/C{k}_{Name}/P{ddd}_V{v}_S{s}_{digits}[a].jpg
    ROOT/data-splits/Traditional-setting/{Day,Night}/Cam{n}/{D,N}{n}_{train,val,test}.txt

``<top>`` is ``Day``, ``Day_RGB``, ``Night``, ... and is detected from ``period``. Split
files are tab-separated ``index<TAB>relative/path.jpg<TAB>label`` with label = C-number
- 1, paths normally relative to ``ROOT/<top>/<cam>/``; longer paths (``Day/Cam1/C1_...``)
are resolved by dropping leading components until an image on disk matches. Images are
keyed by their path relative to the camera folder because basenames repeat across class
folders. Labels always come from the folder name through the official list
(:data:`sage.data.classes.DRIVER100_CLASSES`), never from sort order, which would put
``C10_`` before ``C1_``; a split file whose label disagrees with the folder is an error.

``image_id`` is the path relative to ROOT (``Day-Cam1-C1_Drive_Safe-P001_V1_S1_0001``);
``subject`` and ``group`` are the driver ``P{ddd}``; masks are
``ROOT_masks/<top>/<cam>/<class>/<name>.png`` and part labels likewise under ``ROOT_parts``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from sage.data.classes import DRIVER100_CLASSES, driver100_label
from sage.data.readers._common import (
    SPLIT_NAMES,
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
    parse_split_file,
    rel_parts,
    suffix_candidates,
)

SPLITS_SUBDIR = "data-splits"
DEFAULT_SETTING = "Traditional-setting"

_SUBJECT = re.compile(r"^(P\d+)_")
_CAMERA = re.compile(r"^cam\d+$", re.IGNORECASE)


def source_labels() -> list[str]:
    """The 22 100-Driver class folders in official label order (C1 -> 0 ... C22 -> 21)."""
    return list(DRIVER100_CLASSES)


def _detect_top(root: Path, period: str, top: str | None) -> str:
    """Name of the ``Day``/``Night`` folder to read."""
    if top is not None:
        if not (root / top).is_dir():
            raise ReaderError(f"100-Driver folder {root / top} does not exist")
        return top
    found = [d for d in list_dirs(root) if d.lower().startswith(period.lower())]
    if len(found) == 1:
        return found[0]
    exact = [d for d in found if d.lower() == period.lower()]
    if len(exact) == 1:
        return exact[0]
    if not found:
        raise ReaderError(
            f"no 100-Driver folder for period {period!r} under {root} "
            f"(expected e.g. {root / period}/Cam1/C1_Drive_Safe; found {list_dirs(root)})"
        )
    raise ReaderError(
        f"several 100-Driver folders match period {period!r} under {root}: {found}; "
        "choose one with top=<folder>"
    )


def _split_files(
    root: Path, top: str, camera: str, split_dir: str | os.PathLike[str] | None, setting: str
) -> tuple[Path, dict[str, Path]]:
    """The split directory and the ``{split: file}`` found in it."""
    period_name = "Night" if top.lower().startswith("night") else "Day"
    explicit = split_dir is not None
    directory = (
        absolute(split_dir)
        if split_dir is not None
        else root / SPLITS_SUBDIR / setting / period_name / camera
    )
    if explicit and not directory.is_dir():
        raise ReaderError(f"100-Driver split directory {directory} does not exist")
    files: dict[str, Path] = {}
    if not directory.is_dir():
        return directory, files
    cam_number = "".join(ch for ch in camera if ch.isdigit())
    for split in SPLIT_NAMES:
        official = directory / f"{period_name[0]}{cam_number}_{split}.txt"
        if official.is_file():
            files[split] = official
            continue
        # Renamed copies (e.g. "Day1_train.txt") still end in _<split>.txt.
        others = sorted(directory.glob(f"*_{split}.txt"))
        if len(others) > 1:
            raise ReaderError(
                f"several {split} split files in {directory}: {[p.name for p in others]}; "
                "pass split_dir pointing at a folder with one of each"
            )
        if others:
            files[split] = others[0]
    if explicit and not files:
        raise ReaderError(
            f"no split files *_{{train,val,test}}.txt in 100-Driver split directory {directory}"
        )
    return directory, files


def read_driver100(
    root: str | os.PathLike[str],
    period: str = "Day",
    camera: str = "Cam1",
    top: str | None = None,
    split_dir: str | os.PathLike[str] | None = None,
    setting: str = DEFAULT_SETTING,
) -> pd.DataFrame:
    """Read one period × camera of 100-Driver into the reader schema.

    ``period`` picks the top folder by prefix (``Day`` finds ``Day`` or ``Day_RGB``);
    ``top`` names it exactly when several match. ``split_dir`` overrides
    ``ROOT/data-splits/<setting>/<Day|Night>/<camera>``; without split files every
    ``split`` is ``None``. Report reasons: skipped ``tmp_entry``, ``missing_file`` (split
    line without image), ``duplicate_split_entry``, ``unparsed_name`` (no ``P<ddd>_``
    subject), ``unknown_class_folder``, ``image_outside_class_folder``; noted
    ``no_split_entry`` (kept with split ``None``), ``non_image_files``, ``without_mask``.
    """
    root = check_root(root)
    top = _detect_top(root, period, top)
    cam_dir = root / top / camera
    if not cam_dir.is_dir():
        cams = [d for d in list_dirs(root / top) if _CAMERA.match(d)]
        raise ReaderError(f"100-Driver camera folder {cam_dir} does not exist (found {cams})")
    split_directory, split_files = _split_files(root, top, camera, split_dir, setting)
    report = ReaderReport(
        reader="driver100",
        root=str(root),
        layout={
            "top": top,
            "camera": camera,
            "images": str(cam_dir),
            "split_dir": str(split_directory),
            "split_files": {k: str(v) for k, v in split_files.items()},
        },
    )
    masks = CompanionIndex(root, "masks")
    parts = CompanionIndex(root, "parts")
    report.layout["masks"] = str(masks.dir) if masks.exists else None
    report.layout["parts"] = str(parts.dir) if parts.exists else None

    # key: "<class folder>/<file name>", unique within a camera folder.
    subjects: dict[str, str | None] = {}
    for folder in list_dirs(cam_dir):
        files = list_files(cam_dir / folder)
        images = [f for f in files if is_image(f)]
        if len(images) != len(files):
            report.note("non_image_files", str(cam_dir / folder), n=len(files) - len(images))
        if folder not in DRIVER100_CLASSES:
            if images:
                report.skip("unknown_class_folder", str(cam_dir / folder), n=len(images))
            continue
        for name in images:
            match = _SUBJECT.match(name)
            if match is None:
                report.skip("unparsed_name", str(cam_dir / folder / name))
            subjects[f"{folder}/{name}"] = match.group(1) if match else None
    stray = [f for f in list_files(cam_dir) if is_image(f)]
    if stray:
        report.skip("image_outside_class_folder", str(cam_dir / stray[0]), n=len(stray))

    assigned: dict[str, tuple[str, str]] = {}
    for split, path in split_files.items():
        for lineno, (_, rel, label_text) in parse_split_file(path, 3, report):
            where = f"{path}:{lineno}"
            try:
                label = int(label_text)
            except ValueError:
                raise ReaderError(
                    f"split file {path} line {lineno}: label {label_text!r} is not an integer"
                ) from None
            comps = rel_parts(rel)
            for comp in comps[:-2]:
                if _CAMERA.match(comp) and comp.lower() != camera.lower():
                    raise ReaderError(
                        f"split file {path} line {lineno}: {rel!r} belongs to {comp}, "
                        f"but {camera} is being read"
                    )
            candidates = suffix_candidates(comps)
            if len(comps) == 1 and 0 <= label < len(DRIVER100_CLASSES):
                # A bare file name is ambiguous across class folders; the label decides.
                candidates.append(f"{DRIVER100_CLASSES[label]}/{comps[0]}")
            key = next((c for c in candidates if c in subjects), None)
            if key is None:
                report.skip("missing_file", f"{where} {rel}")
                continue
            folder = key.split("/", 1)[0]
            expected = driver100_label(folder)
            if label != expected:
                raise ReaderError(
                    f"split file {path} line {lineno}: label {label} does not match "
                    f"{cam_dir / key} (folder {folder} has official label {expected})"
                )
            if key in assigned:
                prev_split, prev_where = assigned[key]
                if prev_split != split:
                    raise ReaderError(
                        f"{cam_dir / key} is listed in both {prev_split} ({prev_where}) "
                        f"and {split} ({where})"
                    )
                report.skip("duplicate_split_entry", where)
                continue
            assigned[key] = (split, where)

    rows: list[dict[str, object]] = []
    for key, subject in sorted(subjects.items()):
        if subject is None:
            continue
        split = assigned[key][0] if key in assigned else None
        if split is None and split_files:
            report.note("no_split_entry", str(cam_dir / key))
        rel_root = f"{top}/{camera}/{key}"
        rows.append(
            {
                "image_id": make_image_id(rel_root),
                "source_path": str(cam_dir / key),
                "source_label": key.split("/", 1)[0],
                "subject": subject,
                "group": subject,
                "split": split,
                "mask_path": masks.find([rel_root]),
                "parts_path": parts.find([rel_root]),
            }
        )
    if masks.exists:
        n_without = sum(r["mask_path"] is None for r in rows)
        if n_without:
            report.note("without_mask", None, n=n_without)
    return finish(rows, report, source_labels(), f"100-Driver {top}/{camera}")
