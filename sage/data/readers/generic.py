"""Reader for generic class-folder datasets (``ImageFolder``-like, for any other dataset).

Layout::

    ROOT/<class>/<image>                 jpg / jpeg / png / bmp, any case
    ROOT/<class>/<sub>/.../<image>       nested folders allowed: <sub>/... is the group
    ROOT_masks/<class>/.../<stem>.png    optional binary masks (0/255)
    ROOT_parts/<class>/.../<stem>.png    optional part-label images (uint8 ids, 0 = none)
    ROOT_parts/legend.json               names of the part ids: {"1": "spurious", ...}
    <split_dir>/{train,val,test}.txt     optional, one path relative to ROOT per line

The vocabulary is the sorted list of class folders (``source_labels(root)``); it is a
*source* vocabulary only, the integer labels come from a label mapping. ``group`` (the unit
a by-group split keeps together) is the class-less parent folder for nested images (e.g. a
subject or video folder, also returned as ``subject``) and the image stem otherwise.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

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
    walk_files,
)


def _class_dirs(root: Path, exclude: Path | None = None) -> list[str]:
    dirs = list_dirs(root)
    if exclude is not None and exclude.parent == root:
        # A split folder inside ROOT is not a class.
        dirs = [d for d in dirs if d != exclude.name]
    return dirs


def source_labels(
    root: str | os.PathLike[str], split_dir: str | os.PathLike[str] | None = None
) -> list[str]:
    """Sorted class-folder names under ``root`` (those holding at least one image)."""
    root = check_root(root)
    exclude = absolute(split_dir) if split_dir is not None else None
    return [
        d
        for d in _class_dirs(root, exclude)
        if any(is_image(os.path.basename(f)) for f in walk_files(root / d))
    ]


def _holds_image(path: Path) -> bool:
    """Whether any file below ``path`` is an image; stops at the first one."""
    for _, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        if any(is_image(f) for f in filenames):
            return True
    return False


def count_classes(root: str | os.PathLike[str] | None) -> int:
    """Number of class folders under ``root`` holding at least one image: the class count of
    a folder dataset prepared without a mapping file (``sage/conf/dataset/folder``, through
    the ``${sage_class_folders:}`` resolver). Cheaper than :func:`source_labels` on a large
    tree: each folder is walked only until its first image."""
    if root is None:
        raise ReaderError("dataset.root is not set; pass dataset.root=/path/to/images")
    path = check_root(root)
    return sum(_holds_image(path / d) for d in _class_dirs(path))


def read_generic(
    root: str | os.PathLike[str], split_dir: str | os.PathLike[str] | None = None
) -> pd.DataFrame:
    """Read ``ROOT/<class>/<image>`` into the reader schema.

    Split files are looked for in ``split_dir`` (default: ROOT itself); a given
    ``split_dir`` without any of ``train/val/test.txt`` is an error. Report reasons:
    skipped ``missing_file`` (listed path without image), ``duplicate_split_entry``,
    ``image_outside_class_folder``, ``tmp_entry``; noted ``no_split_entry``,
    ``non_image_files``, ``empty_class_folders``, ``without_mask``.
    """
    root = check_root(root)
    explicit = split_dir is not None
    split_directory = absolute(split_dir) if split_dir is not None else root
    if explicit and not split_directory.is_dir():
        raise ReaderError(f"split directory {split_directory} does not exist")
    split_files = {
        s: split_directory / f"{s}.txt"
        for s in SPLIT_NAMES
        if (split_directory / f"{s}.txt").is_file()
    }
    if explicit and not split_files:
        raise ReaderError(f"no split files {{train,val,test}}.txt in {split_directory}")
    report = ReaderReport(
        reader="generic",
        root=str(root),
        layout={
            "split_dir": str(split_directory),
            "split_files": {k: str(v) for k, v in split_files.items()},
        },
    )
    masks = CompanionIndex(root, "masks")
    parts = CompanionIndex(root, "parts")
    report.layout["masks"] = str(masks.dir) if masks.exists else None
    report.layout["parts"] = str(parts.dir) if parts.exists else None

    images: list[str] = []  # posix paths relative to ROOT
    for folder in _class_dirs(root, split_directory if explicit else None):
        files = walk_files(root / folder)
        found = [f"{folder}/{f}" for f in files if is_image(os.path.basename(f))]
        if len(found) != len(files):
            report.note("non_image_files", str(root / folder), n=len(files) - len(found))
        if not found:
            report.note("empty_class_folders", str(root / folder))
        images.extend(found)
    stray = [f for f in list_files(root) if is_image(f)]
    if stray:
        report.skip("image_outside_class_folder", str(root / stray[0]), n=len(stray))
    if not images:
        raise ReaderError(f"no images found under {root} (expected {root}/<class>/<image>)")

    known = set(images)
    assigned: dict[str, tuple[str, str]] = {}
    for split, path in split_files.items():
        for lineno, (rel,) in parse_split_file(path, 1, report):
            where = f"{path}:{lineno}"
            key = next((c for c in suffix_candidates(rel_parts(rel)) if c in known), None)
            if key is None:
                report.skip("missing_file", f"{where} {rel}")
                continue
            if key in assigned:
                prev_split, prev_where = assigned[key]
                if prev_split != split:
                    raise ReaderError(
                        f"{root / key} is listed in both {prev_split} ({prev_where}) "
                        f"and {split} ({where})"
                    )
                report.skip("duplicate_split_entry", where)
                continue
            assigned[key] = (split, where)

    rows: list[dict[str, object]] = []
    for rel in images:
        comps = rel.split("/")
        parent = "/".join(comps[1:-1])
        split = assigned[rel][0] if rel in assigned else None
        if split is None and split_files:
            report.note("no_split_entry", str(root / rel))
        rows.append(
            {
                "image_id": make_image_id(rel),
                "source_path": str(root / rel),
                "source_label": comps[0],
                "subject": parent or None,
                "group": parent or Path(comps[-1]).stem,
                "split": split,
                "mask_path": masks.find([rel]),
                "parts_path": parts.find([rel]),
            }
        )
    if masks.exists:
        n_without = sum(r["mask_path"] is None for r in rows)
        if n_without:
            report.note("without_mask", None, n=n_without)
    labels = sorted({str(r["source_label"]) for r in rows})
    return finish(rows, report, labels, "generic class folders")
