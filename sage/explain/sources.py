"""Where the explain task's model and images come from: a checkpoint on a prepared split, or
any backbone on a folder of images.

- **prepared** (``checkpoint=<ckpt | run id | latest>``): the checkpoint's network on a split
  of the prepared data it was trained on (or ``dataset=``): labels, masks (unless prepared with
  ``masker=none``), named parts and the ground-truth attribution where the data has them;
- **images** (``model=<backbone> [model.weights=<file>] images=<folder | file | glob>
  [masks=<folder>]``): a pretrained classifier as it comes (its class count and names from the
  weights file, :func:`~sage.models.pretrained.load_pretrained`) on arbitrary images
  (:class:`~sage.data.image_folder.ImageFolderDataset`): no labels, so the predicted class is
  explained; foreground masks only where ``masks=`` has one.

:func:`open_source` picks one from the config and returns a :class:`Source`: the network, the
batch loader, class names, the backbone's spec and input size, what the images carry (labels,
masks, parts) and the run's provenance (params, tags, model id). :meth:`Source.usable_sets`
drops the metric sets the images cannot support, each with its reason, so the task records
them instead of failing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Subset

from ..data.datamodule import PreparedImages, image_transform
from ..data.image_folder import ImageFolderDataset, collate_images
from ..errors import SageError
from ..metrics.suite import MASK_NUMBERS, NO_MASKS, label_free_sets, mask_free_sets
from ..models import get_backbone_spec
from ..models.pretrained import load_pretrained
from ..models.registry import BackboneSpec
from ..training.checkpoint_data import load_checkpoint_and_data
from .batch import discriminative_parts

log = logging.getLogger(__name__)

NO_MASKS_GIVEN = "no masks= folder was given"
NO_LABELS_GIVEN = "images= has no labels (the predicted class is explained)"
# numbers of the summary that compare the prediction with the true class
LABEL_NUMBERS: tuple[str, ...] = ("acc", "fg_mass/correct", "fg_mass/error")


@dataclass
class Source:
    """A model and the batches it is explained on, with what they carry and where they came
    from (see the module docstring)."""

    net: nn.Module
    loader: DataLoader
    n_images: int
    classes: list[str]
    backbone: str
    spec: BackboneSpec
    size: int
    labelled: bool  # batches carry ``label``
    masked: bool  # batches carry real foreground masks (some images at least)
    model_id: str  # the MLflow run name's model part
    title: str  # figure titles: the checkpoint or weights file
    image: Callable[[str], np.ndarray]  # image_id -> RGB uint8 at (size, size)
    params: dict[str, Any]  # provenance for explain_params.json and MLflow params
    tags: dict[str, str]
    keys: dict[str, Any]  # constant columns of summary.csv / tokens.parquet
    where: str  # the images, in words (errors)
    part_names: dict[int, str] = field(default_factory=dict)
    discriminative: dict[str, np.ndarray] = field(default_factory=dict)
    no_masks: str = NO_MASKS  # why there are no masks, when there are none
    no_labels: str = NO_LABELS_GIVEN

    def usable_sets(
        self, metric_sets: Mapping[str, Mapping[str, Any] | None]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
        """``(kept, skipped)``: the selected sets these images support, and the others (and
        the summary numbers that need labels or masks) with the reason each is left out."""
        kept = {k: dict(v or {}) for k, v in metric_sets.items()}
        skipped: dict[str, str] = {}
        if not self.labelled:
            kept, why = label_free_sets(kept, self.no_labels)
            skipped |= why | {n: f"needs true labels; {self.no_labels}" for n in LABEL_NUMBERS}
        if not self.masked:
            kept, why = mask_free_sets(kept, self.part_names.values(), self.no_masks)
            numbers = {n: f"needs a foreground mask; {self.no_masks}" for n in MASK_NUMBERS}
            skipped |= why | {n: r for n, r in numbers.items() if n not in skipped}
        return kept, skipped


def open_source(cfg: DictConfig, out: Path) -> Source:
    """The source ``cfg`` names: ``images=`` (with ``model=``) or ``checkpoint=``, never
    both."""
    images, checkpoint = cfg.get("images"), cfg.get("checkpoint")
    if images and checkpoint:
        raise SageError(
            "checkpoint= and images= are two ways in: explain a checkpoint on its prepared "
            "data, or model=<backbone> model.weights=<file> on images=; give one"
        )
    if images:
        return image_source(cfg)
    if not checkpoint:
        raise SageError(
            "explain needs checkpoint=<.ckpt | MLflow run id | latest>, or "
            "model=<backbone> [model.weights=<file>] images=<folder | glob>"
        )
    if cfg.get("masks"):
        raise SageError("masks= goes with images=<folder>; a prepared dataset brings its own")
    if cfg.get("model"):
        raise SageError(
            "model= is for images=<folder> (a checkpoint brings its own model); "
            "drop model= or give images="
        )
    return prepared_source(cfg, out)


def prepared_source(cfg: DictConfig, out: Path) -> Source:
    """``cfg.checkpoint`` on ``cfg.split`` of its prepared data (or ``dataset=``)."""
    ckpt, model_run, net, hparams, ds, data = load_checkpoint_and_data(cfg, out)
    spec = get_backbone_spec(hparams["backbone"])
    size = int(hparams.get("image_size") or spec.input_size)
    images = PreparedImages(
        data,
        cfg.split,
        image_transform(size, spec.mean, spec.std),
        # masker=none wrote whole-frame masks: leaving them out makes the region numbers NaN
        with_masks=data.has_masks,
        with_parts=bool(data.part_names),
        limit=cfg.get("limit"),
    )

    def image(image_id: str) -> np.ndarray:
        with Image.open(data.image_path(image_id)) as im:
            return np.asarray(im.convert("RGB").resize((size, size)))

    return Source(
        net=net,
        loader=DataLoader(images, batch_size=int(cfg.batch_size), shuffle=False),
        n_images=len(images.frame),
        classes=list(data.classes),
        backbone=hparams["backbone"],
        spec=spec,
        size=size,
        labelled=True,
        masked=data.has_masks,
        model_id=f"{hparams['backbone']}-nc{len(data.classes)}-{ds['name']}-{ds['variant']}",
        title=ckpt.name,
        image=image,
        params={
            "checkpoint": str(cfg.checkpoint),
            "model_run": model_run,
            "backbone": hparams["backbone"],
            "dataset": ds["name"],
            "variant": ds["variant"],
            "split": cfg.split,
        },
        tags={"model_run": model_run, "prepared_dataset": str(data.root)},
        keys={"split": cfg.split, "variant": ds["variant"], "model_run": model_run},
        where=f"split {cfg.split!r} of {data.root}",
        part_names=dict(data.part_names),
        discriminative=discriminative_parts(data, images.frame),
    )


def image_source(cfg: DictConfig) -> Source:
    """``cfg.model`` (a backbone config: ``name``, ``weights``, ``input_size``) on the images
    of ``cfg.images`` with the masks of ``cfg.masks``."""
    model = cfg.get("model")
    if not model or not model.get("name"):
        raise SageError(
            "images= needs the model to explain: model=<backbone> [model.weights=<file>], "
            "e.g. model=resnet50 model.weights=/weights/resnet50.pth"
        )
    if cfg.get("dataset"):
        raise SageError("dataset= names prepared data; images= explains a folder: give one")
    if cfg.targets == "true":
        raise SageError("targets=true explains the true class, but images= has no labels")
    backbone, weights = str(model.name), model.get("weights")
    net, classes, spec = load_pretrained(backbone, weights)
    size = int(model.get("input_size") or spec.input_size)
    masks = cfg.get("masks")
    dataset = ImageFolderDataset(cfg.images, size, spec.mean, spec.std, masks=masks)
    if masks and dataset.n_masks == 0:
        raise SageError(
            f"no mask in {masks} matches an image of {cfg.images} (a mask is "
            "<masks>/<image's relative path or file stem>.png)"
        )
    if masks and dataset.n_masks < len(dataset):
        log.warning(
            "%d of %d images have no mask in %s: their region numbers are NaN",
            len(dataset) - dataset.n_masks,
            len(dataset),
            masks,
        )
    limit = cfg.get("limit")
    items = Subset(dataset, range(min(int(limit), len(dataset)))) if limit else dataset
    loader = DataLoader(
        items, batch_size=int(cfg.batch_size), shuffle=False, collate_fn=collate_images
    )
    paths = dict(zip(dataset.image_ids, dataset.paths, strict=True))

    def image(image_id: str) -> np.ndarray:
        with Image.open(paths[image_id]) as im:
            return np.asarray(im.convert("RGB").resize((size, size)))

    folder = dataset.base.resolve().name or "images"
    source = str(Path(cfg.images).expanduser().resolve())
    return Source(
        net=net.eval(),
        loader=loader,
        n_images=len(items),
        classes=classes,
        backbone=backbone,
        spec=spec,
        size=size,
        labelled=False,
        masked=dataset.n_masks > 0,
        model_id=f"{backbone}-nc{len(classes)}-images-{folder}",
        title=Path(weights).name if weights else f"{backbone} (ImageNet weights)",
        image=image,
        params={
            "images": source,
            "masks": str(Path(masks).expanduser().resolve()) if masks else None,
            "n_masks": dataset.n_masks,
            "weights": str(Path(weights).expanduser().resolve()) if weights else "imagenet",
            "backbone": backbone,
            "n_classes": len(classes),
        },
        tags={"images": source},
        keys={"split": "images", "variant": None, "model_run": ""},
        where=f"images={cfg.images}",
        no_masks=NO_MASKS_GIVEN,
    )
