"""Integrated Gradients: through SAGE's method registry vs captum called directly.

SAGE: ``create_method("integrated_gradients", n_steps, internal_batch_size)`` — captum's
``IntegratedGradients`` inside SAGE's interface (eval mode with gradients on, input cloned,
channel sum ``reduce="sum"``, maps as float tensors). Peer: ``IntegratedGradients(model)
.attribute(x, target, n_steps, internal_batch_size)`` and the same channel sum. Same baseline
(0 in normalised space), same Riemann rule (captum's default Gauss-Legendre), same targets:
the same definition, so the maps must agree to float rounding; the ratio is SAGE's wrapper
overhead. IG costs ``n_steps`` forward+backward passes (to the input) per image, so it runs on
the first ``ig_images`` images of the batch.
"""

from __future__ import annotations

import torch
from captum.attr import IntegratedGradients

from sage.saliency.methods import create_method

from .common import Agreement, Row, Setup, floor_step, max_abs_diff

TITLE = "Integrated Gradients (SAGE method registry vs captum directly)"


def compare(setup: Setup, ig_images: int, n_steps: int) -> list[Row]:
    s = setup
    k = min(ig_images, s.batch)
    images, targets, model = s.images[:k], s.targets[:k], s.model
    internal = k * n_steps  # every step of the batch in one forward, on both sides
    method = create_method("integrated_gradients", n_steps=n_steps, internal_batch_size=internal)
    out: dict[str, torch.Tensor] = {}

    def sage() -> None:
        out["sage"] = method(model, images, targets)

    def peer() -> None:
        x = images.detach().clone().requires_grad_(True)
        attr = IntegratedGradients(model).attribute(
            x, target=targets, n_steps=n_steps, internal_batch_size=internal
        )
        # SAGE scores a signed channel sum by magnitude (docs/metrics.md §1): the same here
        out["peer"] = attr.detach().sum(1).abs()

    steps = {
        "floor": (floor_step(model, images, targets), k),
        "sage": (sage, k),
        "peer": (peer, k),
    }
    t = s.plan.time(steps)
    a, b = out["sage"].cpu().numpy(), out["peer"].cpu().numpy()
    scale = float(abs(b).max())
    agreement = Agreement(
        quantity="IG map (per pixel)",
        max_abs_diff=max_abs_diff(a, b),
        n_images=k,
        definitions="same",
        note=f"n_steps {n_steps}, baseline 0, |channel sum|; maps' max |value| {scale:.3g}.",
        extra={"max_abs_map": scale},
    )
    setting = {"batch": k, "size": s.size, "peer_images": k, "n_steps": n_steps}
    return [
        Row(
            s.name,
            "integrated_gradients",
            TITLE,
            t["sage"],
            t["peer"],
            t["floor"],
            agreement,
            setting,
        )
    ]
