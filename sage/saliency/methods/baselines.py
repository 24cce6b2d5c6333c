"""Sanity baselines: maps that ignore the model. Every faithful metric must rank them last.

The trivial CAMs of Domeniconi et al., "How to Evaluate and Refine your CAM" (§3.3, the
RandomCAM / HalfCAM / All1sCAM of their reference code), which fool Average Drop and ADCC but
not ROAD or ARCC, plus a left-half mask and a centre-Gaussian prior. They depend only on the
image size (and, for ``random``, a seeded stream). Their values are the test, so they are
scored as constructed (``scoring = "raw"``; all are non-negative anyway).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import SaliencyMethod, register_method


class BaselineMethod(SaliencyMethod):
    family = "baseline"
    scoring = "raw"

    def compute(self, model: nn.Module, images: Tensor, targets: Tensor | None) -> Tensor:
        b, _, h, w = images.shape
        return self.make(b, h, w, images.device)

    def make(self, b: int, h: int, w: int, device: torch.device) -> Tensor:
        raise NotImplementedError


@register_method("random")
class RandomMethod(BaselineMethod):
    """RandomCAM: every pixel uniform in [0, 1), a fresh map on every call.

    The maps come from one stream seeded with ``seed`` when the method is created, so a run
    is reproducible, yet the map of ``x ⊙ S`` (Coherency's second call) is a new draw, as in
    the paper: a random map does not reproduce itself (Coherency ≈ ½), where a map seeded per
    call would (Coherency 1).
    """

    def __init__(self, target_layers=None, seed: int = 0) -> None:
        super().__init__(target_layers)
        self.seed = seed
        self._stream = torch.Generator().manual_seed(seed)

    def make(self, b: int, h: int, w: int, device: torch.device) -> Tensor:
        return torch.rand(b, h, w, generator=self._stream).to(device)


@register_method("ones_but_one")
class OnesButOneMethod(BaselineMethod):
    """All1sCAM: all ones except the top-left pixel (0), so min-max scaling is defined."""

    def make(self, b: int, h: int, w: int, device: torch.device) -> Tensor:
        maps = torch.ones(b, h, w, device=device)
        maps[:, 0, 0] = 0
        return maps


@register_method("half")
class HalfMethod(BaselineMethod):
    """HalfCAM: 0.5 everywhere, the top-left pixel 0 and the bottom-right pixel 1.

    After min-max scaling it halves every pixel of ``x ⊙ S`` whatever the image shows, which
    barely moves a classifier's confidence: it fools Average Drop and ADCC wherever the object
    is, while its ranking (one pixel above a plateau) carries no information for ROAD.
    """

    def make(self, b: int, h: int, w: int, device: torch.device) -> Tensor:
        maps = torch.full((b, h, w), 0.5, device=device)
        maps[:, 0, 0] = 0
        maps[:, -1, -1] = 1
        return maps


@register_method("left_half")
class LeftHalfMethod(BaselineMethod):
    """Ones on the left half of the image, zeros on the right: a position prior whose scores
    depend on where the object is (a contrast to ``half``, which does not)."""

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


@register_method("ground_truth")
class GroundTruthMethod(BaselineMethod):
    """The answer key, not a saliency method: each image's discriminative parts (the hand
    and object that define its activity in SynthDrivers' part masks) as a binary map.

    Meta-evaluation scores it next to the real methods and the trivial baselines: a metric
    that does not rank it first does not measure what it claims. The caller hands it each
    batch's map with :meth:`provide` (explain does, from the part masks); the same map is
    returned for every call on that batch, so Coherency's second call sees it again.
    """

    family = "reference"

    def __init__(self, target_layers=None) -> None:
        super().__init__(target_layers)
        self._maps: Tensor | None = None

    def provide(self, maps: Tensor | None) -> None:
        """Set the (B, H, W) ground-truth maps of the next batch (None: this data has none)."""
        self._maps = maps

    def make(self, b: int, h: int, w: int, device: torch.device) -> Tensor:
        from ...errors import SageError

        if self._maps is None:
            raise SageError(
                "ground_truth needs the discriminative part masks of every image (SynthDrivers, "
                "or a dataset with parts/legend.json listing 'discriminative' parts)"
            )
        if tuple(self._maps.shape) != (b, h, w):
            raise SageError(
                f"ground_truth holds maps of shape {tuple(self._maps.shape)} but was called on "
                f"{(b, h, w)}: it can only re-score the batch it was given (metric sets that "
                "explain other images, such as COSE's transformed subsets, cannot score it)"
            )
        return self._maps.float().to(device)
