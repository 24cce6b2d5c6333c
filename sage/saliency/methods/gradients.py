"""Gradient attributions through captum, reduced over colour channels to one map per image.

Captum attributes per input channel; a saliency map needs one value per pixel, so each
method reduces channels with ``reduce``: ``abs_max`` (Simonyan et al.'s choice for vanilla
gradients), ``abs_sum`` or ``sum`` (signed, keeps the sign for methods whose attributions
add up to the output, e.g. Integrated Gradients' completeness).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from captum.attr import (
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    NoiseTunnel,
    Saliency,
)
from torch import Tensor, nn

from ...errors import SageError
from .base import SaliencyMethod, register_method

REDUCTIONS = ("abs_max", "abs_sum", "sum")


def reduce_channels(attr: Tensor, how: str) -> Tensor:
    if how == "abs_max":
        return attr.abs().amax(dim=1)
    if how == "abs_sum":
        return attr.abs().sum(dim=1)
    if how == "sum":
        return attr.sum(dim=1)
    raise SageError(f"reduce must be one of {REDUCTIONS}, got {how!r}")


class GradientMethod(SaliencyMethod):
    """A captum attribution; subclasses build the captum object and pass options."""

    family = "gradient"
    # gradient maps are scored by magnitude, as Simonyan et al. and SmoothGrad show them (the
    # abs reductions are non-negative already; a signed ``reduce="sum"`` is scored as |sum|)
    scoring = "abs"
    default_reduce: ClassVar[str] = "abs_sum"

    def __init__(self, target_layers=None, reduce: str | None = None) -> None:
        super().__init__(target_layers)
        self.reduce = reduce or self.default_reduce
        if self.reduce not in REDUCTIONS:
            raise SageError(f"reduce must be one of {REDUCTIONS}, got {self.reduce!r}")

    def captum(self, model: nn.Module) -> Any:
        raise NotImplementedError

    def attribute_kwargs(self, images: Tensor) -> dict[str, Any]:
        return {}

    def compute(self, model: nn.Module, images: Tensor, targets: Tensor | None) -> Tensor:
        if targets is None:  # captum needs the targets up front: one extra forward
            with torch.no_grad():
                self.last_logits = model(images)
            targets = self.last_logits.argmax(1)
        inputs = images.detach().clone().requires_grad_(True)
        attr = self.captum(model).attribute(
            inputs, target=targets.to(images.device), **self.attribute_kwargs(images)
        )
        return reduce_channels(attr.detach(), self.reduce)


@register_method("saliency")
class VanillaGradientMethod(GradientMethod):
    """Vanilla gradients (Simonyan et al., ICLR-W 2014): |∂y_c/∂x|, max over channels."""

    default_reduce = "abs_max"

    def captum(self, model: nn.Module) -> Any:
        return Saliency(model)

    def attribute_kwargs(self, images: Tensor) -> dict[str, Any]:
        return {"abs": False}  # reduce_channels takes the absolute value


@register_method("integrated_gradients")
class IntegratedGradientsMethod(GradientMethod):
    """Integrated Gradients (Sundararajan et al., ICML 2017), baseline 0 in normalised input
    space (the dataset mean image); ``n_steps`` Riemann steps, ``internal_batch_size`` inputs
    per forward (None: all steps of the batch at once)."""

    default_reduce = "sum"

    def __init__(
        self,
        target_layers=None,
        reduce=None,
        n_steps: int = 32,
        internal_batch_size: int | None = 64,
    ) -> None:
        super().__init__(target_layers, reduce)
        self.n_steps, self.internal_batch_size = n_steps, internal_batch_size

    def captum(self, model: nn.Module) -> Any:
        return IntegratedGradients(model)

    def attribute_kwargs(self, images: Tensor) -> dict[str, Any]:
        return {"n_steps": self.n_steps, "internal_batch_size": self.internal_batch_size}


@register_method("smoothgrad")
class SmoothGradMethod(GradientMethod):
    """SmoothGrad (Smilkov et al., 2017): vanilla gradients averaged over ``nt_samples`` noisy
    copies (std ``stdev`` in normalised input units), via captum's NoiseTunnel."""

    default_reduce = "abs_max"

    def __init__(
        self,
        target_layers=None,
        reduce=None,
        nt_samples: int = 16,
        stdev: float = 0.15,
        seed: int = 0,
    ) -> None:
        super().__init__(target_layers, reduce)
        self.nt_samples, self.stdev, self.seed = nt_samples, stdev, seed

    def captum(self, model: nn.Module) -> Any:
        return NoiseTunnel(Saliency(model))

    def attribute_kwargs(self, images: Tensor) -> dict[str, Any]:
        torch.manual_seed(self.seed)  # the noise is the method's only randomness
        return {
            "nt_type": "smoothgrad",
            "nt_samples": self.nt_samples,
            "stdevs": self.stdev,
            "abs": False,
        }


@register_method("input_x_gradient")
class InputXGradientMethod(GradientMethod):
    """Input × Gradient (Shrikumar et al., 2016)."""

    default_reduce = "sum"

    def captum(self, model: nn.Module) -> Any:
        return InputXGradient(model)


@register_method("guided_backprop")
class GuidedBackpropMethod(GradientMethod):
    """Guided Backpropagation (Springenberg et al., ICLR-W 2015): only positive gradients pass
    back through ReLUs (captum hooks every ``nn.ReLU`` module, and removes the hooks after)."""

    default_reduce = "abs_max"

    def captum(self, model: nn.Module) -> Any:
        return GuidedBackprop(model)
