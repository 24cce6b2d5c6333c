"""Shared plumbing of the model-based metrics: input checks and the no-grad eval context."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn


@contextmanager
def eval_no_grad(model: nn.Module) -> Iterator[None]:
    """Eval mode without gradients; the model's previous train/eval mode is restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def check_batch(images: Tensor, maps: Tensor, targets: Tensor | None) -> None:
    """images (B, C, H, W), maps (B, H, W), targets (B,) or None — else a ValueError."""
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    b, _, h, w = images.shape
    if maps.shape != (b, h, w):
        raise ValueError(f"maps must be (B, H, W) = {(b, h, w)}, got {tuple(maps.shape)}")
    if targets is not None and targets.shape != (b,):
        raise ValueError(f"targets must be ({b},), got {tuple(targets.shape)}")
