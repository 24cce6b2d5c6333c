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
from .synth_settings import prepared_key


def _current(link: Path) -> bool:
    """``link`` is a prepared dataset. For SynthDrivers that is enough: the link's name carries
    the key of the settings that decide its content (:func:`.synth_settings.prepared_key`), so
    a copy made with other settings lives under another name."""
    return (link / "meta.csv").exists()


def ensure_prepared(ds: Mapping, variant: str | None = None) -> Path:
    """Canonical path of the prepared ``ds`` (variant ``ds['variant']`` by default).

    SynthDrivers are prepared when missing; other ``synth``/``split``/``mapping`` settings
    name another directory, so they never replace an existing one.
    """
    variant = variant or ds["variant"]
    root = Path(ds["prepared_root"])
    link = root / dataset_dirname(ds["name"], variant, prepared_key(ds))
    if _current(link):
        return link
    if not ds.get("synth"):
        raise SageError(
            f"prepared dataset {link} not found; run "
            f"`python -m sage.prepare dataset={ds.get('config_name', ds['name'])}` first"
        )
    from .preparation import prepare_dataset  # heavy import only when needed

    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f".{ds['name']}.lock")):
        if not _current(link):  # another job may have prepared it meanwhile
            prepare_dataset(ds)  # all four variants from one pass, like `sage.prepare`
    return link
