"""Token analyses: fg/bg ratio, patch KL and Spearman of cell masses (docs/metrics.md §3, SAGE §3).

- :func:`fg_bg_ratio`: how many times more saliency mass lies on the foreground than on the
  background.
- :func:`patch_kl`: ``KL(t_mass^a ‖ t_mass^b)`` between the cell-mass distributions of two
  views of the same image (two variants, methods or models), ε-smoothed so empty cells do not
  make it infinite.
- :func:`spearman`: rank correlation of cell masses, ties given their average rank (as
  ``scipy.stats.spearmanr``).
- :func:`compare_tables`: both of the above on two long token tables
  (:func:`sage.saliency.tokens.tokens_to_frame`), joined on image, grid and region.

Tensor functions are vectorised over the batch and return ``(B,)`` on the input's device.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from sage.saliency.normalize import working_dtype
from sage.saliency.tokens import FEATURES, REGIONS

__all__ = ["compare_tables", "fg_bg_ratio", "patch_kl", "spearman"]


def fg_bg_ratio(tokens: Tensor, eps: float = 1e-6) -> Tensor:
    """Foreground-to-background saliency mass ratio per image.

    ``Σ_g mass_fg / max(Σ_g mass_bg, eps)`` from tokens ``(B, 3, P, Q, 6)``. A map with all its
    mass on the foreground therefore gives ``1/eps`` (1e6 by default), a large but finite
    number, never +inf. A map with no mass at all (flagged all-zero map) has no ratio and gives
    NaN rather than a misleading 0 ("all on the background"); filter on the ``zero`` flag or
    use ``nan``-aware aggregation.
    """
    if tokens.dim() != 5 or tokens.shape[1] != len(REGIONS):
        raise ValueError(f"tokens must have shape (B, 3, P, Q, 6), got {tuple(tokens.shape)}")
    mass = tokens[..., FEATURES.index("mass")].flatten(2).sum(2)  # (B, 3)
    fg = mass[:, REGIONS.index("fg")]
    bg = mass[:, REGIONS.index("bg")]
    ratio = fg / bg.clamp_min(eps)
    return torch.where((fg + bg) > 0, ratio, torch.full_like(ratio, float("nan")))


def _flat_pair(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    if a.shape != b.shape:
        raise ValueError(f"cell masses differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() < 2:
        raise ValueError(f"cell masses must be batched (B, P, Q) or (B, N), got {tuple(a.shape)}")
    dtype = torch.promote_types(working_dtype(a), working_dtype(b))
    return a.flatten(1).to(dtype), b.flatten(1).to(device=a.device, dtype=dtype)


def patch_kl(mass_a: Tensor, mass_b: Tensor, eps: float = 1e-6) -> Tensor:
    """``KL(p ‖ q)`` between ε-smoothed cell-mass distributions, per image.

    ``p = (a + ε) / Σ(a + ε)`` and likewise ``q`` from ``b``; masses ``(B, P, Q)`` (or
    ``(B, N)``) must be non-negative. The smoothing keeps KL finite when ``b`` has empty
    cells. With ``eps = 0`` empty cells of ``a`` contribute 0 and a cell empty in ``b`` but not
    in ``a`` gives +inf. NaN where either side has no mass at all (an all-zero map carries no
    distribution to compare: two of them are not "in perfect agreement").
    """
    a, b = _flat_pair(mass_a, mass_b)
    empty = ~(a.sum(1) > 0) | ~(b.sum(1) > 0)
    p = a + eps
    p = p / p.sum(1, keepdim=True)
    q = b + eps
    q = q / q.sum(1, keepdim=True)
    # 0·log(0/q) = 0 by convention; only matters for eps = 0 (a q of 0 under p > 0 gives inf).
    terms = p * (p.log() - q.log())
    kl = torch.where(p > 0, terms, torch.zeros_like(terms)).sum(1)
    return torch.where(empty, torch.full_like(kl, float("nan")), kl)


def _average_ranks(x: Tensor) -> Tensor:
    """1-based ranks along dim 1, ties sharing their average rank (vectorised over rows)."""
    n = x.shape[1]
    values, order = x.sort(1)
    # Tie groups in sorted order: a new group starts wherever the value changes.
    starts = torch.ones_like(values, dtype=torch.bool)
    starts[:, 1:] = values[:, 1:] != values[:, :-1]
    group = starts.long().cumsum(1) - 1
    position = torch.arange(1, n + 1, dtype=x.dtype, device=x.device).expand_as(values)
    mean_rank = torch.zeros_like(values).scatter_reduce(
        1, group, position, reduce="mean", include_self=False
    )
    return torch.empty_like(values).scatter_(1, order, mean_rank.gather(1, group))


def spearman(a: Tensor, b: Tensor) -> Tensor:
    """Spearman rank correlation of cell masses per image.

    Pearson correlation of the average ranks (ties share their mean rank, like
    ``scipy.stats.spearmanr``) of the flattened ``(B, P, Q)`` or ``(B, N)`` inputs. NaN where
    either side is constant (e.g. an all-zero map, whose ranks do not vary, so the correlation
    is undefined — scipy also gives NaN) or holds a NaN.
    """
    x, y = _flat_pair(a, b)
    # Ranks are exact multiples of 1/2, so compute the correlation in float64 for accuracy.
    rx = _average_ranks(x).to(torch.float64)
    ry = _average_ranks(y).to(torch.float64)
    rx = rx - rx.mean(1, keepdim=True)
    ry = ry - ry.mean(1, keepdim=True)
    vx = (rx * rx).sum(1)
    vy = (ry * ry).sum(1)
    defined = (vx > 0) & (vy > 0) & ~(x.isnan().any(1) | y.isnan().any(1))
    rho = (rx * ry).sum(1) / torch.where(defined, vx * vy, torch.ones_like(vx)).sqrt()
    rho = torch.where(defined, rho.clamp(-1, 1), torch.full_like(rho, float("nan")))
    return rho.to(x.dtype)


def compare_tables(
    a: pd.DataFrame,
    b: pd.DataFrame,
    on: Sequence[str] = ("image_id", "grid", "region"),
    column: str = "mass",
    eps: float = 1e-6,
) -> pd.DataFrame:
    """Patch KL and Spearman of ``column`` between two long token tables.

    ``a`` and ``b`` are tables from :func:`sage.saliency.tokens.tokens_to_frame` for the same
    images under two conditions (variants, methods, models). Rows are matched on ``on`` plus
    the cell (``cell_row``, ``cell_col``); every ``on`` group must then hold a whole grid (a
    group with fewer matched cells in one table than the other is a ValueError, since the
    comparison would silently cover part of the image). Groups are compared all at once with
    :func:`patch_kl` (``KL(a ‖ b)``) and :func:`spearman`, batched per group size (one batch
    per grid).

    Returns:
        one row per ``on`` group present in both tables: the ``on`` columns, ``n_cells``,
        ``patch_kl`` and ``spearman``, sorted by ``on``.
    """
    keys = [*on, "cell_row", "cell_col"]
    for name, table in (("a", a), ("b", b)):
        missing = [k for k in [*keys, column] if k not in table.columns]
        if missing:
            raise ValueError(f"token table {name} lacks column(s) {missing}")
        if table.duplicated(keys).any():
            raise ValueError(
                f"token table {name} has several rows per {keys}; add the column that tells "
                "them apart (e.g. method or variant) to `on` or filter the table first"
            )
    merged = a[[*keys, column]].merge(
        b[[*keys, column]], on=keys, how="inner", suffixes=("_a", "_b"), validate="1:1"
    )
    group = list(on)
    merged = merged.sort_values(keys, kind="stable", ignore_index=True)
    sizes = merged.groupby(group, sort=False, dropna=False).size()
    for name, table in (("a", a), ("b", b)):
        full = table.groupby(group, dropna=False).size().reindex(sizes.index)
        short = sizes[sizes.to_numpy() != full.to_numpy()]
        if len(short):
            first = short.index[0] if isinstance(short.index[0], tuple) else (short.index[0],)
            raise ValueError(
                f"{len(short)} group(s) of table {name} have cells the other table lacks, "
                f"e.g. {dict(zip(group, first, strict=True))}; compare tables of the same grids"
            )

    # Rows of a group are contiguous after sorting; batch all groups of one size together.
    group_size = np.repeat(sizes.to_numpy(), sizes.to_numpy())
    va = merged[f"{column}_a"].to_numpy(dtype=np.float64)
    vb = merged[f"{column}_b"].to_numpy(dtype=np.float64)
    out = []
    for n in np.unique(group_size):
        sel = group_size == n
        ta = torch.from_numpy(va[sel].reshape(-1, n))
        tb = torch.from_numpy(vb[sel].reshape(-1, n))
        part = merged.loc[sel, group].iloc[::n].reset_index(drop=True)
        part["n_cells"] = int(n)
        part["patch_kl"] = patch_kl(ta, tb, eps=eps).numpy()
        part["spearman"] = spearman(ta, tb).numpy()
        out.append(part)
    if not out:
        return pd.DataFrame(columns=[*on, "n_cells", "patch_kl", "spearman"])
    return pd.concat(out, ignore_index=True).sort_values(list(on), ignore_index=True)
