"""Find the prepared dataset a run needs, preparing SynthDrivers on first use.

Real datasets must be prepared explicitly (it takes a while and needs the user's data root);
the embedded SynthDrivers are generated and prepared on demand so ``python train.py`` works
on a fresh clone. A file lock keeps parallel sweep jobs from preparing the same data twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from filelock import FileLock

from ..errors import SageError
from .prepared import dataset_dirname


def ensure_prepared(ds: Mapping, variant: str | None = None) -> Path:
    """Canonical path of the prepared ``ds`` (variant ``ds['variant']`` by default)."""
    variant = variant or ds["variant"]
    root = Path(ds["prepared_root"])
    link = root / dataset_dirname(ds["name"], variant)
    if (link / "meta.csv").exists():
        return link
    if not ds.get("synth"):
        raise SageError(
            f"prepared dataset {link} not found; run "
            f"`python -m sage.prepare dataset={ds.get('config_name', ds['name'])}` first"
        )
    from .preparation import prepare_dataset  # heavy import only when needed

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{ds['name']}.lock")):
        if not (link / "meta.csv").exists():  # another job may have prepared it meanwhile
            prepare_dataset(ds)  # all four variants from one pass, like `sage.prepare`
    return link
