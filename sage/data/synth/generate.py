"""Write SynthDrivers datasets in the raw layouts of the real datasets.

``generate(out_dir, cfg)`` writes ``out_dir/<domain>`` plus two sibling trees:

* ``<domain>_masks/<rel>.png``: binary foreground mask (0/255) of image ``<domain>/<rel>.jpg``
  (driver body, head, hands and held object);
* ``<domain>_parts/<rel>.png``: part-label image, legend in ``<domain>_parts/legend.json``.

``synth-sf3d`` follows the Kaggle SF3D layout (``imgs/train/c0..c9/img_N.jpg``,
``driver_imgs_list.csv``, a few unlabelled ``imgs/test/img_N.jpg``); ``synth-driver100``
the 100-Driver layout (``Day/Cam1/C{k}_{Name}/P{ddd}_V{v}_S{s}_{dddd}.jpg`` and the split
files ``data-splits/Traditional-setting/Day/Cam1/D1_{train,val,test}.txt``, split by
subject, paths relative to ``Day/Cam1/``). Besides the raw layout, ``ROOT`` holds
``synth_meta.csv`` (per image: class, activity, subject, sticker colour index) and
``synth_manifest.json`` (config and generator version), which is written last and makes
the dataset count as complete.

Every image draws from its own random generator seeded by (seed, domain, class, index),
so the output is byte-identical for a given config whatever the order of generation; the
sticker colour has a stream of its own, so two configs that differ only in ``p_spurious``
render the same scenes and differ only in sticker colours (a clean cue-shuffle pair).
"""

from __future__ import annotations

import csv
import io
import json
import multiprocessing
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from sage.data.classes import DRIVER100_CLASSES, SF3D_CLASSES, driver100_label

from .activities import DISCRIMINATIVE, DRIVER100_ACTIVITY, SF3D_ACTIVITY
from .render import render
from .scene import FOREGROUND_IDS, PART_NAMES, STICKER_COLOURS, STICKER_SIDE, Style, make_style

GENERATOR_VERSION = 2  # 2: synth-sf3d skins and shirts with more contrast (scene.py)
DOMAINS: tuple[str, ...] = ("synth-sf3d", "synth-driver100")
MANIFEST = "synth_manifest.json"
META = "synth_meta.csv"
JPEG_QUALITY = 95

# Stable small integers rather than hash() of the name, which is salted per process.
_DOMAIN_CODE = {"synth-sf3d": 1, "synth-driver100": 2}
_TEST_KEY = 100  # class key of SF3D's unlabelled test images in the seed tuple

# The subject ids of the real SF3D list, so synthetic ids look like the real ones.
_SF3D_SUBJECT_NUMBERS = (2, 12, 14, 15, 16, 21, 22, 24, 26, 35, 39, 41, 42, 45, 47, 49, 50, 51, 52)
SF3D_SUBJECT_IDS = tuple(f"p{n:03d}" for n in (*_SF3D_SUBJECT_NUMBERS, 56, 61, 64, 66, 72, 75, 81))

