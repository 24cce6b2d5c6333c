"""The SAGE study on SynthDrivers in one command (``python -m sage.study``)."""

from .runner import run

__all__ = ["run"]
