"""CAM methods from pytorch-grad-cam, returning raw maps.

grad-cam's ``BaseCAM`` runs the forward, picks targets, back-propagates and computes each
layer's map with the method's own ``get_cam_weights``/``get_cam_image``; its tail then ReLUs,
min-max scales and resizes every map with OpenCV, one image at a time, on the CPU. SAGE
wants the tail on the model's device and the raw signed map available as an option, so
:func:`raw_tail` overrides only that tail (``compute_cam_per_layer`` +
``aggregate_multi_layers``): bilinear upsampling of the whole batch in torch, mean over
layers. With the CAM family's default ``scoring="rectified"`` the tail ReLUs each layer's map
*before* upsampling, where grad-cam does (ReLU and bilinear upsampling do not commute: ReLU
after upsampling moves the zero crossings, by up to 0.6 % of the map's range on a 6×6 layer),
and scales each layer to [0, 1] before averaging several layers, as grad-cam does; so the
scored map equals grad-cam's up to the final min-max scaling every metric applies itself.
With ``scoring="raw"`` nothing is rectified or scaled. Everything method-specific stays
grad-cam's.
"""

from __future__ import annotations

import inspect
from functools import cache
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from pytorch_grad_cam import (
    KPCA_CAM,
    AblationCAM,
    AblationLayerVit,
    EigenCAM,
    EigenGradCAM,
    FullGrad,
    GradCAM,
    GradCAMElementWise,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    ShapleyCAM,
    XGradCAM,
)
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, FinerWeightedTarget
from torch import Tensor, nn

from ...errors import SageError
from ..normalize import minmax
from .base import SaliencyMethod, layers_for, register_method, reshape_for


@cache
def raw_tail(base: type[BaseCAM]) -> type[BaseCAM]:
    """``base`` with grad-cam's normalising tail replaced by a raw, batched torch one."""

    def compute_cam_per_layer(self, input_tensor, targets, eigen_smooth):
        acts = self.activations_and_grads.activations
        grads = self.activations_and_grads.gradients
        if self.detach:  # grad-cam's weight functions expect numpy (zero-copy on CPU)
            acts = [a.cpu().data.numpy() for a in acts]
            grads = [g.cpu().data.numpy() for g in grads]
        size = tuple(input_tensor.shape[-2:])
        cams = []
        for i, layer in enumerate(self.target_layers):
            a = acts[i] if i < len(acts) else None
            g = grads[i] if i < len(grads) else None
            cam = self.get_cam_image(input_tensor, layer, targets, a, g, eigen_smooth)
            cam = torch.as_tensor(np.asarray(cam, dtype=np.float32)).to(input_tensor.device)
            if self.sage_rectify:
                cam = cam.clamp_min(0)
            cams.append(
                F.interpolate(cam[:, None], size=size, mode="bilinear", align_corners=False)
            )
        return cams

    def aggregate_multi_layers(self, cams):
        if self.sage_rectify and len(cams) > 1:  # layers on one [0, 1] scale, as grad-cam
            cams = [minmax(c[:, 0])[0][:, None].to(c.dtype) for c in cams]
        return torch.cat(cams, dim=1).mean(dim=1)

    def forward(self, input_tensor, targets, eigen_smooth=False):
        # grad-cam back-propagates to every parameter (loss.backward()), but a CAM only needs
        # the gradient at its target layers: torch.autograd.grad stops there, so the layers
        # below are never back-propagated and no parameter gradient is computed. Methods
        # with other needs (input gradients, Hessians, no gradients) keep grad-cam's path.
        if self.compute_input_gradient or not self.detach or not self.uses_gradients:
            return base.forward(self, input_tensor, targets, eigen_smooth)
        live: list[Tensor] = []
        handles = [
            layer.register_forward_hook(lambda m, i, o: live.append(o))
            for layer in self.target_layers
        ]
        try:
            self.outputs = outputs = self.activations_and_grads(input_tensor)
        finally:
            for handle in handles:
                handle.remove()
        if targets is None:
            targets = class_targets(outputs.argmax(dim=-1))
        loss = sum(target(output) for target, output in zip(targets, outputs, strict=True))
        torch.autograd.grad(loss, live)  # fires grad-cam's gradient hooks on the way
        cams = self.compute_cam_per_layer(input_tensor, targets, eigen_smooth)
        return self.aggregate_multi_layers(cams)

    return type(
        f"Raw{base.__name__}",
        (base,),
        {
            "compute_cam_per_layer": compute_cam_per_layer,
            "aggregate_multi_layers": aggregate_multi_layers,
            "forward": forward,
            "sage_rectify": False,  # set per instance from the method's scoring rule
        },
    )


