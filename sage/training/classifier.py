"""LightningModule for image classification over any registered backbone.

The module receives a built network and optimizer/scheduler factories (not DictConfigs) so it
can be unit-tested without Hydra; the checkpoint keeps the backbone name and class list so a
model can be rebuilt from the checkpoint alone (see :func:`load_classifier`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassCalibrationError,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from ..errors import SageError
from ..models import create_backbone


def classification_metrics(num_classes: int) -> MetricCollection:
    """The metric set logged at validation and test (keys become ``<stage>/<key>``)."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, average="micro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
            "precision_macro": MulticlassPrecision(num_classes, average="macro"),
            "recall_macro": MulticlassRecall(num_classes, average="macro"),
            "ece": MulticlassCalibrationError(num_classes, n_bins=15),
        }
    )


class ClassifierModule(pl.LightningModule):
    """Cross-entropy classifier; logs train/val/test metrics and keeps confusion matrices."""

    def __init__(
        self,
        net: nn.Module,
        backbone: str,
        class_names: Sequence[str],
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., torch.optim.lr_scheduler.LRScheduler] | None = None,
        class_weights: Sequence[float] | None = None,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {"backbone": backbone, "class_names": list(class_names), "image_size": image_size}
        )
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        n = len(class_names)
        weights = torch.as_tensor(class_weights, dtype=torch.float32) if class_weights else None
        self.register_buffer("class_weights", weights, persistent=False)
        self.val_metrics = classification_metrics(n).clone(prefix="val/")
        self.test_metrics = classification_metrics(n).clone(prefix="test/")
        self.train_acc = MulticlassAccuracy(n, average="micro")
        self.val_confusion = MulticlassConfusionMatrix(n)
        self.test_confusion = MulticlassConfusionMatrix(n)
        self.confusion: dict[str, Tensor] = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _step(self, batch: dict) -> tuple[Tensor, Tensor, Tensor]:
        logits = self(batch["image"])
        if not torch.isfinite(logits).all():
            raise FloatingPointError(f"non-finite logits for images {batch['image_id'][:4]}")
        loss = F.cross_entropy(logits, batch["label"], weight=self.class_weights)
        return loss, logits, batch["label"]

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        loss, logits, y = self._step(batch)
        self.train_acc(logits, y)
        bs = len(y)
        # sync_dist: under DDP the epoch loss is the batch-size weighted mean over all ranks
        # (a no-op on one device); torchmetrics objects gather their own states
        self.log(
            "train/loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=bs,
            sync_dist=True,
        )
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def _eval_step(self, batch: dict, stage: str) -> None:
        loss, logits, y = self._step(batch)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        confusion = self.val_confusion if stage == "val" else self.test_confusion
        probs = logits.softmax(-1)
        metrics.update(probs, y)
        confusion.update(probs, y)
        self.log(
            f"{stage}/loss",
            loss,
            on_epoch=True,
            prog_bar=stage == "val",
            batch_size=len(y),
            sync_dist=True,
        )

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def _eval_epoch_end(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        confusion = self.val_confusion if stage == "val" else self.test_confusion
        # compute() already gathers every rank's states, so all ranks hold the same values;
        # sync_dist averages identical numbers (and stops Lightning's per-metric DDP warning)
        self.log_dict(metrics.compute(), prog_bar=stage == "val", sync_dist=True)
        self.confusion[stage] = confusion.compute().cpu()
        metrics.reset()
        confusion.reset()

    def on_validation_epoch_end(self) -> None:
        self._eval_epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._eval_epoch_end("test")

    def configure_optimizers(self):
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer=optimizer)}


def load_classifier(
    path: str | Path, *, expect_backbone: str | None = None
) -> tuple[nn.Module, dict]:
    """Rebuild the network of a SAGE checkpoint (``weights_only=True``); return it with its hparams.

    A checkpoint of another backbone than ``expect_backbone`` is an error naming both.
    """
    path = Path(path)
    if not path.is_file():
        raise SageError(f"checkpoint {path} does not exist")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    hparams = ckpt.get("hyper_parameters", {})
    if "backbone" not in hparams or "class_names" not in hparams:
        raise SageError(f"{path} is not a SAGE classifier checkpoint (no backbone/class_names)")
    if expect_backbone is not None and hparams["backbone"] != expect_backbone:
        raise SageError(
            f"checkpoint {path} holds a {hparams['backbone']!r} model, "
            f"config says {expect_backbone!r}"
        )
    net = create_backbone(hparams["backbone"], len(hparams["class_names"]))
    state = {
        k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")
    }
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise SageError(
            f"checkpoint {path} does not fit backbone {hparams['backbone']!r}: {err}"
        ) from err
    # the datamodule's state (PreparedDataModule.state_dict): the data the model was trained on
    data_state = ckpt.get("PreparedDataModule") or {}
    return net.eval(), {**hparams, **data_state}
