"""Detector annotations of the driver: YOLO label files and a VIA project JSON.

YOLO (Ultralytics) format, one line per object: ``class cx cy w h`` normalised to [0, 1];
with a polygon, the segmentation format ``class x1 y1 x2 y2 ...`` goes to ``yolo_seg/``.
VIA (VGG Image Annotator 2.x project JSON): a ``rect`` and a ``polygon`` region per image.
"""

from __future__ import annotations

import cv2
import numpy as np

DRIVER_CLASS = 0


def mask_polygon(mask: np.ndarray, epsilon: float = 1.0) -> np.ndarray:
    """Outline (N, 2) of the largest connected foreground region, simplified by ``epsilon`` px."""
    contours, _ = cv2.findContours(
        mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE
    )
    if not contours:
        return np.zeros((0, 2), np.int32)
    largest = max(contours, key=cv2.contourArea)
    return cv2.approxPolyDP(largest, epsilon, True).reshape(-1, 2)


def yolo_box_line(box: tuple[int, int, int, int], shape: tuple[int, int]) -> str:
    h, w = shape
    x0, y0, x1, y1 = box
    cx, cy, bw, bh = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h
    return f"{DRIVER_CLASS} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n"


def yolo_polygon_line(polygon: np.ndarray, shape: tuple[int, int]) -> str:
    h, w = shape
    coords = " ".join(f"{x / w:.6f} {y / h:.6f}" for x, y in polygon)
    return f"{DRIVER_CLASS} {coords}\n"


def via_entry(
    filename: str, size_bytes: int, box: tuple[int, int, int, int], polygon: np.ndarray, label: str
) -> tuple[str, dict]:
    """One VIA ``_via_img_metadata`` entry (key, value)."""
    x0, y0, x1, y1 = box
    regions = [
        {
            "shape_attributes": {
                "name": "rect",
                "x": x0,
                "y": y0,
                "width": x1 - x0,
                "height": y1 - y0,
            },
            "region_attributes": {"object": "driver"},
        }
    ]
    if len(polygon) >= 3:
        regions.append(
            {
                "shape_attributes": {
                    "name": "polygon",
                    "all_points_x": [int(x) for x in polygon[:, 0]],
                    "all_points_y": [int(y) for y in polygon[:, 1]],
                },
                "region_attributes": {"object": "driver"},
            }
        )
    return f"{filename}{size_bytes}", {
        "filename": filename,
        "size": size_bytes,
        "regions": regions,
        "file_attributes": {"class": label},
    }
