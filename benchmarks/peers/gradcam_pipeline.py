"""GradCAM maps + fg/bg masses + tokens: SAGE's batched pipeline vs a per-image grad-cam script.

SAGE: ``create_method("gradcam")`` (grad-cam's GradCAM weights, backward stopped at the target
layer, ReLU on the CAM grid, upsampled in torch) → :func:`sage.saliency.normalize.normalize_batch`
(S̃ = ReLU(S)/ΣReLU(S), min-max, A_fg/A_bg) → :func:`sage.saliency.tokens.tokenize_grids`
(4×4 and 8×8 tokens: mass, mean, max, centroid, fg fraction for whole/fg/bg), on the batch.

Peer: what a researcher writes with pytorch-grad-cam — one ``GradCAM`` object, a loop over the
images calling it per image (grad-cam's ReLU, min-max and OpenCV resize included), then the
same masses and tokens in numpy from its map (:func:`numpy_fg_tokens`).

Agreement: A_fg per image. Both rectify on the CAM grid before resizing (the map SAGE
scores, docs/metrics.md §1); the one remaining difference is grad-cam's min-max shift of a CAM
that is positive everywhere after the ReLU (its minimum subtracted; SAGE's S̃ = ReLU(S)/ΣReLU(S)
has no shift). The gap is reported, with the max |Δ| of the two min-max maps and a check that
the numpy tokens equal SAGE's on the same S̃.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from timing import Timing
from torch import Tensor, nn

from sage.models import get_backbone_spec, resolve_layers
from sage.saliency.methods import create_method
from sage.saliency.methods.base import reshape_for
from sage.saliency.normalize import minmax, normalize_batch
from sage.saliency.tokens import DEFAULT_GRIDS, tokenize_grids

from .common import Agreement, Plan, Row, Setup, floor_step, max_abs_diff

TITLE = "GradCAM maps + fg/bg + tokens (SAGE, batched) vs per-image grad-cam loop + numpy"


def numpy_fg_tokens(
    cam: np.ndarray, mask: np.ndarray, grids=DEFAULT_GRIDS
) -> tuple[float, dict[str, np.ndarray]]:
    """A_fg and tokens of one map, in numpy, as a per-image script computes them.

    ``cam`` (H, W) non-negative, ``mask`` (H, W) bool. Cells as
    :func:`sage.saliency.tokens.cell_bounds` (``floor(i·H/P)``); per region (whole, fg, bg) and
    cell: mass, mean, max, centroid (y, x; the cell centre when the mass is 0), fg fraction.
    Returns ``(a_fg, {"PxQ": (3, P, Q, 6)})``.
    """
    h, w = cam.shape
    total = cam.sum()
    pdf = cam / total if total > 0 else np.zeros_like(cam)
    m = mask.astype(pdf.dtype)
    regions = (pdf, pdf * m, pdf * (1 - m))
    yy = ((np.arange(h) + 0.5) / h)[:, None]
    xx = ((np.arange(w) + 0.5) / w)[None, :]
    tokens = {}
    for p, q in grids:
        rb, cb = (np.arange(p + 1) * h) // p, (np.arange(q + 1) * w) // q
        area = np.diff(rb)[:, None] * np.diff(cb)[None, :]

        def cells(x: np.ndarray, rb=rb, cb=cb) -> np.ndarray:
            return np.add.reduceat(np.add.reduceat(x, rb[:-1], 0), cb[:-1], 1)

        fgfrac = cells(m) / area
        cy = ((rb[:-1] + rb[1:]) / 2 / h)[:, None] * np.ones((1, q))
        cx = ((cb[:-1] + cb[1:]) / 2 / w)[None, :] * np.ones((p, 1))
        out = np.empty((3, p, q, 6))
        for k, r in enumerate(regions):
            mass = cells(r)
            safe = np.where(mass > 0, mass, 1)
            peak = np.maximum.reduceat(np.maximum.reduceat(r, rb[:-1], 0), cb[:-1], 1)
            out[k, ..., 0] = mass
            out[k, ..., 1] = mass / area
            out[k, ..., 2] = peak
            out[k, ..., 3] = np.where(mass > 0, cells(r * yy) / safe, cy)
            out[k, ..., 4] = np.where(mass > 0, cells(r * xx) / safe, cx)
            out[k, ..., 5] = fgfrac
        tokens[f"{p}x{q}"] = out
    return float(pdf[mask].sum()), tokens


def pipeline_steps(
    name: str, model: nn.Module, images: Tensor, masks: Tensor, targets: Tensor, loop_images: int
) -> tuple[dict[str, tuple[Callable[[], object], int]], dict[str, list]]:
    """The floor, SAGE and peer steps on one batch (the peer on the first ``loop_images``).

    Returns the steps for :func:`timing.interleaved` and a dict the peer step fills with its
    per-image A_fg and maps (for the agreement).
    """
    method = create_method("gradcam")

    def sage() -> None:
        maps = method(model, images, targets)
        sb = normalize_batch(maps, masks)
        tokenize_grids(sb.pdf, masks)

    k = min(loop_images, images.shape[0])
    layers = resolve_layers(model, list(get_backbone_spec(name).target_layers))
    reshape = reshape_for(model)
    masks_np = masks[:k].cpu().numpy()
    peer_out: dict[str, list] = {"a_fg": [], "cams": []}

    def peer() -> None:
        peer_out["a_fg"].clear()
        peer_out["cams"].clear()
        with GradCAM(model=model, target_layers=layers, reshape_transform=reshape) as cam:
            for i in range(k):
                target = [ClassifierOutputTarget(int(targets[i]))]
                g = cam(input_tensor=images[i : i + 1], targets=target)[0]
                a_fg, _ = numpy_fg_tokens(g, masks_np[i])
                peer_out["a_fg"].append(a_fg)
                peer_out["cams"].append(g)

    steps = {
        "floor": (floor_step(model, images, targets), images.shape[0]),
        "sage": (sage, images.shape[0]),
        "peer": (peer, k),
    }
    return steps, peer_out


def compare(setup: Setup, loop_images: int) -> list[Row]:
    s = setup
    steps, peer_out = pipeline_steps(s.name, s.model, s.images, s.masks, s.targets, loop_images)
    t = s.plan.time(steps)
    k = t["peer"].images
    sb = normalize_batch(s.maps, s.masks)
    a_fg = sb.a_fg[:k].cpu().numpy()
    sage_scaled = minmax(s.maps.clamp_min(0))[0][:k].cpu().numpy()
    cams = np.stack(peer_out["cams"])
    # the numpy peer code on SAGE's own S̃ must give SAGE's tokens (same definition)
    sage_tokens = tokenize_grids(sb.pdf[:k], s.masks[:k])
    pdf_np, masks_np = sb.pdf[:k].cpu().numpy(), s.masks[:k].cpu().numpy()
    token_gap = 0.0
    for i in range(k):
        _, tok = numpy_fg_tokens(pdf_np[i], masks_np[i])
        for g, arr in tok.items():
            token_gap = max(token_gap, max_abs_diff(arr, sage_tokens[g][i].cpu().numpy()))
    gap = max_abs_diff(a_fg, peer_out["a_fg"])
    agreement = Agreement(
        quantity="A_fg",
        max_abs_diff=gap,
        n_images=k,
        definitions="matched up to the min-max shift",
        note=(
            "both ReLU on the CAM grid, then resize; grad-cam min-max scales (subtracting the "
            "minimum of a CAM positive everywhere), SAGE's S̃ = ReLU(S)/sum has no shift. Min-max "
            f"maps differ by ≤ {max_abs_diff(sage_scaled, cams):.2g}; numpy tokens on SAGE's "
            f"S̃ equal SAGE's to {token_gap:.1g}."
        ),
        extra={"minmax_map": max_abs_diff(sage_scaled, cams), "tokens_same_pdf": token_gap},
    )
    setting = {"batch": s.batch, "size": s.size, "peer_images": k, "grids": ["4x4", "8x8"]}
    return [
        Row(s.name, "gradcam_pipeline", TITLE, t["sage"], t["peer"], t["floor"], agreement, setting)
    ]


def scaling_cell(
    name: str,
    model: nn.Module,
    images: Tensor,
    masks: Tensor,
    targets: Tensor,
    loop_images: int,
    plan: Plan,
) -> dict[str, Timing]:
    """Floor, SAGE pipeline and the peer loop on one (batch, size) cell of the scaling grid."""
    steps, _ = pipeline_steps(name, model, images, masks, targets, loop_images)
    return plan.time(steps)
