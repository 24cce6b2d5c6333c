"""Saliency tokens: per-cell features of the whole/fg/bg maps (docs/metrics.md §3, SAGE §3).

For a grid P×Q whose cells partition the H×W map (also when H or W is not divisible: row
boundary i is ``floor(i·H/P)``), and for each region map R ∈ {whole: S̃, fg: S̃⊙M,
bg: S̃⊙(1−M)}, cell g gives the token

    t_g = [mass = Σ_g R, mean = mass/|g|, max = max_g R, com_y, com_x, fgfrac = Σ_g M/|g|]

where (com_y, com_x) is the saliency-weighted centroid of the cell in image-normalised
coordinates (pixel (i, j) sits at ((i+0.5)/H, (j+0.5)/W)), or the cell centre when the
cell's mass is 0. Tokens of a batch form a tensor ``(B, 3, P, Q, 6)``, regions and features
ordered as :data:`REGIONS` and :data:`FEATURES`.

Vectorisation: a cell is a product of a row band and a column band, so every cell sum is
``Lᵀ · X · C`` with one-hot band matrices L (H×P) and C (W×Q): two small matmuls for the whole
batch instead of a pixel→cell matrix of HW×PQ. Weighting L's rows by the pixel's y (C's by x)
gives the centroid numerators in the same product. Cell maxima use a padded gather: each band
is padded to the largest band size by repeating its own last row/column (a duplicate does not
change a max), then reshaped and reduced. The band matrices and gather indices are cached per
(H, W, P, Q, dtype, device).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from sage.saliency.normalize import check_mask, working_dtype

__all__ = [
    "FEATURES",
    "REGIONS",
    "cell_bounds",
    "grid_name",
    "tokenize",
    "tokenize_grids",
    "tokens_to_frame",
]

REGIONS: tuple[str, ...] = ("whole", "fg", "bg")
FEATURES: tuple[str, ...] = ("mass", "mean", "max", "com_y", "com_x", "fgfrac")
DEFAULT_GRIDS: tuple[tuple[int, int], ...] = ((4, 4), (8, 8))


def grid_name(grid: tuple[int, int]) -> str:
    """``(4, 8)`` → ``"4x8"``: the key of a grid in dicts and tables."""
    return f"{grid[0]}x{grid[1]}"


def cell_bounds(size: int, n: int) -> Tensor:
    """The ``n + 1`` boundaries ``floor(i·size/n)`` of ``n`` bands partitioning ``[0, size)``.

    Bands differ in length by at most one pixel when ``size`` is not divisible by ``n``.
    ``size < n`` would leave empty bands, so it is a ValueError.
    """
    if n < 1:
        raise ValueError(f"a grid needs at least one cell per side, got {n}")
    if size < n:
        raise ValueError(f"cannot split {size} pixels into {n} non-empty cells (need size >= n)")
    return (torch.arange(n + 1, dtype=torch.long) * size) // n


class _BandPlan(NamedTuple):
    """Precomputed tensors for one axis (rows or columns) of one grid."""

    onehot: Tensor  # (size, 2n): [band one-hot | band one-hot · normalised coordinate]
    gather: Tensor  # (n · longest,) pixel index per padded band slot
    longest: int  # longest band, in pixels
    count: Tensor  # (n,) pixels per band
    centre: Tensor  # (n,) band midpoint / size


def _band_plan(size: int, n: int, dtype: torch.dtype, device: torch.device) -> _BandPlan:
    bounds = cell_bounds(size, n)
    pix = torch.arange(size)
    band = torch.bucketize(pix, bounds[1:-1], right=True)  # band index of every pixel
    onehot = torch.nn.functional.one_hot(band, n).to(torch.float64)
    coord = (pix.to(torch.float64) + 0.5) / size
    count = bounds[1:] - bounds[:-1]
    longest = int(count.max())
    # Pad each band to `longest` slots by repeating its last pixel (harmless under max).
    slot = bounds[:-1, None] + torch.arange(longest)[None, :]
    gather = torch.minimum(slot, bounds[1:, None] - 1).reshape(-1)
    centre = (bounds[:-1] + bounds[1:]).to(torch.float64) / 2 / size
    return _BandPlan(
        onehot=torch.cat([onehot, onehot * coord[:, None]], 1).to(dtype=dtype, device=device),
        gather=gather.to(device),
        longest=longest,
        count=count.to(dtype=dtype, device=device),
        centre=centre.to(dtype=dtype, device=device),
    )


@lru_cache(maxsize=32)
def _plans(
    h: int, w: int, p: int, q: int, dtype: torch.dtype, device: torch.device
) -> tuple[_BandPlan, _BandPlan]:
    # Built outside inference mode so a plan first made under torch.inference_mode() can still
    # be used later with autograd enabled (inference tensors cannot be saved for backward).
    with torch.inference_mode(False):
        return _band_plan(h, p, dtype, device), _band_plan(w, q, dtype, device)


def _parse_grid(grid: tuple[int, int]) -> tuple[int, int]:
    try:
        p, q = (int(v) for v in grid)
    except (TypeError, ValueError):
        raise ValueError(f"a grid is a pair (P, Q) of ints, got {grid!r}") from None
    return p, q


def _region_stack(pdf: Tensor, mask: Tensor) -> Tensor:
    """``(B, 4, H, W)``: the three region maps plus the mask (whose cell sums give fgfrac)."""
    if pdf.dim() != 3:
        raise ValueError(f"pdf must be batched (B, H, W), got shape {tuple(pdf.shape)}")
    x = pdf.to(working_dtype(pdf))
    m = check_mask(mask, x)
    fg = x * m
    return torch.stack([x, fg, x - fg, m], 1)


def _tokenize_stack(stack: Tensor, grid: tuple[int, int]) -> Tensor:
    b, _, h, w = stack.shape
    p, q = _parse_grid(grid)
    rows, cols = _plans(h, w, p, q, stack.dtype, stack.device)

    # Cell sums of [R, R·y] × [R, R·x] in one product; block (0,0) = Σ R, (1,0) = Σ R·y,
    # (0,1) = Σ R·x. Columns first: W → 2Q shrinks the tensor before the second product.
    sums = rows.onehot.T @ (stack @ cols.onehot)  # (B, 4, 2P, 2Q)
    mass = sums[:, :3, :p, :q]
    sum_y = sums[:, :3, p:, :q]
    sum_x = sums[:, :3, :p, q:]
    area = rows.count[:, None] * cols.count[None, :]  # (P, Q)
    fgfrac = (sums[:, 3, :p, :q] / area).unsqueeze(1).expand(b, 3, p, q)

    has_mass = mass > 0
    safe = torch.where(has_mass, mass, torch.ones_like(mass))
    com_y = torch.where(has_mass, sum_y / safe, rows.centre[:, None].expand(p, q))
    com_x = torch.where(has_mass, sum_x / safe, cols.centre[None, :].expand(p, q))

    # Max: gather rows into padded bands and reduce, then the same on columns.
    regions = stack[:, :3]
    band_rows = regions.index_select(2, rows.gather).view(b, 3, p, rows.longest, w).amax(3)
    peak = band_rows.index_select(3, cols.gather).view(b, 3, p, q, cols.longest).amax(4)

    return torch.stack([mass, mass / area, peak, com_y, com_x, fgfrac], -1)


def tokenize(pdf: Tensor, mask: Tensor, grid: tuple[int, int]) -> Tensor:
    """Tokens of a batch of saliency distributions on one P×Q grid.

    Args:
        pdf: rectified saliency ``S̃`` ``(B, H, W)`` (see :func:`sage.saliency.normalize.relu_pdf`);
            an all-zero map gives zero mass/mean/max and cell-centre centroids.
        mask: binary foreground mask ``(B, H, W)`` (bool or 0/1).
        grid: ``(P, Q)`` cells along height and width; ``H >= P`` and ``W >= Q``.

    Returns:
        ``(B, 3, P, Q, 6)`` on ``pdf``'s device, float32 (float64 for float64 input);
        axis 1 follows :data:`REGIONS`, the last axis :data:`FEATURES`.
    """
    return _tokenize_stack(_region_stack(pdf, mask), grid)


def tokenize_grids(
    pdf: Tensor, mask: Tensor, grids: Sequence[tuple[int, int]] = DEFAULT_GRIDS
) -> dict[str, Tensor]:
    """:func:`tokenize` on several grids, keyed ``"PxQ"`` (default ``"4x4"`` and ``"8x8"``)."""
    stack = _region_stack(pdf, mask)  # shared by every grid
    return {grid_name(_parse_grid(g)): _tokenize_stack(stack, g) for g in grids}


_RESERVED = ("image_id", "grid", "region", "cell_row", "cell_col", *FEATURES)


def tokens_to_frame(
    tokens: Tensor | np.ndarray, grid: str, image_ids: Sequence[str], **keys: object
) -> pd.DataFrame:
    """Long token table: one row per (image, region, cell).

    Columns: ``image_id``, then every extra key in the order given (constant columns such as
    ``split``, ``variant``, ``method``, ``model_run``), then ``grid``, ``region``, ``cell_row``,
    ``cell_col`` and the six :data:`FEATURES`. Rows are ordered image, region, row, column, so
    a table's mass column reshapes back to ``(B, 3, P, Q)``.
    """
    arr = tokens.detach().cpu().numpy() if isinstance(tokens, Tensor) else np.asarray(tokens)
    if arr.ndim != 5 or arr.shape[1] != len(REGIONS) or arr.shape[-1] != len(FEATURES):
        raise ValueError(
            f"tokens must have shape (B, {len(REGIONS)}, P, Q, {len(FEATURES)}), got {arr.shape}"
        )
    b, r, p, q, f = arr.shape
    ids = list(image_ids)
    if len(ids) != b:
        raise ValueError(f"{len(ids)} image_ids for a batch of {b} token arrays")
    clash = sorted(set(keys) & set(_RESERVED))
    if clash:
        raise ValueError(f"extra key(s) {clash} would overwrite token table columns")

    per_image = r * p * q
    flat = arr.reshape(b * per_image, f)
    columns: dict[str, object] = {"image_id": np.repeat(np.asarray(ids, dtype=object), per_image)}
    n = b * per_image
    for name, value in keys.items():
        if np.ndim(value) != 0:
            raise ValueError(f"extra key {name!r} must be a scalar constant, got {value!r}")
        columns[name] = np.full(n, value)  # scalar → constant column of its natural dtype
    columns["grid"] = np.full(n, grid, dtype=object)
    columns["region"] = np.tile(np.repeat(np.asarray(REGIONS, dtype=object), p * q), b)
    columns["cell_row"] = np.tile(np.repeat(np.arange(p), q), b * r)
    columns["cell_col"] = np.tile(np.arange(q), b * r * p)
    for k, name in enumerate(FEATURES):
        columns[name] = flat[:, k]
    return pd.DataFrame(columns)
