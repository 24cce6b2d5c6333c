"""Foreground maskers (registry): ``gt``, ``yolov8_seg``, ``grabcut``, ``none`` (full frame)."""

from . import grabcut, gt, none, yolov8_seg  # noqa: F401  (registration side effects)
from .base import Masker, MaskResult, build_masker, list_maskers, mask_box, register_masker

__all__ = ["MaskResult", "Masker", "build_masker", "list_maskers", "mask_box", "register_masker"]
