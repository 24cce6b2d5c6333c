"""Where a SynthDrivers dataset lives, keyed by the settings that decide its content.

SynthDrivers are generated and prepared on demand. When every setting shared one directory,
a run with other settings (``dataset.synth.images_per_class=10``) regenerated the raw tree
and moved the canonical ``prepared/`` links under every other model trained on the default
data. Each distinct setting now gets directories of its own: the raw tree under
``<raw_root>-<key>/`` and the prepared links ``<dataset>-<variant>-<key>``, where ``key``
is a short hash of the settings.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from ..errors import SageError
from .synth import GENERATOR_VERSION, SynthConfig


def synth_config(ds: Mapping) -> SynthConfig:
    """The validated generator settings of dataset config ``ds`` (which must be synthetic)."""
    try:
        return SynthConfig(**dict(ds["synth"]))
    except (TypeError, ValueError) as err:
        raise SageError(f"dataset.synth: {err}") from err


def _digest(payload: object) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def raw_key(cfg: SynthConfig) -> str:
    """Key of the raw images: every generator setting (defaults filled in) and its version."""
    return _digest({"synth": asdict(cfg), "version": GENERATOR_VERSION})


def raw_dir(ds: Mapping) -> Path:
    """Directory the raw SynthDrivers tree of ``ds`` is generated into (its root is
    ``raw_dir / <domain>``, with ``_masks``/``_parts`` siblings)."""
    root = Path(ds["raw_root"])
    return root.parent / f"{root.name}-{raw_key(synth_config(ds))}"


def prepared_key(ds: Mapping) -> str | None:
    """Key of a prepared SynthDrivers dataset (raw key, split, mapping); ``None`` for real
    data, which the user prepares explicitly into its canonical place."""
    if not ds.get("synth"):
        return None
    plain = json.loads(json.dumps({k: ds.get(k) for k in ("split", "mapping")}, default=str))
    return _digest({"raw": raw_key(synth_config(ds)), **plain})
