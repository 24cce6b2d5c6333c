"""Read explain's saved maps back: :func:`load_maps` over the sharded array store.

::

    from sage.explain import load_maps

    maps = load_maps("outputs/runs/explain/<ts>", ["img_001", "img_007"], method="gradcam")
    maps["whole"].shape  # (2, H, W): S̃ of each image, in the order asked
    maps = load_maps("<32-hex MLflow run id>", ids, method="gradcam")  # downloads what it needs

The store's layout is described in :mod:`sage.explain.sinks.arrays`.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import SageError
from ..tracking.checkpoints import RUN_ID
from .sinks.arrays import INDEX

ARTIFACT_DIR = "explain/arrays"  # where the explain task logs the store in its MLflow run


def load_maps(
    run: str | Path,
    image_ids: Sequence[str],
    *,
    method: str | None = None,
    tracking_uri: str | None = None,
) -> dict[str, np.ndarray]:
    """The saved arrays of ``image_ids`` for ``method``, stacked in the order of ``image_ids``.

    Args:
        run: an explain output directory (the one holding ``arrays/``), the ``arrays``
            directory itself, or an MLflow run id of an explain run (only the index and the
            shards holding ``image_ids`` are downloaded, to a temporary directory).
        image_ids: images to read (repeats allowed).
        method: the ``cam=`` key; may be omitted when the run explained one method only.
        tracking_uri: MLflow tracking URI for a run id (default: MLflow's current one).

    Returns:
        ``whole`` ``(N, H, W)`` S̃; with masks also ``mask`` (bool), ``fg`` = S̃⊙M and
        ``bg`` = S̃⊙(1−M); and ``tokens_<P>x<Q>`` ``(N, 3, P, Q, 6)`` per grid.

    Raises:
        SageError: ``run`` is neither; an unknown method or image id.
    """
    ids = [str(i) for i in image_ids]
    if not ids:
        raise SageError("load_maps needs at least one image id")
    local = Path(run).expanduser()
    if local.is_dir():
        root = local / "arrays" if (local / "arrays" / INDEX).is_file() else local
        if not (root / INDEX).is_file():
            raise SageError(f"{local} holds no explain array store (no arrays/{INDEX})")
        return _read(lambda rel: root / rel, ids, method, str(local))
    match = RUN_ID.match(str(run))
    if match is None:
        raise SageError(f"{run} is neither an explain output directory nor an MLflow run id")
    import mlflow  # only for run ids: reading a local store needs no tracking client

    run_id = match.group(1)
    with tempfile.TemporaryDirectory(prefix="sage-maps-") as tmp:

        def fetch(rel: str) -> Path:
            try:
                path = mlflow.artifacts.download_artifacts(
                    run_id=run_id,
                    artifact_path=f"{ARTIFACT_DIR}/{rel}",
                    tracking_uri=tracking_uri,
                    dst_path=tmp,
                )
            except mlflow.exceptions.MlflowException as err:
                raise SageError(
                    f"MLflow run {run_id} has no artifact {ARTIFACT_DIR}/{rel}: {err}"
                ) from err
            return Path(path)

        return _read(fetch, ids, method, f"MLflow run {run_id}")


def _read(
    fetch: Callable[[str], Path], ids: list[str], method: str | None, where: str
) -> dict[str, np.ndarray]:
    index = pd.read_csv(fetch(INDEX), dtype={"image_id": str, "method": str, "shard": str})
    methods = list(dict.fromkeys(index.method))
    if method is None:
        if len(methods) != 1:
            raise SageError(f"{where} holds several methods ({', '.join(methods)}); pass method=")
        method = methods[0]
    if method not in methods:
        raise SageError(f"{where} has no method {method!r}; it has {', '.join(methods)}")
    rows = index[index.method == method].drop_duplicates("image_id").set_index("image_id")
    unknown = [i for i in dict.fromkeys(ids) if i not in rows.index]
    if unknown:
        shown = ", ".join(unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        )
        raise SageError(f"{where} has no {method} maps for image ids {shown}")
    wanted = rows.loc[ids]
    parts: dict[str, list[np.ndarray]] = {}
    order: list[int] = []
    for shard, group in wanted.reset_index().groupby("shard", sort=True):
        with np.load(fetch(f"{method}/{shard}")) as npz:  # one shard read per shard touched
            take = group.row.to_numpy()
            for key in npz.files:
                if key != "image_id":
                    parts.setdefault(key, []).append(npz[key][take])
        order += group.index.tolist()
    back = np.argsort(np.asarray(order), kind="stable")  # shard order -> the order asked
    out = {key: np.concatenate(chunks)[back] for key, chunks in parts.items()}
    if "mask" in out:
        out["fg"] = out["whole"] * out["mask"]
        out["bg"] = out["whole"] * ~out["mask"]
    return out
