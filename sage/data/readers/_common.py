"""Shared pieces of the raw-layout readers: the output schema, the skip report, errors,
image ids, companion files (masks, part labels) and split-file parsing.

Every reader returns one row per labelled image with exactly :data:`COLUMNS`. Anything a
reader leaves out (a csv row without its file, an image the label list does not mention, a
``.tmp`` line in a split file) is counted in a :class:`ReaderReport` with example paths, so
the prepare step can copy it into ``summary.json``: nothing is dropped silently.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

COLUMNS: list[str] = [
    "image_id",
    "source_path",
    "source_label",
    "subject",
    "group",
    "split",
    "mask_path",
    "parts_path",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")

# Enough to recognise a pattern in the summary without bloating it for a 20k-image dataset.
MAX_EXAMPLES = 20

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ReaderError(ValueError):
    """A raw dataset cannot be read as asked; the message names the offending path."""


@dataclass
class ReaderReport:
    """What a reader left out (``skipped``) or kept with a caveat (``noted``), by reason.

    ``examples`` holds up to :data:`MAX_EXAMPLES` paths (or ``file:line`` locations) per
    reason, for both kinds. ``kept`` is the number of rows returned.
    """

    reader: str
    root: str
    layout: dict[str, object] = field(default_factory=dict)
    kept: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    noted: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def skip(self, reason: str, example: str | None = None, n: int = 1) -> None:
        """Count ``n`` items left out for ``reason``."""
        self.skipped[reason] = self.skipped.get(reason, 0) + n
        self._example(reason, example)

    def note(self, reason: str, example: str | None = None, n: int = 1) -> None:
        """Count ``n`` items kept but worth knowing about (e.g. no official split)."""
        self.noted[reason] = self.noted.get(reason, 0) + n
        self._example(reason, example)

    def _example(self, reason: str, example: str | None) -> None:
        if example is None:
            return
        bucket = self.examples.setdefault(reason, [])
        if len(bucket) < MAX_EXAMPLES:
            bucket.append(example)

    def to_dict(self) -> dict[str, object]:
        """Plain, JSON-serialisable dict (what goes into ``df.attrs["report"]``)."""
        return asdict(self)


def absolute(path: str | os.PathLike[str]) -> Path:
    """Absolute, normalised path *without* resolving symlinks.

    Resolving would rename ``ROOT`` to its link target and so move ``ROOT_masks`` with it;
    users point at the name they see.
    """
    return Path(os.path.abspath(os.fspath(path)))


def check_root(root: str | os.PathLike[str]) -> Path:
    """Return ``root`` as an absolute path, or raise if it is not an existing directory."""
    path = absolute(root)
    if not path.exists():
        raise ReaderError(f"data root {path} does not exist")
    if not path.is_dir():
        raise ReaderError(f"data root {path} is not a directory")
    return path


def is_image(name: str) -> bool:
    """True for a visible file name with one of :data:`IMAGE_EXTENSIONS` (any case)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_dirs(path: Path) -> list[str]:
    """Sorted names of the visible sub-directories of ``path`` (empty if it is missing)."""
    if not path.is_dir():
        return []
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if e.is_dir() and not e.name.startswith("."))


def list_files(path: Path) -> list[str]:
    """Sorted names of the visible regular files directly in ``path``."""
    with os.scandir(path) as entries:
        return sorted(e.name for e in entries if e.is_file() and not e.name.startswith("."))


