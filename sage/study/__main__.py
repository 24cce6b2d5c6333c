"""``sage-study`` / ``python -m sage.study [demo.size=tiny] [study.key=value ...]``: the whole
SAGE study.

Overrides use Hydra syntax against ``sage/conf/study.yaml``. The study composes every task's
config itself, so it runs as a plain program rather than under ``@hydra.main``.
"""

from __future__ import annotations

import os
import sys

# the study's own steps print what they do; MLflow's per-download progress bars only add noise
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from sage.cli import one_line_errors
from sage.compose import compose_task
from sage.study import run


@one_line_errors
def main(argv: list[str] | None = None) -> None:
    """Entry point; ``argv`` defaults to the command line (the ``sage-study`` script)."""
    argv = sys.argv[1:] if argv is None else argv
    if any(a in ("-h", "--help") for a in argv):
        print(__doc__)
        return
    cfg = compose_task("study", argv, output_dir="unused")
    run(cfg)


if __name__ == "__main__":
    main()