# 100-Driver classes rendered as often as the ten mapped classes: the mapped ones (same
# activity as an SF3D class) and the two that the merged mapping folds into c5 (C19) and
# c6 (C17). The rest get a quarter as many.
_SF3D_ACTIVITIES = set(SF3D_ACTIVITY.values())
DRIVER100_MAPPED = tuple(f for f, act in DRIVER100_ACTIVITY.items() if act in _SF3D_ACTIVITIES)
DRIVER100_FULL = (*DRIVER100_MAPPED, "C17_Eat_Right", "C19_Operate_GPS")
DRIVER100_SPLIT_DIR = "data-splits/Traditional-setting/Day/Cam1"
DRIVER100_IMAGE_DIR = "Day/Cam1"


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Equal configs give byte-identical datasets.

    Attributes:
        domain: one of :data:`DOMAINS`.
        images_per_class: images of each of the ten classes mapped to SF3D (and of
            C17/C19 in ``synth-driver100``); other 100-Driver classes get a quarter.
            Subjects take turns, so each subject has every class when this is at least
            ``n_subjects``.
        size: side of the square images in pixels, or ``[width, height]`` for non-square
            ones (real SF3D is ``[640, 480]``); a list with equal sides is stored as the int,
            so it is the same dataset (and settings key) as the square size.
        p_spurious: probability that the dashboard sticker takes its class's colour
            (otherwise a uniformly random one of the ten colours) in ``synth-sf3d``. Ignored
            by ``synth-driver100``, whose sticker colour is always random (no correlation).
        sticker_side: side of the sticker as a fraction of the frame (the cue's strength).
        n_subjects: synthetic drivers (at least 3, so by-subject splits have three parts).
        seed: base seed.
    """

    domain: str = "synth-sf3d"
    images_per_class: int = 40
    size: int | tuple[int, int] = 128
    p_spurious: float = 0.8
    sticker_side: float = STICKER_SIDE
    n_subjects: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        if self.domain not in DOMAINS:
            raise ValueError(f"unknown SynthDrivers domain {self.domain!r}; choose from {DOMAINS}")
        if not isinstance(self.size, int) or isinstance(self.size, bool):
            # Hydra hands a ListConfig; a tuple keeps the frozen config hashable.
            try:
                width, height = (int(v) for v in self.size)
            except (TypeError, ValueError):
                raise ValueError(f"size={self.size!r} must be an int or [width, height]") from None
            object.__setattr__(self, "size", width if width == height else (width, height))
        if min(self.width, self.height) < 32:
            raise ValueError(f"size={self.size} is too small to draw a driver (minimum 32)")
        if not 0.0 < self.sticker_side < 0.5:
            raise ValueError(f"sticker_side={self.sticker_side} must lie in (0, 0.5)")
        if not 0.0 <= self.p_spurious <= 1.0:
            raise ValueError(f"p_spurious={self.p_spurious} must lie in [0, 1]")
        if self.n_subjects < 3:
            raise ValueError(f"n_subjects={self.n_subjects}: need at least 3 for by-subject splits")
        if self.images_per_class < self.n_subjects:
            raise ValueError(
                f"images_per_class={self.images_per_class} < n_subjects={self.n_subjects}: "
                "every subject must have every class; raise images_per_class or lower n_subjects"
            )

    @property
    def width(self) -> int:
        """Image width in pixels."""
        return self.size if isinstance(self.size, int) else self.size[0]

    @property
    def height(self) -> int:
        """Image height in pixels."""
        return self.size if isinstance(self.size, int) else self.size[1]


def config_record(cfg: SynthConfig) -> dict:
    """``cfg`` as plain JSON values (a ``[width, height]`` size as a list), as the manifest
    stores it and the settings key hashes it."""
    return json.loads(json.dumps(asdict(cfg)))


@dataclass(frozen=True)
class _Item:
    rel: str  # path of the image relative to ROOT
    class_key: str  # SF3D class or 100-Driver folder
    activity: str
    subject: str
    style_index: int  # which subject appearance (test images have their own)
    seed_key: tuple[int, int]  # (class key, index) part of the image seed
    split: str
    labelled: bool = True  # False for SF3D's imgs/test (class known only to synth_meta.csv)


def _image_rng(cfg: SynthConfig, key: tuple[int, ...]) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, _DOMAIN_CODE[cfg.domain], *key])


def _sticker(cfg: SynthConfig, item: _Item) -> int:
    """Sticker colour index: the class's own colour with probability p_spurious (SF3D only)."""
    rng = _image_rng(cfg, (*item.seed_key, 7))  # own stream: p_spurious changes nothing else
    u, random_colour = rng.random(), int(rng.integers(len(STICKER_COLOURS)))
    if cfg.domain == "synth-sf3d" and item.class_key in SF3D_CLASSES and u < cfg.p_spurious:
        return int(item.class_key[1:])
    return random_colour


def _sf3d_plan(cfg: SynthConfig) -> list[_Item]:
    n = cfg.n_subjects
    extra = [f"p{100 + i:03d}" for i in range(n - len(SF3D_SUBJECT_IDS))]
    subjects = [*SF3D_SUBJECT_IDS[:n], *extra]
    n_test = max(3, cfg.images_per_class // 4)
    total = len(SF3D_CLASSES) * cfg.images_per_class + n_test
    # Kaggle numbers look random (img_44733.jpg): draw distinct numbers, fixed by the seed.
    numbers = _image_rng(cfg, (999,)).permutation(max(100_000, 2 * total))[:total] + 1
    items = []
    for k, cls in enumerate(SF3D_CLASSES):
        for j in range(cfg.images_per_class):
            num = int(numbers[len(items)])
            s = j % n
            rel = f"imgs/train/{cls}/img_{num}.jpg"
            items.append(_Item(rel, cls, SF3D_ACTIVITY[cls], subjects[s], s, (k, j), "train"))
    classes = list(SF3D_CLASSES)
    pick = _image_rng(cfg, (_TEST_KEY, 999))
    for j in range(n_test):
        num = int(numbers[len(items)])
        cls = classes[int(pick.integers(len(classes)))]
        # Unseen drivers, as in the Kaggle test set.
        rel = f"imgs/test/img_{num}.jpg"
        act = SF3D_ACTIVITY[cls]
        items.append(_Item(rel, cls, act, "", n + j, (_TEST_KEY, j), "test", labelled=False))
    return items


def _driver100_subject_splits(cfg: SynthConfig) -> list[str]:
    """Split name per subject index: ~60/20/20 of the subjects, assigned by seed."""
    n = cfg.n_subjects
    n_val = n_test = max(1, round(0.2 * n))
    order = _image_rng(cfg, (998,)).permutation(n)
    split = ["train"] * n
    for i in order[:n_val]:
        split[i] = "val"
    for i in order[n_val : n_val + n_test]:
        split[i] = "test"
    return split


def _driver100_plan(cfg: SynthConfig) -> list[_Item]:
    n = cfg.n_subjects
    splits = _driver100_subject_splits(cfg)
    items = []
    for k, folder in enumerate(DRIVER100_CLASSES):
        count = cfg.images_per_class if folder in DRIVER100_FULL else cfg.images_per_class // 4
        for j in range(max(1, count)):
            s = j % n
            # Vehicle and session fixed per subject and a per-folder counter: basenames repeat
            # across class folders, as in the real dataset.
            name = f"P{s + 1:03d}_V{1 + s % 3}_S{1 + (s // 3) % 4}_{j + 1:04d}.jpg"
            rel = f"{DRIVER100_IMAGE_DIR}/{folder}/{name}"
            act = DRIVER100_ACTIVITY[folder]
            items.append(_Item(rel, folder, act, f"P{s + 1:03d}", s, (k, j), splits[s]))
    return items


def _write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)  # 2-D uint8 -> mode "L"


def _render_chunk(
    items: Iterable[_Item], cfg: SynthConfig, root: Path, masks: Path, parts: Path
) -> list[tuple]:
    """Render and write ``items``; return their rows of ``synth_meta.csv``. Every image and
    subject look comes from its own seeded generator, so any split of the work between
    processes writes the same bytes."""
    styles: dict[int, Style] = {}
    rows = []
    fg_ids = np.asarray(FOREGROUND_IDS, dtype=np.uint8)
    for item in items:
        if item.style_index not in styles:
            srng = _image_rng(cfg, (1000 + item.style_index,))
            styles[item.style_index] = make_style(cfg.domain, srng)
        sticker = _sticker(cfg, item)
        image, labels = render(
            _image_rng(cfg, item.seed_key),
            item.activity,
            styles[item.style_index],
            (cfg.width, cfg.height),
            sticker=sticker,
            sticker_side=cfg.sticker_side,
        )
        out = root / item.rel
        out.parent.mkdir(parents=True, exist_ok=True)
        # 4:4:4 chroma keeps the few-pixel sticker its hue; the default 4:2:0 smears it.
        Image.fromarray(image).save(out, quality=JPEG_QUALITY, subsampling=0)
        png = Path(item.rel).with_suffix(".png")
        _write_png(masks / png, np.isin(labels, fg_ids).astype(np.uint8) * 255)
        _write_png(parts / png, labels)
        rows.append((item.rel, item.class_key, item.activity, item.subject, sticker, item.split))
    return rows


def _render_all(
    cfg: SynthConfig, items: list[_Item], root: Path, masks: Path, parts: Path, workers: int = 1
) -> None:
    work = partial(_render_chunk, cfg=cfg, root=root, masks=masks, parts=parts)
    if workers <= 1:
        rows = work(items)
    else:
        # Spawned, not forked, for the same reason as prepare's pool (torch/OpenMP threads in
        # the parent); chunks come back in order, so synth_meta.csv is the serial one.
        step = 64
        chunks = [items[i : i + step] for i in range(0, len(items), step)]
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, ctx) as pool:
            rows = [row for chunk_rows in pool.map(work, chunks) for row in chunk_rows]
    with open(root / META, "w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["path", "class", "activity", "subject", "sticker", "split"])
        w.writerows(rows)


def _write_sf3d_lists(root: Path, items: list[_Item]) -> None:
    train = [it for it in items if it.labelled]
    train.sort(key=lambda it: (it.subject, it.class_key, int(Path(it.rel).stem[4:])))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["subject", "classname", "img"])
    w.writerows((it.subject, it.class_key, Path(it.rel).name) for it in train)
    (root / "driver_imgs_list.csv").write_text(buf.getvalue())
    (root / "imgs" / "test").mkdir(parents=True, exist_ok=True)


