"""The prepared-dataset directory: paths, loading and validation.

A prepared dataset is written once by the prepare step and only read afterwards; this module
is the single place that knows its layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import pandas as pd

from ..errors import SageError

SPLITS = ("train", "val", "test")
META_COLUMNS = [
    "image_id",
    "split",
    "label",
    "label_name",
    "source_label",
    "source_path",
    "subject",
    "group",
    "bbox",
    "fg_fraction",
    "weight",
]


def dataset_dirname(name: str, variant: str, key: str | None = None) -> str:
    """Canonical directory name ``<dataset>-<variant>`` (``-<key>`` for generated data, whose
    every setting has a directory of its own)."""
    return f"{name}-{variant}" + (f"-{key}" if key else "")


def split_gaps(meta: pd.DataFrame, classes: list[str]) -> list[str]:
    """Empty splits, and classes without images in a split, of meta.csv rows ``meta``
    (``"split 'val' is empty"``, ``"class c7 has no train images"``)."""
    counts = meta.groupby(["split", "label"]).size()
    found = []
    for split in SPLITS:
        if split not in counts.index.get_level_values(0):
            found.append(f"split {split!r} is empty")
            continue
        found += [
            f"class {c} has no {split} images"
            for i, c in enumerate(classes)
            if (split, i) not in counts.index
        ]
    return found


@dataclass(frozen=True)
class PreparedDataset:
    """Read access to one prepared dataset directory."""

    root: Path

    @classmethod
    def open(cls, root: str | Path, *, hint: str = "") -> PreparedDataset:
        root = Path(root)
        missing = [f for f in ("meta.csv", "classes.json", "index") if not (root / f).exists()]
        if missing:
            raise SageError(
                f"prepared dataset {root} is missing {', '.join(missing)}"
                + (f"; {hint}" if hint else "")
            )
        return cls(root.resolve())

    @cached_property
    def classes(self) -> list[str]:
        return list(json.loads((self.root / "classes.json").read_text())["classes"])

    @cached_property
    def class_names(self) -> list[str]:
        data = json.loads((self.root / "classes.json").read_text())
        return list(data.get("names", data["classes"]))

    @cached_property
    def meta(self) -> pd.DataFrame:
        return pd.read_csv(self.root / "meta.csv", dtype={"image_id": str, "subject": str})

    @cached_property
    def summary(self) -> dict:
        path = self.root / "summary.json"
        return json.loads(path.read_text()) if path.exists() else {}

    @cached_property
    def has_masks(self) -> bool:
        """False when the masks are placeholders covering the whole frame (prepared with
        ``masker=none``): fg/bg masses and the metric sets scoring the foreground mean
        nothing on it (:func:`sage.metrics.suite.mask_free_sets`). Datasets prepared before
        this was recorded were all made with real maskers."""
        return bool(self.summary.get("has_masks", True))

    @cached_property
    def part_names(self) -> dict[int, str]:
        """Part label -> name from ``parts/legend.json`` (empty when the dataset has no parts)."""
        path = self.root / "parts" / "legend.json"
        if not path.exists():
            return {}
        legend = json.loads(path.read_text())
        return {int(k): v for k, v in legend.items() if k.isdigit()}

    def ids(self, split: str) -> list[str]:
        if split not in SPLITS:
            raise SageError(f"unknown split {split!r}; expected one of {SPLITS}")
        path = self.root / "index" / f"{split}.txt"
        if not path.exists():
            raise SageError(f"{path} does not exist")
        return [line for line in path.read_text().splitlines() if line]

    def gaps(self) -> list[str]:
        """What this dataset lacks for training (see :func:`split_gaps`)."""
        return split_gaps(self.meta, self.classes)

    def split_frame(self, split: str) -> pd.DataFrame:
        """meta.csv rows of ``split`` in index order; an empty split is an error."""
        ids = self.ids(split)
        if not ids:
            raise SageError(f"split {split!r} of {self.root} is empty")
        meta = self.meta.set_index("image_id")
        unknown = [i for i in ids if i not in meta.index]
        if unknown:
            raise SageError(
                f"index/{split}.txt of {self.root} lists ids not in meta.csv: {unknown[:3]}"
            )
        return meta.loc[ids].reset_index()

    def image_path(self, image_id: str) -> Path:
        matches = list((self.root / "images").glob(f"{image_id}.*"))
        if not matches:
            raise SageError(f"no image for {image_id!r} in {self.root / 'images'}")
        return matches[0]

    def mask_path(self, image_id: str) -> Path:
        return self.root / "masks" / f"{image_id}.png"

    def parts_path(self, image_id: str) -> Path:
        return self.root / "parts" / f"{image_id}.png"