def release(cam: BaseCAM) -> None:
    """Remove the hooks. The captured tensors are dropped first: grad-cam's own clean-up
    detaches them in place, which fails on the gradient views of token models."""
    cam.activations_and_grads.activations = []
    cam.activations_and_grads.gradients = []
    cam.activations_and_grads.release()


def class_targets(targets: Tensor | None) -> list[ClassifierOutputTarget] | None:
    return None if targets is None else [ClassifierOutputTarget(int(t)) for t in targets]


class CAMMethod(SaliencyMethod):
    """A grad-cam method; subclasses name the grad-cam class and their extra options."""

    family = "cam"
    cam_class: ClassVar[type[BaseCAM]]
    raw: ClassVar[bool] = True  # False: the method normalises intrinsically (FullGrad)

    def __init__(self, target_layers=None, **cam_kwargs: Any) -> None:
        super().__init__(target_layers)
        # grad-cam would raise a TypeError only at the first batch; a mistyped
        # cam.<m>.<option> is a config error, named now
        accepted = [
            p
            for p in inspect.signature(self.cam_class).parameters
            if p not in ("model", "target_layers", "reshape_transform")
        ]
        unknown = sorted(set(cam_kwargs) - set(accepted))
        if unknown:
            raise SageError(
                f"saliency method {self.name!r}: unknown option(s) {unknown}; its options: "
                f"{', '.join(['target_layers', *accepted, 'scoring'])}"
            )
        self.cam_kwargs = cam_kwargs

    def build(self, model: nn.Module) -> BaseCAM:
        cls = raw_tail(self.cam_class) if self.raw else self.cam_class
        cam = cls(
            model=model,
            target_layers=layers_for(model, self.target_layers),
            reshape_transform=reshape_for(model),
            **self.cam_kwargs,
        )
        cam.sage_rectify = self.scoring == "rectified"
        return cam

    def compute(self, model: nn.Module, images: Tensor, targets: Tensor | None) -> Tensor:
        cam = self.build(model)
        try:
            maps = cam(input_tensor=images, targets=class_targets(targets))
            self.last_logits = cam.outputs.detach()
        finally:
            release(cam)  # hooks never outlive the call
        return torch.as_tensor(maps, device=images.device)


@register_method("gradcam")
class GradCAMMethod(CAMMethod):
    """Grad-CAM (Selvaraju et al., ICCV 2017): channel weights = spatially averaged gradients."""

    cam_class = GradCAM


@register_method("hirescam")
class HiResCAMMethod(CAMMethod):
    """HiResCAM (Draelos & Carin, 2020): gradients ⊙ activations, summed over channels."""

    cam_class = HiResCAM


@register_method("gradcam_elementwise")
class GradCAMElementWiseMethod(CAMMethod):
    """Grad-CAM element-wise (grad-cam): ReLU(gradients ⊙ activations) summed over channels."""

    cam_class = GradCAMElementWise


@register_method("gradcam_plusplus")
class GradCAMPlusPlusMethod(CAMMethod):
    """Grad-CAM++ (Chattopadhay et al., WACV 2018): higher-order gradient channel weights."""

    cam_class = GradCAMPlusPlus


