"""Figures (matplotlib, Agg backend): one module per kind of figure."""

import matplotlib

matplotlib.use("Agg")