def _write_driver100_splits(root: Path, items: list[_Item]) -> None:
    split_dir = root / DRIVER100_SPLIT_DIR
    split_dir.mkdir(parents=True, exist_ok=True)
    prefix = DRIVER100_IMAGE_DIR + "/"
    for split in ("train", "val", "test"):
        chosen = sorted(
            (driver100_label(it.class_key), it.rel.removeprefix(prefix))
            for it in items
            if it.split == split
        )
        lines = [f"{i}\t{rel}\t{label}\n" for i, (label, rel) in enumerate(chosen)]
        (split_dir / f"D1_{split}.txt").write_text("".join(lines))


def _legend(cfg: SynthConfig) -> dict:
    table = SF3D_ACTIVITY if cfg.domain == "synth-sf3d" else DRIVER100_ACTIVITY
    legend: dict = {str(i): name for i, name in PART_NAMES.items()}
    legend["foreground"] = list(FOREGROUND_IDS)
    legend["discriminative"] = {cls: DISCRIMINATIVE[act] for cls, act in table.items()}
    return legend


def _manifest_matches(root: Path, cfg: SynthConfig) -> bool:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return (
        manifest.get("version") == GENERATOR_VERSION
        and manifest.get("config") == config_record(cfg)
        and _sibling(root, "masks").is_dir()
        and _sibling(root, "parts").is_dir()
    )