@register_method("xgradcam")
class XGradCAMMethod(CAMMethod):
    """XGrad-CAM (Fu et al., BMVC 2020): activation-normalised gradient weights."""

    cam_class = XGradCAM


@register_method("layercam")
class LayerCAMMethod(CAMMethod):
    """LayerCAM (Jiang et al., TIP 2021): positive gradients ⊙ activations, per location."""

    cam_class = LayerCAM


@register_method("eigencam")
class EigenCAMMethod(CAMMethod):
    """Eigen-CAM (Muhammad & Yeasin, IJCNN 2020): first principal component of activations."""

    cam_class = EigenCAM


@register_method("eigengradcam")
class EigenGradCAMMethod(CAMMethod):
    """Eigen-Grad-CAM (grad-cam): first principal component of gradients ⊙ activations."""

    cam_class = EigenGradCAM


@register_method("kpca_cam")
class KPCACAMMethod(CAMMethod):
    """KPCA-CAM (Karmani et al., 2024): kernel-PCA component of the activations."""

    cam_class = KPCA_CAM

    def __init__(
        self, target_layers=None, kernel: str = "sigmoid", gamma: float | None = None
    ) -> None:
        super().__init__(target_layers, kernel=kernel, gamma=gamma)


class _TokenSafeShapleyCAM(ShapleyCAM):
    """grad-cam's ShapleyCAM reshapes token activations for its weights but not for the
    weighted sum (so it fails on ViTs); this reshapes both."""

    def get_cam_image(
        self, input_tensor, target_layer, targets, activations, grads, eigen_smooth=False
    ):
        weights = self.get_cam_weights(input_tensor, target_layer, targets, activations, grads)
        reshape = self.activations_and_grads.reshape_transform
        if reshape is not None:
            activations = reshape(activations)
        return (weights[:, :, None, None] * activations.detach().cpu().numpy()).sum(axis=1)


@register_method("shapleycam")
class ShapleyCAMMethod(CAMMethod):
    """ShapleyCAM (Cai et al., 2025): gradient minus half the Hessian-vector product.

    The Hessian-vector product needs second derivatives, which PyTorch's fused attention
    kernel lacks, so timm's fused attention is switched off for the call and restored.
    """

    cam_class = _TokenSafeShapleyCAM

    def compute(self, model: nn.Module, images: Tensor, targets: Tensor | None) -> Tensor:
        fused = [m for m in model.modules() if getattr(m, "fused_attn", False)]
        for m in fused:
            m.fused_attn = False
        try:
            return super().compute(model, images, targets)
        finally:
            for m in fused:
                m.fused_attn = True


@register_method("scorecam")
class ScoreCAMMethod(CAMMethod):
    """Score-CAM (Wang et al., CVPRW 2020): channel weights = score of the input masked by it.

    ``batch_size``: masked inputs per forward (one forward per batch of channels per image).
    """

    cam_class = ScoreCAM

    def __init__(self, target_layers=None, batch_size: int = 64) -> None:
        super().__init__(target_layers)
        self.batch_size = batch_size

    def build(self, model: nn.Module) -> BaseCAM:
        cam = super().build(model)
        cam.batch_size = self.batch_size  # grad-cam reads this attribute when present
        return cam


@register_method("ablationcam")
class AblationCAMMethod(CAMMethod):
    """Ablation-CAM (Desai & Ramaswamy, WACV 2020): score drop when a channel is ablated.

    ``batch_size``: ablated copies per forward; ``ratio_channels_to_ablate`` < 1 skips the
    channels with the lowest activation (grad-cam's speed-up).
    """

    cam_class = AblationCAM

    def __init__(
        self, target_layers=None, batch_size: int = 64, ratio_channels_to_ablate: float = 1.0
    ) -> None:
        super().__init__(
            target_layers, batch_size=batch_size, ratio_channels_to_ablate=ratio_channels_to_ablate
        )

    def build(self, model: nn.Module) -> BaseCAM:
        if reshape_for(model) is not None:  # token models ablate tokens, not channels maps
            self.cam_kwargs["ablation_layer"] = AblationLayerVit()
        return super().build(model)


