"""``yolov8_seg`` masker: ultralytics YOLOv8-seg instance masks of COCO class 0 (person).

Jocher et al., Ultralytics YOLOv8 (2023). Weights come from a local file
(``masker.weights=/path/yolov8s-seg.pt``); nothing is downloaded. Ultralytics unpickles that
file in full (``torch.load(weights_only=False)``), which can run any code a crafted file
carries, so a file that ``torch.load(..., weights_only=True)`` refuses is only handed on with
``masker.trust_weights=true``. Genuine ultralytics ``.pt`` files pickle their model classes
and need that opt-in. When several persons are found, the driver is chosen by ``select``:

- ``largest`` (default): the person with the largest mask area — in a cabin camera the
  driver is the closest person;
- ``central``: the person whose box centre is closest to the image centre;
- ``largest_central``: area × (1 − normalised centre distance), a compromise for cameras
  that see a large passenger at the edge.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import MissingWeightsError, SageError
from .base import MaskResult, register_masker

PERSON = 0
SELECT_RULES = ("largest", "central", "largest_central")


def select_driver(masks: np.ndarray, boxes: np.ndarray, rule: str = "largest") -> int:
    """Index of the driver among person instances ``masks`` (N, H, W) with ``boxes`` (N, 4)."""
    if rule not in SELECT_RULES:
        raise SageError(f"masker.select must be one of {SELECT_RULES}, got {rule!r}")
    h, w = masks.shape[1:]
    area = masks.reshape(len(masks), -1).sum(1) / (h * w)
    centre = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2 / w, (boxes[:, 1] + boxes[:, 3]) / 2 / h], 1)
    dist = np.linalg.norm(centre - 0.5, axis=1) / np.sqrt(0.5)  # 0 at centre, 1 at a corner
    score = {"largest": area, "central": -dist, "largest_central": area * (1 - dist)}[rule]
    return int(np.argmax(score))


def check_weights_only(path: str | Path) -> None:
    """A SageError unless ``path`` loads with ``torch.load(..., weights_only=True)``: the
    restricted unpickler runs nothing a file names, so a crafted file is refused unopened."""
    import torch

    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # UnpicklingError, RuntimeError (not a torch file), ...
        raise SageError(
            f"masker.weights={path} is not loadable with weights_only=True (it needs full "
            "unpickling, which can run code); set masker.trust_weights=true if you trust it"
        ) from err


@register_masker("yolov8_seg")
class YoloSegMasker:
    name = "yolov8_seg"

    def __init__(
        self,
        weights: str | None = None,
        select: str = "largest",
        conf: float = 0.25,
        imgsz: int = 640,
        batch_size: int = 16,
        device: str | None = None,
        trust_weights: bool = False,
    ) -> None:
        if select not in SELECT_RULES:
            raise SageError(f"masker.select must be one of {SELECT_RULES}, got {select!r}")
        if weights is None:
            raise MissingWeightsError(
                "yolov8_seg needs weights: download yolov8s-seg.pt (Ultralytics assets release) "
                "on a machine with internet and pass masker.weights=/path/yolov8s-seg.pt"
            )
        # A .yaml builds the architecture with random weights (used by the tests).
        if not str(weights).endswith(".yaml") and not Path(weights).is_file():
            raise MissingWeightsError(
                f"YOLOv8-seg weights {weights} not found; put yolov8s-seg.pt there "
                "(Ultralytics assets release) or pass masker.weights=/path/yolov8s-seg.pt"
            )
        if not str(weights).endswith((".yaml", ".yml")) and not trust_weights:
            check_weights_only(weights)
        from ultralytics import YOLO  # heavy import, only when this masker is used

        self.model = YOLO(str(weights))
        self.select, self.conf, self.imgsz = select, conf, imgsz
        self.batch_size, self.device = batch_size, device

    def __call__(self, images: Sequence[np.ndarray], rows: Sequence[Any]) -> list[MaskResult]:
        results: list[MaskResult] = []
        for start in range(0, len(images), self.batch_size):
            batch = [
                np.ascontiguousarray(im[..., ::-1])
                for im in images[start : start + self.batch_size]
            ]
            preds = self.model.predict(
                batch,
                classes=[PERSON],
                conf=self.conf,
                imgsz=self.imgsz,
                device=self.device,
                verbose=False,
                retina_masks=True,
            )
            results += [
                self._to_result(p, im.shape[:2]) for p, im in zip(preds, batch, strict=True)
            ]
        return results

    def _to_result(self, pred: Any, shape: tuple[int, int]) -> MaskResult:
        if pred.masks is None or len(pred.boxes) == 0:
            return MaskResult.failed("no_person_found")
        masks = pred.masks.data.cpu().numpy() > 0.5
        if masks.shape[1:] != shape:  # retina masks are at input size; guard anyway
            resized = [
                cv2.resize(m.astype(np.uint8), shape[::-1], interpolation=cv2.INTER_NEAREST)
                for m in masks
            ]
            masks = np.stack(resized) > 0
        i = select_driver(masks, pred.boxes.xyxy.cpu().numpy(), self.select)
        return MaskResult.from_mask(masks[i], failure_if_empty="empty_person_mask")
