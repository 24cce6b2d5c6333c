"""Infidelity and max-sensitivity (Yeh, Hsieh, Suggala, Inouye, Ravikumar, "On the
(In)fidelity and Sensitivity of Explanations", NeurIPS 2019) through captum
(docs/metrics.md §12).

Both are captum's own implementations (``captum.metrics.infidelity``,
``captum.metrics.sensitivity_max``); this module only supplies what they need, in SAGE's
conventions:

- **perturbations in pixel space**: Gaussian noise of std ``noise`` (infidelity) and uniform
  noise in the L∞ ball of radius ``radius`` (max-sensitivity), both in pixel units ([0, 1]),
  divided by the normalisation ``std`` per channel before they touch the normalised input. The
  noise is drawn from a CPU generator seeded with ``seed``: one field per perturbation sample,
  shared by every image of the batch (captum expands the batch with ``repeat_interleave``, so
  sample j of every image gets field j), so an image's value depends neither on its batch nor
  on the device.
- **infidelity**: ``E_I[(Iᵀ Φ − (f(x) − f(x − I)))²]`` with ``Φ`` the scored map broadcast over
  the channels (one relevance per pixel, the same for its C values) and ``f`` the explained
  class's score (``output``: logit by default, as captum's example; or softmax probability).
  ``normalize=True`` (default) applies captum's optimal scaling β of the map, so the value
  does not depend on the map's arbitrary scale (CAMs and gradients live on different ones).
- **max-sensitivity**: ``max_I ‖Φ(x + I) − Φ(x)‖ / ‖Φ(x)‖`` (Frobenius norm), with the
  explanation ``Φ`` recomputed by the same :class:`~sage.saliency.methods.SaliencyMethod`
  (same scoring rule) for the same target class on each perturbed batch.

Both: lower is better.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from captum.metrics import infidelity, sensitivity_max
from torch import Tensor, nn

from .batch_checks import check_batch, eval_no_grad
from .perturbation_curves import OUTPUTS, channel_stats

__all__ = [
    "GaussianPerturbation",
    "UniformPerturbation",
    "infidelity_scores",
    "max_sensitivity_scores",
]


class _SharedFields:
    """Noise fields for captum's expanded batches: call k draws (n_k, C, H, W) from the seeded
    CPU generator (n_k = this call's samples per image) and gives field j to sample j of every
    image."""

    def __init__(self, batch: int, std: Tensor, seed: int) -> None:
        self.batch = batch
        self.std = std  # (1, C, 1, 1) normalisation std on the images' device
        self.gen = torch.Generator().manual_seed(int(seed))

    def _draw(self, inputs: Tensor) -> Tensor:
        n_total = inputs.shape[0]
        if n_total % self.batch:
            raise ValueError(f"captum passed {n_total} inputs for a batch of {self.batch}")
        per = n_total // self.batch
        fields = self._sample((per, *inputs.shape[1:]))
        fields = fields.to(device=inputs.device, dtype=inputs.dtype) / self.std
        return fields.repeat(self.batch, 1, 1, 1)  # index i·per + j → field j

    def _sample(self, shape: tuple[int, ...]) -> Tensor:
        raise NotImplementedError


class GaussianPerturbation(_SharedFields):
    """captum infidelity ``perturb_func``: ``I ~ N(0, noise²)`` in pixel units; returns
    ``(I, x − I)`` in normalised units (captum's documented convention)."""

    def __init__(self, noise: float, batch: int, std: Tensor, seed: int = 0) -> None:
        super().__init__(batch, std, seed)
        self.noise = float(noise)

    def _sample(self, shape: tuple[int, ...]) -> Tensor:
        return torch.randn(shape, generator=self.gen, dtype=torch.float64) * self.noise

    def __call__(self, inputs: Tensor) -> tuple[Tensor, Tensor]:
        perturbation = self._draw(inputs)
        return perturbation, inputs - perturbation


class UniformPerturbation(_SharedFields):
    """captum sensitivity ``perturb_func``: ``x + U(−radius, radius)`` (pixel units)."""

    def __init__(self, radius: float, batch: int, std: Tensor, seed: int = 0) -> None:
        super().__init__(batch, std, seed)
        self.radius = float(radius)

    def _sample(self, shape: tuple[int, ...]) -> Tensor:
        u = torch.rand(shape, generator=self.gen, dtype=torch.float64)
        return (2 * u - 1) * self.radius

    def __call__(self, inputs: Tensor) -> Tensor:
        return inputs + self._draw(inputs)


def _targets(model: nn.Module, images: Tensor, targets: Tensor | None) -> Tensor:
    if targets is not None:
        return targets.to(images.device).long()
    with eval_no_grad(model):
        return model(images).argmax(1)


def score_function(model: nn.Module, output: str):
    """``forward_func`` for captum: the model's logits or softmax probabilities (B, K)."""
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if output == "logit":
        return model
    return lambda x: torch.softmax(model(x).float(), dim=1)


def infidelity_scores(
    model: nn.Module,
    images: Tensor,
    maps: Tensor,
    targets: Tensor | None,
    std: float | Sequence[float],
    *,
    noise: float = 0.01,
    samples: int = 10,
    seed: int = 0,
    normalize: bool = True,
    output: str = "logit",
    max_examples_per_batch: int | None = None,
) -> Tensor:
    """Infidelity per image (Yeh et al. 2019) by ``captum.metrics.infidelity`` (module notes):
    Gaussian pixel noise of std ``noise``, ``samples`` draws, the map broadcast over channels.
    (B,) in the working dtype, ≥ 0; lower is better."""
    check_batch(images, maps, targets)
    targets = _targets(model, images, targets)
    b = images.shape[0]
    perturb = GaussianPerturbation(noise, b, channel_stats(std, images, "std"), seed)
    attributions = maps.to(images.device, images.dtype)[:, None].expand_as(images)
    with eval_no_grad(model):
        values = infidelity(
            score_function(model, output),
            perturb,
            images,
            attributions,
            target=targets,
            n_perturb_samples=samples,
            max_examples_per_batch=max_examples_per_batch,
            normalize=normalize,
        )
    return values.reshape(b)


def max_sensitivity_scores(
    model: nn.Module,
    images: Tensor,
    targets: Tensor | None,
    method,
    std: float | Sequence[float],
    *,
    radius: float = 0.02,
    samples: int = 10,
    seed: int = 0,
    max_examples_per_batch: int | None = None,
) -> Tensor:
    """Max-sensitivity per image (Yeh et al. 2019) by ``captum.metrics.sensitivity_max``
    (module notes): ``samples`` uniform pixel perturbations of L∞ radius ``radius``, the
    explanation recomputed by ``method(model, x, targets)``. (B,) ≥ 0; lower is better."""
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W), got {tuple(images.shape)}")
    targets = _targets(model, images, targets)
    b = images.shape[0]
    perturb = UniformPerturbation(radius, b, channel_stats(std, images, "std"), seed)

    def explain(inputs, target):
        # a tuple back: captum iterates over the clean call's result as a tuple of inputs
        x = inputs[0] if isinstance(inputs, tuple) else inputs
        return (method(model, x, target).detach(),)

    values = sensitivity_max(
        explain,
        images,
        perturb_func=perturb,
        n_perturb_samples=samples,
        max_examples_per_batch=max_examples_per_batch,
        target=targets,
    )
    return values.reshape(b)
