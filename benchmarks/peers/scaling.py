"""How the GradCAM pipeline's cost per image grows with the batch and the image size.

For every (image size, batch size) cell, on one model: the floor (forward + backward of the
batch), SAGE's batched pipeline (GradCAM + normalisation + fg/bg + 4×4/8×8 tokens) and the
per-image grad-cam loop (+ the same numbers in numpy) on the first ``loop_images`` images of the
batch (its cost per image does not depend on the batch), measured interleaved per cell.
"""

from __future__ import annotations

from typing import Any

import torch
from timing import ratio
from torch import nn

from sage.models import get_backbone_spec

from .common import Plan, synth_batch
from .gradcam_pipeline import scaling_cell


def run(
    name: str,
    model: nn.Module,
    batches: list[int],
    sizes: list[int],
    loop_images: int,
    plan: Plan,
) -> list[dict[str, Any]]:
    spec = get_backbone_spec(name)
    cells = []
    for size in sizes:
        images_all, masks_all = synth_batch(max(batches), size, spec.mean, spec.std, seed=1)
        for batch in batches:
            images = images_all[:batch].to(plan.device)
            masks = masks_all[:batch].to(plan.device)
            with torch.no_grad():
                targets = model(images).argmax(1)
            t = scaling_cell(name, model, images, masks, targets, loop_images, plan)
            cells.append(
                {
                    "model": name,
                    "size": size,
                    "batch": batch,
                    "peer_images": t["peer"].images,
                    "floor": t["floor"].to_dict(),
                    "sage": t["sage"].to_dict(),
                    "peer": t["peer"].to_dict(),
                    "sage_over_floor": ratio(t["sage"], t["floor"]),
                    "sage_over_peer": ratio(t["sage"], t["peer"]),
                    "peer_over_floor": ratio(t["peer"], t["floor"]),
                }
            )
    return cells
