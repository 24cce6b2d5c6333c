"""Readers of raw dataset layouts, one module per layout, behind one registry.

Every reader returns a :class:`pandas.DataFrame` with one row per labelled image and
exactly the columns :data:`COLUMNS`:

``image_id``     stable, unique, filesystem-safe id derived from the path relative to the
                 dataset root (``train-c0-img_44733``, ``Day-Cam1-C1_Drive_Safe-P001_V1_S1_0001``)
``source_path``  absolute path of the image
``source_label`` the dataset's own label (``c0``, ``C1_Drive_Safe``, a folder name)
``subject``      driver / subject id, or ``None``
``group``        the unit by-driver splits keep together (the subject where there is one)
``split``        ``train``/``val``/``test`` from official split files, else ``None``
``mask_path``    ``ROOT_masks/<rel>.png`` when it exists, else ``None``
``parts_path``   ``ROOT_parts/<rel>.png`` when it exists, else ``None``

``df.attrs["report"]`` is a plain dict (:class:`ReaderReport`) counting what was skipped
or noted, by reason, with example paths; ``df.attrs["source_labels"]`` is the vocabulary.
Bad input raises :class:`ReaderError` (a ``ValueError``) naming the path.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable

import pandas as pd

from sage.data.readers import driver100, generic, sf3d
from sage.data.readers._common import (
    COLUMNS,
    IMAGE_EXTENSIONS,
    ReaderError,
    ReaderReport,
    is_image,
    make_image_id,
    walk_files,
)
from sage.data.readers.driver100 import read_driver100
from sage.data.readers.generic import read_generic
from sage.data.readers.sf3d import read_sf3d

READERS: dict[str, Callable[..., pd.DataFrame]] = {
    "sf3d": read_sf3d,
    "driver100": read_driver100,
    "generic": read_generic,
}

# Vocabulary functions per layout; the generic one needs the root (its classes are folders).
VOCABULARIES: dict[str, Callable[..., list[str]]] = {
    "sf3d": sf3d.source_labels,
    "driver100": driver100.source_labels,
    "generic": generic.source_labels,
}


def _check_kind(kind: str) -> None:
    if kind not in READERS:
        raise ReaderError(f"unknown raw layout {kind!r}; known: {sorted(READERS)}")


def read_raw(kind: str, root: str | os.PathLike[str], **options: object) -> pd.DataFrame:
    """Read the dataset at ``root`` with the reader registered as ``kind``.

    ``options`` go to the reader (``csv_path`` for sf3d; ``period``, ``camera``, ``top``,
    ``split_dir``, ``setting`` for driver100; ``split_dir`` for generic).
    """
    _check_kind(kind)
    reader = READERS[kind]
    accepted = [p for p in inspect.signature(reader).parameters if p != "root"]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        # Options usually come from a config file: name the typo instead of a TypeError.
        raise ReaderError(
            f"reader {kind!r} does not take option(s) {unknown} (accepted: {accepted})"
        )
    return reader(root, **options)


def source_labels(
    kind: str, root: str | os.PathLike[str] | None = None, **options: object
) -> list[str]:
    """Label vocabulary of a layout; ``root`` is required for ``generic``."""
    _check_kind(kind)
    if kind == "generic":
        if root is None:
            raise ReaderError("the generic vocabulary is its class folders: pass root")
        return generic.source_labels(root, **options)
    return VOCABULARIES[kind]()


__all__ = [
    "COLUMNS",
    "IMAGE_EXTENSIONS",
    "READERS",
    "VOCABULARIES",
    "ReaderError",
    "ReaderReport",
    "is_image",
    "make_image_id",
    "read_driver100",
    "read_generic",
    "read_raw",
    "read_sf3d",
    "source_labels",
    "walk_files",
]