def _sibling(root: Path, suffix: str) -> Path:
    return root.with_name(f"{root.name}_{suffix}")


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path)


def generate(
    out_dir: str | Path, cfg: SynthConfig, *, force: bool = False, workers: int = 1
) -> Path:
    """Write the ``cfg.domain`` dataset under ``out_dir`` and return its root ``out_dir/<domain>``.

    Cached: when ``ROOT/synth_manifest.json`` records the same config and generator version
    (and the mask and part trees exist), nothing is written. Otherwise, or with
    ``force=True``, the dataset is rendered into a hidden temporary directory under
    ``out_dir`` and moved into place: the old tree is removed root first (its manifest
    vanishes before anything else), then masks and parts are moved in and the root last, so
    an interrupted run never leaves a tree that looks complete. ``workers`` > 1 renders in
    that many processes; the bytes are the same as a serial run's.
    """
    out_dir = Path(out_dir)
    root = out_dir / cfg.domain
    masks, parts = _sibling(root, "masks"), _sibling(root, "parts")
    if not force and _manifest_matches(root, cfg):
        return root
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{cfg.domain}.partial-", dir=out_dir))
    try:
        t_root, t_masks, t_parts = tmp / root.name, tmp / masks.name, tmp / parts.name
        for d in (t_root, t_masks, t_parts):
            d.mkdir()
        if cfg.domain == "synth-sf3d":
            items = _sf3d_plan(cfg)
            _render_all(cfg, items, t_root, t_masks, t_parts, workers)
            _write_sf3d_lists(t_root, items)
        else:
            items = _driver100_plan(cfg)
            _render_all(cfg, items, t_root, t_masks, t_parts, workers)
            _write_driver100_splits(t_root, items)
        (t_parts / "legend.json").write_text(json.dumps(_legend(cfg), indent=1) + "\n")
        counts = Counter(it.class_key for it in items if it.labelled)
        manifest = {
            "generator": "sage.data.synth",
            "version": GENERATOR_VERSION,
            "config": config_record(cfg),
            "effective_p_spurious": cfg.p_spurious if cfg.domain == "synth-sf3d" else 0.0,
            "n_images": len(items),
            "n_unlabelled": sum(not it.labelled for it in items),
            "counts": dict(counts),
            "sticker_colours": [list(c) for c in STICKER_COLOURS],
        }
        (t_root / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        for d in (root, masks, parts):
            _remove(d)
        try:
            os.rename(t_masks, masks)
            os.rename(t_parts, parts)
            os.rename(t_root, root)
        except OSError:
            # Another process generated the same dataset at the same time: keep theirs.
            if _manifest_matches(root, cfg):
                return root
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
