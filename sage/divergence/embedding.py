"""Saliency embeddings: one vector per (model, image) from its tokens, reduced by PCA.

SAGE proposes comparing models through embeddings of their saliency tokens. The embedding here
is deliberately plain: for one saliency method, the image's tokens of every grid and region
(docs/metrics.md §3) are standardised per feature (the z-scores of
:func:`sage.divergence.saliency.token_stats`, pooled over models, images and cells), flattened
and concatenated, then PCA (fitted on every model's images together, so all models share one
space) keeps ``pca_dim`` components. The first two are the 2-D projection of the plot; the
distance between a pair's embeddings of the same image (``embed_dist``, all kept components)
is one more saliency divergence for the hypothesis test.

Images whose map is flagged all-zero have no tokens worth embedding: their rows are NaN and
they are left out of the fit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.decomposition import PCA
from torch import Tensor

from .saliency import DEFAULT_FEATURES, standardise

__all__ = ["embedding_matrix", "fit_pca"]


def embedding_matrix(
    tokens: Mapping[str, Tensor],
    stats: Mapping[str, tuple[Tensor, Tensor]],
    features: Sequence[str] = DEFAULT_FEATURES,
) -> np.ndarray:
    """``(N, D)`` flattened standardised tokens of one model (grids in ``tokens``' order)."""
    parts = [standardise(t, stats[g], features).flatten(1) for g, t in tokens.items()]
    return np.concatenate([p.cpu().numpy() for p in parts], axis=1)


def fit_pca(x: np.ndarray, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """PCA of the rows of ``x`` ``(M, D)`` that are finite.

    Returns:
        ``(z, explained, d)``: ``z`` ``(M, d)`` scores (NaN rows where ``x`` had a NaN),
        the explained-variance ratio of each kept component and ``d = min(dim, rows, D)``.
    """
    if dim < 1:
        raise ValueError(f"pca_dim must be at least 1, got {dim}")
    ok = np.isfinite(x).all(1)
    d = int(min(dim, ok.sum(), x.shape[1]))
    z = np.full((len(x), max(d, 1)), np.nan)
    if d < 1:
        return z, np.full(1, np.nan), 0
    # The full SVD is exact and deterministic (no randomised solver); sklearn fixes the signs.
    pca = PCA(n_components=d, svd_solver="full", random_state=seed)
    z[ok] = pca.fit_transform(x[ok])
    return z, pca.explained_variance_ratio_, d
