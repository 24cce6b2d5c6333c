"""Train a classifier: ``python train.py [model=...] [dataset=...]`` (``-m`` for sweeps).

Installed: ``sage-train``; the entry point lives in :mod:`sage.commands.train`."""

from sage.commands.train import main

if __name__ == "__main__":
    main()
