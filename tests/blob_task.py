"""A tiny task with a known answer, for metric tests on a *trained* model.

48×48 noise images with one coloured 12×12 square; the colour is the class (4 classes) and
the square lies in the left or the right half. A small CNN learns it in a few seconds, and
the square's mask is the ground-truth evidence.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sage.models import create_backbone

SIZE = 48
SIDE = 12
COLOURS = torch.tensor([[2.0, -1, -1], [-1, 2.0, -1], [-1, -1, 2.0], [2.0, 2.0, -1]])


def blob_batch(
    n: int, seed: int, side: str | None = None, gen: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(images, labels, masks)``; ``side`` ``"left"``/``"right"`` pins the square's half."""
    gen = gen or torch.Generator().manual_seed(seed)
    images = 0.6 * torch.randn(n, 3, SIZE, SIZE, generator=gen)
    labels = torch.randint(0, len(COLOURS), (n,), generator=gen)
    half = SIZE // 2
    pinned = torch.full((n,), side == "left")
    left = torch.rand(n, generator=gen) < 0.5 if side is None else pinned
    x0 = torch.randint(0, half - SIDE + 1, (n,), generator=gen) + (~left).long() * half
    y0 = torch.randint(0, SIZE - SIDE + 1, (n,), generator=gen)
    yy = torch.arange(SIZE)[None, :, None]
    xx = torch.arange(SIZE)[None, None, :]
    masks = (
        (yy >= y0[:, None, None])
        & (yy < y0[:, None, None] + SIDE)
        & (xx >= x0[:, None, None])
        & (xx < x0[:, None, None] + SIDE)
    )
    colour = COLOURS[labels][:, :, None, None].expand(-1, -1, SIZE, SIZE)
    noise = 0.3 * torch.randn(n, 3, SIZE, SIZE, generator=gen)
    images = torch.where(masks[:, None], colour + noise, images)
    return images, labels, masks


def trained_blob_model(steps: int = 150, seed: int = 0) -> nn.Module:
    """small_cnn trained on the blob task (≈ 100 % held-out accuracy), in eval mode."""
    torch.manual_seed(seed)
    model = create_backbone("small_cnn", len(COLOURS))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(seed + 1)
    model.train()
    for _ in range(steps):
        x, y, _ = blob_batch(32, 0, gen=gen)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()
