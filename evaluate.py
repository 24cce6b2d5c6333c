"""Cross-domain grid: ``python evaluate.py [models=[...] | select.dataset=...] targets=[...]``.

Installed: ``sage-evaluate``; the entry point lives in :mod:`sage.commands.evaluate`."""

from sage.commands.evaluate import main

if __name__ == "__main__":
    main()
