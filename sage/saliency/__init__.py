"""Saliency: methods (registry), normalisation, fg/bg decomposition, tokens and token analyses."""

from .methods import SaliencyMethod, create_method, list_methods, register_method
from .normalize import SaliencyBatch, fg_bg_mass, minmax, normalize_batch, relu_pdf
from .tokens import FEATURES, REGIONS, tokenize, tokenize_grids, tokens_to_frame

__all__ = [
    "FEATURES",
    "REGIONS",
    "SaliencyBatch",
    "SaliencyMethod",
    "create_method",
    "fg_bg_mass",
    "list_methods",
    "minmax",
    "normalize_batch",
    "register_method",
    "relu_pdf",
    "tokenize",
    "tokenize_grids",
    "tokens_to_frame",
]