@register_method("fullgrad")
class FullGradMethod(CAMMethod):
    """FullGrad (Srinivas & Fleuret, NeurIPS 2019): input-gradient plus all bias-gradients.

    FullGrad sums per-layer bias-gradient maps that it must rescale to be comparable, so its
    output is grad-cam's (ReLU'd, min-max scaled to [0, 1]); it ignores target layers.
    """

    cam_class = FullGrad
    raw = False

    def build(self, model: nn.Module) -> BaseCAM:
        if reshape_for(model) is not None:
            raise SageError("fullgrad needs convolution biases: it does not apply to token models")
        return FullGrad(model=model, target_layers=[])


@register_method("finercam")
class FinerCAMMethod(CAMMethod):
    """Finer-CAM (Zhang et al., CVPR 2025): explains the target logit *minus* its most similar
    classes (weighted by ``alpha``), so the map shows what separates look-alike classes — for
    drivers, e.g. texting left vs right. Base method Grad-CAM.
    """

    cam_class = GradCAM

    def __init__(self, target_layers=None, alpha: float = 1.0, n_comparisons: int = 3) -> None:
        super().__init__(target_layers)
        self.alpha, self.n_comparisons = alpha, n_comparisons

    def compute(self, model: nn.Module, images: Tensor, targets: Tensor | None) -> Tensor:
        cam = self.build(model)
        try:
            logits = cam.activations_and_grads(images)
            main = logits.argmax(1) if targets is None else targets.to(logits.device)
            # the most similar classes = the smallest |logit - target logit|, target excluded
            gap = (logits - logits.gather(1, main[:, None])).abs().detach()
            order = gap.argsort(dim=1)[:, 1 : 1 + self.n_comparisons].tolist()
            finer = [
                FinerWeightedTarget(int(m), o, self.alpha) for m, o in zip(main, order, strict=True)
            ]
            model.zero_grad()
            sum(t(o) for t, o in zip(finer, logits, strict=True)).backward()
            maps = cam.aggregate_multi_layers(cam.compute_cam_per_layer(images, finer, False))
            self.last_logits = logits.detach()
        finally:
            release(cam)
        return maps


@register_method("refinecam")
class RefineCAMMethod(CAMMethod):
    """RefineCAM ("How to Evaluate and Refine your CAM", 2026): the product over several layers
    (the backbone's ``stage_layers`` by default) of each layer's base CAM (Grad-CAM++),
    rectified and scaled by its maximum — deep layers localise coarsely, shallow ones finely,
    the product keeps what all agree on. grad-cam's ``RefineCAM`` computes the same product of
    its [0, 1]-scaled base maps; here the base maps are raw so the scaling is explicit.
    """

    cam_class = GradCAMPlusPlus

    def compute(self, model: nn.Module, images: Tensor, targets: Tensor | None) -> Tensor:
        layers = layers_for(model, self.target_layers, multi=True)
        reshape = reshape_for(model)
        product = None
        for layer in layers:  # one base CAM per layer, as grad-cam's RefineCAM
            cam = raw_tail(self.cam_class)(
                model=model, target_layers=[layer], reshape_transform=reshape
            )
            cam.sage_rectify = True  # each base map rectified at its layer, as grad-cam's
            try:
                raw = torch.as_tensor(cam(input_tensor=images, targets=class_targets(targets)))
                self.last_logits = cam.outputs.detach()
            finally:
                release(cam)
            rect = raw.clamp(min=0)
            rect = rect / rect.amax(dim=(1, 2), keepdim=True).clamp(min=1e-8)
            product = rect if product is None else product * rect
        return product
