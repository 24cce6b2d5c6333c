"""Explain a checkpoint: ``python explain.py checkpoint=<ckpt | MLflow run id> [cam=[...]]``.

Installed: ``sage-explain``; the entry point lives in :mod:`sage.commands.explain`."""

from sage.commands.explain import main

if __name__ == "__main__":
    main()
