"""SAGE: measurable saliency for image classifiers (train, explain, evaluate, compare).

SAGE never downloads at run time. The Hugging Face hub client reads HF_HUB_OFFLINE when it is
first imported (timm imports it), so the package sets it before any submodule can import
either; HF_HUB_OFFLINE=0 in the environment still wins.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
