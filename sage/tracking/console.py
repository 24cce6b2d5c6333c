"""What a command prints when it ends, and how its MLflow runs are named.

Every stage names its runs after the model they are about, model and variant first (the
UI's run-name column shows about 20 characters, and the runs of a sweep differ in those),
the time last: ``<model>-<variant>/<dataset>-nc<classes>/<stage>-<time>``
(:func:`run_name`). Every command ends with the same closing lines (:func:`where_to_look`):
the run id, the output directory and how to open the run in the MLflow UI.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .store import sqlite_path


def run_name(
    model: str,
    variant: str | None,
    dataset: str | None,
    num_classes: int | str | None,
    stage: str,
    stamp: str | None = None,
) -> str:
    """``<model>-<variant>/<dataset>-nc<classes>/<stage>-<time>`` (the training run's scheme)."""
    stamp = stamp or time.strftime("%Y%m%d-%H%M%S")
    return f"{model}-{variant or 'unknown'}/{dataset or 'unknown'}-nc{num_classes}/{stage}-{stamp}"


def model_tags(
    model: str, dataset: str | None, variant: str | None, num_classes: int | str | None
) -> dict[str, str]:
    """The model's identity as the training run tags it (``model``, ``dataset``, ``variant``,
    ``num_classes``), so one search finds a model's runs in every stage."""
    return {
        "model": str(model),
        "dataset": str(dataset or "unknown"),
        "variant": str(variant or "unknown"),
        "num_classes": str(num_classes),
    }


def where_to_look(
    tracking_uri: str | None, experiment_id: str, run_id: str, output_dir: str | Path
) -> str:
    """The closing lines of a run: its MLflow run id, its output directory, and how to open
    the run in the MLflow UI (a local store needs ``mlflow ui`` started first)."""
    # MLflow 3.17's UI picks its GenAI or model-training pages from this URL parameter (or the
    # sidebar switch), not from the experiment's kind tag
    page = f"#/experiments/{experiment_id}/runs/{run_id}?workflowType=machine_learning"
    # a password in the URI (postgresql://user:secret@host/db) stays off the console
    shown = re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", tracking_uri or "")
    if shown.startswith(("http://", "https://")):
        view = f"view:    {shown.rstrip('/')}/{page}"
    else:
        # an absolute database path: the command works from any directory
        db = sqlite_path(shown)
        store = f"sqlite:///{db.resolve()}" if db else (shown or "mlruns")
        view = f"view:    mlflow ui --backend-store-uri {store}  then http://127.0.0.1:5000/{page}"
    return f"MLflow run: {run_id}\noutputs: {Path(output_dir).resolve()}\n{view}"


def compact_table(
    rows: Mapping[str, Mapping[str, float]], columns: Sequence[str], corner: str = ""
) -> str:
    """A fixed-width text table: one line per row key, the given columns (``-`` when a row
    lacks one or it is not finite)."""

    def cell(value: object) -> str:
        if isinstance(value, float | int) and math.isfinite(value):
            return f"{value:.3f}"
        return "-"

    header = [corner, *columns]
    body = [[str(name), *(cell(values.get(c)) for c in columns)] for name, values in rows.items()]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    return "\n".join(
        "  ".join(
            text.ljust(width) if i == 0 else text.rjust(width)  # names left, numbers right
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        )
        for line in [header, *body]
    )
