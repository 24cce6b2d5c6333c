"""Saliency methods (registry): grad-cam CAMs, captum gradient methods, sanity baselines."""

from . import baselines, cam, gradients, transformer  # noqa: F401  (registration side effects)
from .base import SaliencyMethod, create_method, list_methods, register_method, saliency_mode

__all__ = ["SaliencyMethod", "create_method", "list_methods", "register_method", "saliency_mode"]