def walk_files(path: Path) -> list[str]:
    """Sorted posix paths, relative to ``path``, of every visible file below it."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel_dir = Path(dirpath).relative_to(path)
        out.extend((rel_dir / f).as_posix() for f in filenames if not f.startswith("."))
    return sorted(out)


def make_image_id(rel_path: str) -> str:
    """Filesystem-safe id from a posix path relative to the dataset root.

    The extension is dropped and the components joined with ``-``
    (``train/c0/img_1.jpg`` -> ``train-c0-img_1``); characters outside ``[A-Za-z0-9._-]``
    become ``_``. Ids depend on the relative path only, so they are stable across machines
    and across the variants made from the same image.
    """
    stem = os.path.splitext(rel_path)[0]
    parts = [_UNSAFE.sub("_", p) for p in stem.split("/") if p not in ("", ".")]
    if not parts:
        raise ReaderError(f"cannot derive an image id from {rel_path!r}")
    return "-".join(parts)


class CompanionIndex:
    """The files of a sibling tree ``ROOT_<suffix>`` (``ROOT_masks``, ``ROOT_parts``).

    The companion of ``ROOT/<rel>.jpg`` is ``ROOT_<suffix>/<rel>.png``. The tree is listed
    once up front, so a 20k-image dataset costs one walk rather than 20k ``stat`` calls.
    """

    def __init__(self, root: Path, suffix: str) -> None:
        self.dir = root.parent / f"{root.name}_{suffix}"
        self.exists = self.dir.is_dir()
        self._files = (
            {p for p in walk_files(self.dir) if p.lower().endswith(".png")}
            if self.exists
            else set()
        )

    def find(self, rel_candidates: Iterable[str]) -> str | None:
        """Absolute path of the first existing ``<candidate stem>.png``, else ``None``."""
        for rel in rel_candidates:
            key = os.path.splitext(rel)[0] + ".png"
            if key in self._files:
                return str(self.dir / key)
        return None


def parse_split_file(path: Path, ncols: int, report: ReaderReport) -> list[tuple[int, list[str]]]:
    """Non-blank lines of a split file as ``(line number, fields)``.

    Fields are tab-separated; when tabs do not give ``ncols`` fields, whitespace splitting
    is tried (the official 100-Driver loader uses ``str.split()``). Lines naming a ``.tmp``
    file are skipped and counted under ``tmp_entry``; CRLF, a BOM, blank lines and trailing
    whitespace are tolerated. Any other column count is an error naming file and line.
    """
    out: list[tuple[int, list[str]]] = []
    with open(path, encoding="utf-8-sig", newline=None) as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = raw.strip()
            if not line:
                continue
            fields = [f.strip() for f in line.split("\t")]
            if any(f.lower().endswith(".tmp") for f in fields):
                report.skip("tmp_entry", f"{path}:{lineno}")
                continue
            if len(fields) != ncols and ncols > 1:
                fields = line.split()
            if len(fields) != ncols:
                raise ReaderError(
                    f"split file {path} line {lineno}: expected {ncols} tab-separated "
                    f"column(s), found {len(fields)}: {line!r}"
                )
            out.append((lineno, fields))
    return out


def rel_parts(rel: str) -> list[str]:
    """Components of a relative path written with ``/`` or ``\\`` (``.`` dropped)."""
    return [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]


def suffix_candidates(parts: Sequence[str], prefix: Sequence[str] = ()) -> list[str]:
    """``prefix + parts[i:]`` joined, for i = 0, 1, ...: the keys to try for a listed path.

    Split files write paths relative to different bases (``C1_x/a.jpg`` or ``Day/Cam1/C1_x/
    a.jpg``); dropping leading components until a known file matches absorbs that.
    """
    return ["/".join([*prefix, *parts[i:]]) for i in range(len(parts))]


def finish(
    rows: list[dict[str, object]],
    report: ReaderReport,
    source_labels: Sequence[str],
    what: str,
) -> pd.DataFrame:
    """Build the output frame: schema, deterministic order, unique ids, report in attrs."""
    if not rows:
        raise ReaderError(
            f"no labelled images found for {what} under {report.root} "
            f"(skipped: {report.skipped or 'nothing'})"
        )
    # object dtype on purpose: missing values stay None (pandas 3 would otherwise infer a
    # string dtype whose missing value is NaN) and the frame looks the same on pandas 2 and 3.
    df = pd.DataFrame(rows, columns=COLUMNS, dtype=object)
    dup = df["image_id"].duplicated(keep=False)
    if dup.any():
        # Ids are derived from paths, so a clash means two files map to the same id
        # (e.g. x.jpg and x.png, or names differing only in unsafe characters).
        clash = df.loc[dup].sort_values("image_id").head(2)
        a, b = clash["source_path"].tolist()
        raise ReaderError(
            f"image id {clash['image_id'].iloc[0]!r} is not unique: {a} and {b}; rename one of them"
        )
    df = df.sort_values("image_id", kind="stable").reset_index(drop=True)
    report.kept = len(df)
    df.attrs["reader"] = report.reader
    df.attrs["source_labels"] = list(source_labels)
    df.attrs["report"] = report.to_dict()
    return df
