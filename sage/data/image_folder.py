"""Arbitrary images as a dataset: a folder (searched recursively), one file or a glob.

For explaining a model on images that were never prepared (no labels, no splits): each item
is ``image`` (normalised float tensor at ``size`` x ``size``), ``image_id`` and, when a masks
folder holds a mask for the image, ``mask`` ((size, size) bool). Images are sorted by path
and their ids derived from the path relative to the folder (the glob's fixed leading folder),
as the raw readers do (``cats/tabby 1.jpg`` -> ``cats-tabby_1``), so the same files always
give the same ids. A mask is ``<masks>/<relative stem>.<ext>`` or, failing that, the only
mask ``<masks>/.../<stem>.<ext>`` with the image's file stem; >127 is foreground.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import SageError
from ..models.registry import IMAGENET_MEAN, IMAGENET_STD
from .datamodule import image_transform
from .readers import ReaderError, is_image, make_image_id, walk_files


def _glob_base(pattern: str) -> Path:
    """The pattern's leading folder without wildcards (ids are relative to it)."""
    parts = Path(pattern).parts
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def list_images(source: str | os.PathLike[str]) -> tuple[Path, list[str]]:
    """``(base folder, sorted posix paths relative to it)`` of the images of ``source``: a
    folder (recursively), an image file or a glob (``**`` allowed). None found: SageError."""
    path = Path(source).expanduser()
    if path.is_dir():
        base, rels = path, [r for r in walk_files(path) if is_image(os.path.basename(r))]
    elif path.is_file():
        if not is_image(path.name):
            raise SageError(f"{path} is not an image file (jpg, jpeg, png or bmp)")
        base, rels = path.parent, [path.name]
    else:
        base = _glob_base(str(path))
        found = glob.glob(str(path), recursive=True)
        rels = sorted(
            Path(os.path.relpath(f, base)).as_posix()
            for f in found
            if os.path.isfile(f) and is_image(os.path.basename(f))
        )
    if not rels:
        what = "folder" if path.is_dir() else "glob" if glob.has_magic(str(path)) else "path"
        raise SageError(f"no images (jpg, jpeg, png, bmp) in {what} {source}")
    return base, rels


class _MaskIndex:
    """The image files of a masks folder, by relative stem and by bare file stem."""

    def __init__(self, folder: Path) -> None:
        if not folder.is_dir():
            raise SageError(f"masks folder {folder} does not exist")
        self.folder = folder
        self.by_rel: dict[str, str] = {}
        self.by_stem: dict[str, list[str]] = {}
        for rel in walk_files(folder):
            if is_image(os.path.basename(rel)):
                self.by_rel.setdefault(os.path.splitext(rel)[0], rel)
                self.by_stem.setdefault(Path(rel).stem, []).append(rel)

    def find(self, image_rel: str) -> Path | None:
        rel = self.by_rel.get(os.path.splitext(image_rel)[0])
        if rel is None:
            candidates = self.by_stem.get(Path(image_rel).stem, [])
            rel = candidates[0] if len(candidates) == 1 else None  # ambiguous: no mask
        return None if rel is None else self.folder / rel


class ImageFolderDataset(Dataset):
    """The images of ``source`` (folder, file or glob), resized to ``size`` and normalised
    with ``mean``/``std`` (the backbone's), with their masks from ``masks`` when given.

    Batch it with :func:`collate_images` when only some images have masks.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        size: int = 224,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        masks: str | os.PathLike[str] | None = None,
    ) -> None:
        self.base, rels = list_images(source)
        self.paths = [self.base / r for r in rels]
        ids: dict[str, Path] = {}
        for rel, path in zip(rels, self.paths, strict=True):
            try:
                image_id = make_image_id(rel)
            except ReaderError as err:
                raise SageError(str(err)) from err
            if image_id in ids:  # x.jpg and x.png, or names differing in unsafe characters
                raise SageError(
                    f"image id {image_id!r} is not unique: {ids[image_id]} and {path}; "
                    "rename one of them"
                )
            ids[image_id] = path
        self.image_ids = list(ids)
        index = _MaskIndex(Path(masks).expanduser()) if masks is not None else None
        self.mask_paths = [index.find(r) if index else None for r in rels]
        self.size = size
        self.transform = image_transform(size, tuple(mean), tuple(std))

    @property
    def n_masks(self) -> int:
        """How many images have a mask."""
        return sum(p is not None for p in self.mask_paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> dict:
        path = self.paths[i]
        try:
            with Image.open(path) as im:
                rgb = im.convert("RGB")  # decodes the whole file: a truncated one fails here
        except Exception as err:  # PIL raises many types for corrupt or non-image files
            raise SageError(f"cannot read image {path}: {type(err).__name__}: {err}") from err
        item = {"image": self.transform(rgb), "image_id": self.image_ids[i]}
        mask_path = self.mask_paths[i]
        if mask_path is not None:
            item["mask"] = self._mask(mask_path, rgb.size)
        return item

    def _mask(self, path: Path, image_size: tuple[int, int]) -> Tensor:
        try:
            with Image.open(path) as m:
                mask = m.convert("L")
        except Exception as err:
            raise SageError(f"cannot read mask {path}: {type(err).__name__}: {err}") from err
        if mask.size != image_size:  # resized independently they would not line up
            raise SageError(f"mask {path} has size {mask.size}, its image {image_size}")
        mask = mask.resize((self.size, self.size), Image.NEAREST)
        return torch.from_numpy(np.asarray(mask) > 127)


def collate_images(items: list[dict]) -> dict:
    """A batch of :class:`ImageFolderDataset` items: ``image`` (B, 3, S, S), ``image_id``
    (list); when any item has a mask, ``mask`` (B, S, S) — all False where an image has
    none — and ``has_mask`` (B,) saying which are real."""
    batch: dict = {
        "image": torch.stack([it["image"] for it in items]),
        "image_id": [it["image_id"] for it in items],
    }
    present = [("mask" in it) for it in items]
    if any(present):
        shape = next(it["mask"].shape for it in items if "mask" in it)
        empty = torch.zeros(shape, dtype=torch.bool)
        batch["mask"] = torch.stack([it.get("mask", empty) for it in items])
        batch["has_mask"] = torch.tensor(present)
    return batch
