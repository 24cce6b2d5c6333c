"""Foreground maskers: the interface and the registry.

A masker looks at a batch of RGB images (with their raw-reader rows, for maskers that read
files such as ``gt``) and returns one :class:`MaskResult` per image: a binary foreground mask
and the driver's box, or the reason it found no foreground. Images without foreground are
recorded and left out of every variant, never kept with an empty mask.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..errors import SageError


@dataclass
class MaskResult:
    """Foreground of one image: ``mask`` (H, W) bool and ``box`` (x0, y0, x1, y1), or a failure."""

    mask: np.ndarray | None
    box: tuple[int, int, int, int] | None = None
    failure: str | None = None
    polygon: np.ndarray | None = None  # (N, 2) x, y — when the masker produces one

    @classmethod
    def failed(cls, reason: str) -> MaskResult:
        return cls(mask=None, failure=reason)

    @classmethod
    def from_mask(cls, mask: np.ndarray, failure_if_empty: str = "no_foreground") -> MaskResult:
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            return cls.failed(failure_if_empty)
        return cls(mask=mask, box=mask_box(mask))


class Masker(Protocol):
    name: str

    def __call__(self, images: Sequence[np.ndarray], rows: Sequence[Any]) -> list[MaskResult]: ...


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """Tight box (x0, y0, x1, y1), exclusive upper corner, around a non-empty mask."""
    ys = np.flatnonzero(mask.any(1))
    xs = np.flatnonzero(mask.any(0))
    return int(xs[0]), int(ys[0]), int(xs[-1]) + 1, int(ys[-1]) + 1


_MASKERS: dict[str, Callable[..., Masker]] = {}


def register_masker(name: str) -> Callable[[Callable[..., Masker]], Callable[..., Masker]]:
    def decorator(factory: Callable[..., Masker]) -> Callable[..., Masker]:
        if name in _MASKERS:
            raise ValueError(f"masker {name!r} registered twice")
        _MASKERS[name] = factory
        return factory

    return decorator


def list_maskers() -> list[str]:
    return sorted(_MASKERS)


def build_masker(cfg: Mapping[str, Any]) -> Masker:
    """Build the masker named ``cfg['name']`` with the remaining keys as options."""
    options = dict(cfg)
    name = options.pop("name", None)
    if name not in _MASKERS:
        raise SageError(f"unknown masker {name!r}; available: {', '.join(list_maskers())}")
    return _MASKERS[name](**options)
