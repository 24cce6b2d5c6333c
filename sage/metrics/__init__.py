"""Saliency metrics: batched functions returning per-image values, plus aggregation."""
