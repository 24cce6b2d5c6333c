"""Token models: turn a (B, prefix + P*Q, C) token tensor back into a (B, C, P, Q) map.

The patch grid and the number of prefix tokens (class, distillation, register tokens) are
read from the model, never hard-coded to 14x14, so any input size and ViT variant works. A
model built with ``dynamic_img_size`` (timm_zoo) keeps its pretrained ``grid_size`` while the
token count follows the input (36 tokens, a 6x6 grid, at 96 px with 16-pixel patches): the
grid is then the square one of that many tokens (SAGE's inputs are square).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch import Tensor, nn


def vit_reshape_transform(model: nn.Module) -> Callable[[Tensor], Tensor]:
    """Reshape transform for timm ViT-like models (``patch_embed`` + ``num_prefix_tokens``)."""
    n_prefix = int(getattr(model, "num_prefix_tokens", 1))
    grid = tuple(getattr(model.patch_embed, "grid_size", ()) or ())

    def transform(tokens: Tensor) -> Tensor:
        if tokens.dim() != 3:
            raise ValueError(f"expected (batch, tokens, channels), got {tuple(tokens.shape)}")
        patches = tokens[:, n_prefix:, :]
        n = patches.shape[1]
        if grid and grid[0] * grid[1] == n:
            h, w = grid
        else:  # dynamic image size: assume a square grid, refuse anything else
            h = w = math.isqrt(n)
            if h * w != n:
                raise ValueError(f"cannot infer the patch grid of {n} tokens")
        return patches.reshape(patches.shape[0], h, w, patches.shape[2]).permute(0, 3, 1, 2)

    return transform
