"""SAGE against the peer libraries (pytorch-grad-cam, Quantus, captum), one module per comparison.

Every comparison takes a :class:`~peers.common.Setup` (one model, one batch of SynthDrivers
images with their foreground masks, the explained classes and SAGE's GradCAM maps) and
returns :class:`~peers.common.Row` s: per-image costs of SAGE, of the peer and of the model's
plain forward+backward measured interleaved (:func:`timing.interleaved`), and the agreement of
the per-image scores. ``benchmarks/peer_suite.py`` runs them all and writes the report.
"""
