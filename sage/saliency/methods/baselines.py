"""Sanity baselines: maps that ignore the model. Every metric must rank them last.

From "How to Evaluate and Refine your CAM" (trivial baselines that fool Average Drop/ADCC)
and the usual random baseline. They depend only on the image size (and a seed).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import SaliencyMethod, register_method


class BaselineMethod(SaliencyMethod):
    family = "baseline"

    def compute(self, model: nn.Module, images: Tensor, targets: Tensor | None) -> Tensor:
        b, _, h, w = images.shape
        return self.make(b, h, w, images.device)

    def make(self, b: int, h: int, w: int, device: torch.device) -> Tensor:
        raise NotImplementedError


@register_method("random")
class RandomMethod(BaselineMethod):
    """Uniform noise in [0, 1), seeded (same maps for the same seed and shape)."""

    def __init__(self, target_layers=None, seed: int = 0) -> None:
        super().__init__(target_layers)
        self.seed = seed

    def make(self, b: int, h: int, w: int, device: torch.device) -> Tensor:
        gen = torch.Generator().manual_seed(self.seed)
        return torch.rand(b, h, w, generator=gen).to(device)


@register_method("ones_but_one")
class OnesButOneMethod(BaselineMethod):
    """All ones except the top-left pixel (0), so min-max scaling is defined (Fake-CAM)."""

    def make(self, b: int, h: int, w: int, device: torch.device) -> Tensor:
        maps = torch.ones(b, h, w, device=device)
        maps[:, 0, 0] = 0
        return maps


@register_method("half")
class HalfMethod(BaselineMethod):
    """HalfCAM: ones on the left half of the image, zeros on the right."""

    def make(self, b: int, h: int, w: int, device: torch.device) -> Tensor:
        maps = torch.zeros(b, h, w, device=device)
        maps[:, :, : w // 2] = 1
        return maps


@register_method("centre_gaussian")
class CentreGaussianMethod(BaselineMethod):
    """A Gaussian centred on the image, std ``sigma`` × image size (the centre-bias prior)."""

    def __init__(self, target_layers=None, sigma: float = 0.25) -> None:
        super().__init__(target_layers)
        self.sigma = sigma

    def make(self, b: int, h: int, w: int, device: torch.device) -> Tensor:
        y = (torch.arange(h, device=device) + 0.5) / h - 0.5
        x = (torch.arange(w, device=device) + 0.5) / w - 0.5
        g = torch.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2 * self.sigma**2))
        return g.expand(b, h, w).clone()
