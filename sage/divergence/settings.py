"""The ``divergence`` block of ``evaluate.py mode=divergence``, checked, and the metric prefix.

:func:`read_settings` turns ``cfg.divergence`` (dataset, saliency methods and their options,
token grids and features, α, bootstrap resamples, PCA dimensions, seed) into a
:class:`Settings`, with a :class:`~sage.errors.SageError` for every bad value before any model
loads.
"""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig, OmegaConf

from ..data.prepared import SPLITS
from ..errors import SageError
from ..saliency.methods import SaliencyMethod, create_method
from ..saliency.tokens import FEATURES
from .saliency import DEFAULT_FEATURES

PREFIX = "divergence/"  # of every MLflow metric the analysis logs


@dataclass
class Settings:
    """The ``divergence`` block, checked."""

    dataset: str
    methods: dict[str, SaliencyMethod]
    grids: list[tuple[int, int]]
    alpha: float
    n_boot: int
    pca_dim: int
    seed: int
    features: list[str]


def read_settings(cfg: DictConfig) -> Settings:
    """The ``divergence`` block of ``cfg`` (and its split and checkpoint choice), checked."""
    div = cfg.get("divergence") or {}
    if cfg.split not in SPLITS:
        raise SageError(f"split must be one of {SPLITS}, got {cfg.split!r}")
    if cfg.checkpoint_select not in ("best", "last"):
        raise SageError(
            f"checkpoint_select must be 'best' or 'last', got {cfg.checkpoint_select!r}"
        )
    dataset = div.get("dataset") or (list(cfg.get("targets") or []) or [None])[0]
    if not dataset:
        raise SageError("divergence.dataset is not set and there are no targets to default to")
    names = [str(m) for m in div.get("methods") or []]
    if not names:
        raise SageError("divergence.methods is empty: e.g. divergence.methods=[gradcam]")
    opts = div.get("options")
    options = OmegaConf.to_container(opts, resolve=True) if isinstance(opts, DictConfig) else {}
    alpha = float(div.get("alpha", 0.05))
    if not 0 < alpha < 1:
        raise SageError(f"divergence.alpha must lie in (0, 1), got {alpha}")
    n_boot = int(div.get("bootstrap", 1000))
    if n_boot < 0:
        raise SageError(f"divergence.bootstrap must be >= 0, got {n_boot}")
    pca_dim = int(div.get("pca_dim", 10))
    if pca_dim < 1:
        raise SageError(f"divergence.pca_dim must be >= 1, got {pca_dim}")
    features = [str(f) for f in div.get("features") or DEFAULT_FEATURES]
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        raise SageError(f"unknown token feature(s) {unknown} in divergence.features; {FEATURES}")
    grids = [(int(g[0]), int(g[1])) for g in div.get("grids") or [[4, 4], [8, 8]]]
    seed = div.get("seed")
    return Settings(
        dataset=str(dataset),
        methods={n: create_method(n, **(options.get(n) or {})) for n in names},
        grids=grids,
        alpha=alpha,
        n_boot=n_boot,
        pca_dim=pca_dim,
        seed=int(cfg.seed if seed is None else seed),
        features=features,
    )
