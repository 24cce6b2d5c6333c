"""SynthDrivers: a procedural driver-distraction dataset with exact foreground and part masks.

The embedded default dataset of SAGE: a cabin scene with a driver whose
arm/hand pose and held object define the activity, in two differently photographed
domains written in the raw layouts of SF3D (``synth-sf3d``) and 100-Driver
(``synth-driver100``), with a dashboard sticker whose colour follows the class with
probability ``p_spurious`` in ``synth-sf3d`` (the spurious shortcut) and never in
``synth-driver100``. ``python -m sage.data.synth --help`` generates from the shell.
"""

from .activities import DISCRIMINATIVE, DRIVER100_ACTIVITY, SF3D_ACTIVITY
from .generate import DOMAINS, GENERATOR_VERSION, MANIFEST, META, SynthConfig, generate
from .render import render
from .scene import FOREGROUND_IDS, PART_NAMES, STICKER_COLOURS, Style, make_style

__all__ = [
    "DISCRIMINATIVE",
    "DOMAINS",
    "DRIVER100_ACTIVITY",
    "FOREGROUND_IDS",
    "GENERATOR_VERSION",
    "MANIFEST",
    "META",
    "PART_NAMES",
    "SF3D_ACTIVITY",
    "STICKER_COLOURS",
    "Style",
    "SynthConfig",
    "generate",
    "make_style",
    "render",
]
