"""Builders of tiny fake raw dataset layouts (SF3D, 100-Driver, generic) under tmp_path.

Images are a few pixels of solid colour written by PIL, so no binary file is committed and
each test states the layout it exercises.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from PIL import Image

SIZE = (8, 6)


def write_image(path: Path, color: tuple[int, int, int] = (90, 120, 150)) -> Path:
    """A solid-colour RGB image; the format follows the suffix (jpg, png, bmp)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", SIZE, color).save(path)
    return path


def write_mask(path: Path) -> Path:
    """A binary 0/255 PNG mask with the left half foreground."""
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = Image.new("L", SIZE, 0)
    mask.paste(255, (0, 0, SIZE[0] // 2, SIZE[1]))
    mask.save(path)
    return path


def write_text(path: Path, lines: Iterable[str], newline: str = "\n", bom: bool = False) -> Path:
    """Write ``lines`` joined by ``newline`` (bytes, so CRLF is kept exactly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = newline.join(lines) + newline
    data = text.encode("utf-8")
    path.write_bytes(b"\xef\xbb\xbf" + data if bom else data)
    return path


def make_sf3d(
    root: Path,
    rows: Iterable[tuple[str, str, str]],
    *,
    imgs_prefix: bool = True,
    missing: Iterable[tuple[str, str]] = (),
    unlisted: Iterable[tuple[str, str]] = (),
    n_test: int = 2,
    newline: str = "\r\n",
    bom: bool = False,
) -> Path:
    """SF3D layout: csv ``rows`` (subject, classname, img) with their images on disk,
    except ``missing`` (classname, img) pairs; ``unlisted`` images exist without a row."""
    base = root / "imgs" if imgs_prefix else root
    rows = list(rows)
    skip = set(missing)
    for i, (_, classname, img) in enumerate(rows):
        if (classname, img) not in skip:
            write_image(base / "train" / classname / img, (10 * i % 255, 40, 80))
    for classname, img in unlisted:
        write_image(base / "train" / classname / img)
    for i in range(n_test):
        write_image(base / "test" / f"img_{900 + i}.jpg")
    lines = ["subject,classname,img", *(",".join(r) for r in rows)]
    write_text(root / "driver_imgs_list.csv", lines, newline=newline, bom=bom)
    return root


def make_driver100(
    root: Path,
    images: Iterable[str],
    splits: Mapping[str, Iterable[str]] | None = None,
    *,
    top: str = "Day",
    camera: str = "Cam1",
    split_prefix: str = "D1",
) -> Path:
    """100-Driver layout: ``images`` are paths relative to ``ROOT/<top>/<camera>``;
    ``splits`` maps ``train``/``val``/``test`` to raw lines of the official split files."""
    for i, rel in enumerate(images):
        write_image(root / top / camera / rel, (20 * i % 255, 100, 30))
    period = "Night" if top.lower().startswith("night") else "Day"
    for split, lines in (splits or {}).items():
        write_text(
            root
            / "data-splits"
            / "Traditional-setting"
            / period
            / camera
            / f"{split_prefix}_{split}.txt",
            lines,
        )
    return root


def make_generic(root: Path, images: Iterable[str], masks: Iterable[str] = ()) -> Path:
    """Generic layout: ``images`` relative to ROOT; ``masks`` are image paths that get a
    ``ROOT_masks/<class>/<stem>.png``."""
    for i, rel in enumerate(images):
        write_image(root / rel, (5, 30 * i % 255, 60))
    masks_root = root.parent / f"{root.name}_masks"
    for rel in masks:
        write_mask((masks_root / rel).with_suffix(".png"))
    return root
