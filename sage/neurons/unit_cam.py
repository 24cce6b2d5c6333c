"""Grad-CAM with respect to penultimate units, many units per forward, and its IoU with regions.

Grad-CAM for unit ``u`` (RIVAL10 §6) is Grad-CAM with the pooled feature ``f_u`` as the target
instead of a class logit: at each target layer with activations ``A`` (B, C, h, w),
``w_c = mean_hw ∂f_u/∂A_c`` and ``S_u = Σ_c w_c A_c``, upsampled bilinearly to the input and
averaged over target layers, raw (no ReLU), exactly as :mod:`sage.saliency.methods.cam`'s
``gradcam`` computes it for a class. When the head is the identity on a unit, the two agree
(tests check this against ``create_method("gradcam")``).

Batching: :meth:`UnitGradCAM.forward` runs one forward with the target-layer activations kept
in the graph; :meth:`UnitForward.cams` then back-propagates a ``(J, B, U)`` stack of one-hot
``grad_outputs`` in one vectorised call (``torch.autograd.grad(is_grads_batched=True)``), so
``J`` maps per image cost one forward and one batched backward down to the target layer
only. Each image may ask for different units (row ``j`` of image ``b`` is unit
``units[b, j]``; ``-1`` pads). Rows are chunked so the gradient and the upsampled maps stay
under ``max_elements`` floats each.

Binarisation follows RIVAL10's "max-normalized threshold": ``b = ReLU(S) ≥ τ·max ReLU(S)``
(τ = 0.5). A map with no positive value binarises to nothing (IoU 0 with a non-empty region:
the unit does not point there); a non-finite map gives NaN (a recorded skip).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..saliency.methods.base import layers_for, reshape_for, saliency_mode
from .activations import FeatureTap

DEFAULT_MAX_ELEMENTS = 1 << 24  # floats per gradient / upsampled chunk (64 MB in float32)


def max_binarise(maps: Tensor, tau: float = 0.5) -> tuple[Tensor, Tensor]:
    """``(b, finite)``: ``b = ReLU(S) ≥ τ·max ReLU(S)`` per map over the last two dims, all
    False for a map with no positive value; ``finite`` is False for a map holding NaN/±inf."""
    if not 0 < tau <= 1:
        raise ValueError(f"tau must be in (0, 1], got {tau!r}")
    flat = maps.flatten(-2)
    finite = torch.isfinite(flat.sum(-1))  # one reduction instead of an elementwise test
    peak = flat.amax(-1)
    # with τ·max > 0, S ≥ τ·max already implies S > 0: no ReLU pass needed
    keep = finite & (peak > 0)
    b = (maps >= (tau * peak)[..., None, None]) & keep[..., None, None]
    return b, finite


def unit_iou(maps: Tensor, masks: Tensor, tau: float = 0.5) -> Tensor:
    """IoU ``|b ∧ m| / |b ∨ m|`` of every map with every region: maps ``(B, J, H, W)``,
    masks ``(B, R, H, W)`` bool -> ``(B, J, R)``; 0 when the union is empty, NaN for a
    non-finite map. Intersections are one batched matmul, not a (B, J, R, H, W) tensor."""
    b, finite = max_binarise(maps, tau)
    bf = b.flatten(2).float()
    mf = masks.flatten(2).float()
    inter = bf @ mf.transpose(1, 2)
    union = bf.sum(2)[:, :, None] + mf.sum(2)[:, None, :] - inter
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
    return torch.where(finite[:, :, None], iou, torch.full_like(iou, float("nan")))


def paired_iou(maps: Tensor, masks: Tensor, tau: float = 0.5) -> Tensor:
    """IoU of map ``j`` with mask ``j`` only: both ``(B, J, H, W)`` -> ``(B, J)``."""
    b, finite = max_binarise(maps, tau)
    inter = (b & masks).flatten(2).sum(2).float()
    union = (b | masks).flatten(2).sum(2).float()
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.zeros_like(inter))
    return torch.where(finite, iou, torch.full_like(iou, float("nan")))


class UnitForward:
    """One forward with target activations kept; :meth:`cams` back-propagates unit targets."""

    def __init__(
        self,
        features: Tensor,
        activations: list[Tensor],
        logits: Tensor,
        reshape,
        size: tuple[int, int],
        max_elements: int,
    ) -> None:
        self._features = features
        self._activations = activations
        self.features = features.detach()  # (B, U) unit activations of this batch
        self.logits = logits.detach()
        self._reshape = reshape
        self._size = size
        self._max_elements = max_elements
        self._batched = True

    @property
    def rows_per_chunk(self) -> int:
        """Units per image back-propagated at once (memory cap over grads and upsampled maps)."""
        b = self.features.shape[0]
        per_row = max(max(a[0].numel() for a in self._activations), self._size[0] * self._size[1])
        return max(1, self._max_elements // max(1, b * per_row))

    def _grads(self, grad_outputs: Tensor) -> tuple[Tensor | None, ...]:
        inputs = self._activations
        if self._batched:
            try:
                return torch.autograd.grad(
                    self._features,
                    inputs,
                    grad_outputs=grad_outputs,
                    is_grads_batched=True,
                    retain_graph=True,
                    allow_unused=True,
                )
            except RuntimeError as err:  # an op without a batching rule: one row at a time
                warnings.warn(
                    f"batched unit gradients failed ({err}); falling back to one backward per row",
                    stacklevel=3,
                )
                self._batched = False
        rows = [
            torch.autograd.grad(
                self._features, inputs, grad_outputs=g, retain_graph=True, allow_unused=True
            )
            for g in grad_outputs
        ]
        return tuple(
            None if rows[0][i] is None else torch.stack([r[i] for r in rows])
            for i in range(len(inputs))
        )

    def _grid(self, x: Tensor) -> Tensor:
        """Token activations to a (N, C, h, w) grid; CNN maps pass through."""
        return self._reshape(x) if self._reshape is not None else x

    def cams(self, units: Tensor) -> Tensor:
        """Raw unit Grad-CAMs ``(B, J, H, W)`` for ``units`` ``(B, J)`` (``-1``: zero map).

        One batched backward; call :meth:`chunks` for more rows than fit in memory.
        """
        b, n_units = self.features.shape
        if units.dim() != 2 or units.shape[0] != b:
            raise ValueError(f"units must be ({b}, J), got {tuple(units.shape)}")
        if units.numel() and int(units.max()) >= n_units:
            raise ValueError(f"unit {int(units.max())} out of range: the layer has {n_units}")
        j = units.shape[1]
        units = units.to(self._features.device)
        valid = units >= 0
        go = torch.zeros(j, b, n_units, dtype=self._features.dtype, device=units.device)
        go.scatter_(2, units.clamp(min=0).T[..., None], valid.T[..., None].to(go.dtype))
        total = None
        for act, grad in zip(self._activations, self._grads(go), strict=True):
            a = self._grid(act).detach()  # (B, C, h, w)
            if grad is None:  # the features do not depend on this layer: zero maps
                cam = a.new_zeros(b, j, *a.shape[-2:])
            else:
                g = self._grid(grad.flatten(0, 1)).unflatten(0, (j, b))  # (J, B, C, h, w)
                weights = g.mean(dim=(-2, -1))  # Grad-CAM channel weights (J, B, C)
                cam = torch.einsum("jbc,bchw->bjhw", weights, a)
            cam = F.interpolate(cam, size=self._size, mode="bilinear", align_corners=False)
            total = cam if total is None else total + cam
        return (total / len(self._activations)) * valid[:, :, None, None]

    def chunks(self, units: Tensor) -> Iterator[tuple[slice, Tensor]]:
        """``(columns, cams)`` over column chunks of ``units`` that fit ``max_elements``."""
        step = self.rows_per_chunk
        for start in range(0, units.shape[1], step):
            cols = slice(start, min(start + step, units.shape[1]))
            yield cols, self.cams(units[:, cols])


@dataclass
class UnitGradCAM:
    """Unit-target Grad-CAM for ``model``.

    ``target_layers``: dotted paths (None: the backbone's default CAM layer);
    ``feature_layer``: see :class:`sage.neurons.activations.FeatureTap`.
    """

    model: nn.Module
    target_layers: Sequence[str] | None = None
    feature_layer: str | None = None
    max_elements: int = DEFAULT_MAX_ELEMENTS

    def __post_init__(self) -> None:
        self.layers = layers_for(self.model, self.target_layers)
        self.reshape = reshape_for(self.model)
        self.tap = FeatureTap(self.model, self.feature_layer)

    @contextmanager
    def forward(self, images: Tensor) -> Iterator[UnitForward]:
        """Run the forward (eval mode, gradients on); the graph lives until the block ends."""
        kept: list[list[Tensor]] = [[] for _ in self.layers]
        with ExitStack() as stack:
            stack.enter_context(saliency_mode(self.model))
            stack.enter_context(self.tap.attach())
            for store, layer in zip(kept, self.layers, strict=True):
                handle = layer.register_forward_hook(lambda m, i, o, store=store: store.append(o))
                stack.callback(handle.remove)
            logits = self.model(images)
            features = self.tap.take()
            if any(not store for store in kept):
                raise RuntimeError("a target layer was not run by the forward")
            yield UnitForward(
                features,
                [store[-1] for store in kept],
                logits,
                self.reshape,
                tuple(images.shape[-2:]),
                self.max_elements,
            )


def unit_gradcam(
    model: nn.Module,
    images: Tensor,
    units: Tensor | Sequence[int],
    target_layers: Sequence[str] | None = None,
    feature_layer: str | None = None,
) -> Tensor:
    """Raw Grad-CAM of each of ``units`` on each image: ``(B, J, H, W)`` (small inputs;
    large runs use :class:`UnitGradCAM` and :meth:`UnitForward.chunks`)."""
    units = torch.as_tensor(units, dtype=torch.long)
    if units.dim() == 1:
        units = units.expand(images.shape[0], -1)
    engine = UnitGradCAM(model, target_layers, feature_layer)
    with engine.forward(images) as fwd:
        return torch.cat([cams.detach() for _, cams in fwd.chunks(units)], dim=1)
