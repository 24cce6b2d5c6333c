"""The analysis of the collected outputs: per pair and across pairs, tables, plots, metrics.

:func:`analyse` standardises the tokens and fits the saliency embeddings per method (pooled
over all models), then per pair computes behaviour (:mod:`~sage.divergence.behaviour`), the
saliency divergences (:mod:`~sage.divergence.saliency`), their correlation with behaviour and
the verdict (:mod:`~sage.divergence.hypothesis`), the fg/bg split and the partial
correlations, writing each pair's CSVs and plots under ``pairs/<a>--<b>/``; with three or more
models it adds the test across pairs. Everything it found is one :class:`Analysis`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..evaluation.selection import SourceModel
from ..plots.divergence import (
    plot_divergence_scatter,
    plot_embedding,
    plot_fg_bg,
    plot_flip_matrix,
    plot_per_class,
)
from ..saliency.tokens import grid_name
from .behaviour import behaviour_frame, behaviour_summary, flip_matrix, per_class_table
from .collection import ModelRun
from .embedding import embedding_matrix, fit_pca
from .hypothesis import across_pairs, correlate, partial_spearman, verdict
from .report import fg_bg_table
from .saliency import token_divergence, token_stats
from .settings import PREFIX, Settings


def _cat(parts: list) -> np.ndarray | torch.Tensor:
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)


@dataclass
class Analysis:
    """Everything the analysis produced, for the files, the report and MLflow."""

    per_image: dict[tuple[int, int], pd.DataFrame] = field(default_factory=dict)
    behaviour: list[dict] = field(default_factory=list)
    saliency: list[pd.DataFrame] = field(default_factory=list)
    correlations: list[pd.DataFrame] = field(default_factory=list)
    fg_bg: list[pd.DataFrame] = field(default_factory=list)
    partial: list[dict] = field(default_factory=list)
    across: list[pd.DataFrame] = field(default_factory=list)
    verdicts: list[dict] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    embeddings: dict[str, pd.DataFrame] = field(default_factory=dict)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    # One stream per test, fixed by (seed, pair, method, ...): a result does not depend on
    # which other tests ran before it.
    return np.random.default_rng([seed, *keys])


def analyse(
    s: Settings,
    models: Sequence[SourceModel],
    ids: list[str],
    labels: np.ndarray,
    classes: list[str],
    runs: Sequence[ModelRun],
    pair_maps: dict,
    pairs: Sequence[tuple[int, int]],
    out: Path,
) -> tuple[Analysis, dict, list[np.ndarray]]:
    """Everything per pair and across pairs (module notes); also the per-method embeddings
    ``{method: (scores, explained variance, dims)}`` and each model's class probabilities."""
    a = Analysis()
    n = len(ids)
    probs = [np.concatenate(r.probs) for r in runs]
    zero = {m: [np.concatenate(r.zero[m]) for r in runs] for m in s.methods}
    tokens = {
        m: [{g: _cat(parts) for g, parts in r.tokens[m].items()} for r in runs] for m in s.methods
    }
    grids = [grid_name(g) for g in s.grids]
    # Token standardisation and embeddings: per method, pooled over all models.
    stats, embed = {}, {}
    for mi, m in enumerate(s.methods):
        valid = [torch.from_numpy(~z) for z in zero[m]]
        stats[m] = {g: token_stats([t[g] for t in tokens[m]], valid) for g in grids}
        x = np.concatenate([embedding_matrix(t, stats[m], s.features) for t in tokens[m]])
        x[np.concatenate(zero[m])] = np.nan
        z, explained, d = fit_pca(x, s.pca_dim, s.seed + mi)
        embed[m] = (z.reshape(len(models), n, -1), explained, d)
        rows = []
        for k, model in enumerate(models):
            frame = pd.DataFrame(
                z[k * n : (k + 1) * n], columns=[f"pc{c + 1}" for c in range(z.shape[1])]
            )
            frame.insert(0, "image_id", ids)
            frame.insert(0, "model", model.label)
            frame.insert(2, "correct", probs[k].argmax(1) == labels)
            rows.append(frame)
        a.embeddings[m] = pd.concat(rows, ignore_index=True)
        a.metrics[f"{PREFIX}embedding/{m}/dims"] = float(d)
        a.metrics[f"{PREFIX}embedding/{m}/explained_2d"] = float(np.nansum(explained[:2]))
    for pi, (i, j) in enumerate(pairs):
        ma, mb = models[i], models[j]
        pair = f"{ma.label} vs {mb.label}"
        slug = f"{ma.slug}--{mb.slug}"
        pdir = out / "pairs" / slug
        pdir.mkdir(parents=True, exist_ok=True)
        frame = behaviour_frame(ids, labels, probs[i], probs[j], classes)
        summary = behaviour_summary(frame)
        a.behaviour.append({"pair": pair, "a": ma.label, "b": mb.label} | summary)
        for k, v in summary.items():
            a.metrics[f"{PREFIX}{slug}/{k}"] = v
        flips = flip_matrix(frame, classes)
        flips.to_csv(pdir / "flips.csv")
        plot_flip_matrix(flips, pdir / "flips.png", ma.label, mb.label, f"{pair}: predictions")
        per_class = per_class_table(frame, classes)
        cols: dict[str, np.ndarray] = {}
        for mi, m in enumerate(s.methods):
            invalid = zero[m][i] | zero[m][j]
            measures = {k: np.concatenate(v) for k, v in pair_maps[(i, j)][m].items()}
            tok = token_divergence(
                tokens[m][i], tokens[m][j], stats[m], torch.from_numpy(invalid), s.features
            )
            measures |= {k: v.numpy() for k, v in tok.items()}
            z, _, _ = embed[m]
            measures["embed_dist"] = np.linalg.norm(z[i] - z[j], axis=1)
            measures["a_fg_a"] = np.where(invalid, np.nan, _cat(runs[i].a_fg[m]))
            measures["a_fg_b"] = np.where(invalid, np.nan, _cat(runs[j].a_fg[m]))
            # the signed shift is in a_fg_a/b; its size is one more saliency divergence
            measures["fg_mass_shift"] = np.abs(measures["a_fg_a"] - measures["a_fg_b"])
            for k, v in measures.items():
                cols[f"{m}/{k}"] = v
            frame_m = frame.assign(**measures)
            per_class[f"js_map/{m}"] = (
                frame_m.groupby("true", sort=False).js_map.mean().reindex(classes).to_numpy()
            )
            divergences = {
                k: v for k, v in measures.items() if k not in ("fg_share", "a_fg_a", "a_fg_b")
            }
            sal = pd.DataFrame(
                {
                    "pair": pair,
                    "method": m,
                    "measure": list(divergences),
                    "mean": [
                        np.nanmean(v) if np.isfinite(v).any() else np.nan
                        for v in divergences.values()
                    ],
                    "median": [
                        np.nanmedian(v) if np.isfinite(v).any() else np.nan
                        for v in divergences.values()
                    ],
                    "n": [int(np.isfinite(v).sum()) for v in divergences.values()],
                }
            )
            a.saliency.append(sal)
            for row in sal.itertuples(index=False):
                if np.isfinite(row.mean):
                    a.metrics[f"{PREFIX}{slug}/{m}/{row.measure}"] = float(row.mean)
            a.metrics[f"{PREFIX}{slug}/{m}/zero_maps"] = float(invalid.sum())
            for bi, beh in enumerate(("js_pred", "disagree")):
                corr = correlate(
                    frame[beh].to_numpy(dtype=np.float64),
                    divergences,
                    n_boot=s.n_boot,
                    alpha=s.alpha,
                    rng=_rng(s.seed, pi, mi, bi),
                )
                corr.insert(0, "behaviour", beh)
                corr.insert(0, "method", m)
                corr.insert(0, "pair", pair)
                a.correlations.append(corr)
                if beh == "js_pred":
                    head = corr[corr.measure == "js_map"].iloc[0]
                    status, line = verdict(head, s.alpha)
                    a.verdicts.append({"scope": pair, "method": m, "status": status, "line": line})
                    for kind in ("spearman", "pearson"):
                        for suffix in ("", "_lo", "_hi", "_p"):
                            v = float(head[f"{kind}{suffix}"])
                            if np.isfinite(v):
                                a.metrics[f"{PREFIX}{slug}/{m}/rho_{kind}{suffix}"] = v
                    if status != "undefined":
                        a.metrics[f"{PREFIX}{slug}/{m}/supported"] = float(status == "supported")
            fb = fg_bg_table(frame_m)
            fb.insert(0, "method", m)
            fb.insert(0, "pair", pair)
            a.fg_bg.append(fb)
            share = fb[fb.group == "all"].fg_share.iloc[0]
            if np.isfinite(share):
                a.metrics[f"{PREFIX}{slug}/{m}/fg_share"] = float(share)
            for part, other in (("js_fg", "js_bg"), ("js_bg", "js_fg")):
                ps = partial_spearman(
                    frame.js_pred.to_numpy(),
                    measures[part],
                    measures[other],
                    n_boot=s.n_boot,
                    alpha=s.alpha,
                    rng=_rng(s.seed, pi, mi, 7),  # the same resamples for both parts
                )
                a.partial.append({"pair": pair, "method": m, "partial": f"{part} | {other}"} | ps)
            plot_divergence_scatter(
                measures["js_map"],
                frame.js_pred.to_numpy(),
                frame.disagree.to_numpy(),
                pdir / f"scatter_{m}.png",
                title=f"{pair} ({m})\n{a.verdicts[-1]['line']}",
            )
            plot_fg_bg(fb, pdir / f"fg_bg_{m}.png", f"{pair} ({m}): where JS(S̃) lies")
        per_class.to_csv(pdir / "per_class.csv", index=False)
        plot_per_class(per_class, pdir / "per_class.png", f"{pair}: per true class")
        per_image = pd.concat([frame, pd.DataFrame(cols)], axis=1)
        per_image.to_csv(pdir / "per_image.csv", index=False)
        a.per_image[(i, j)] = per_image
    if len(models) >= 3:
        for mi, m in enumerate(s.methods):
            x = np.stack([a.per_image[p].js_pred.to_numpy() for p in pairs], 1)
            y = np.stack([a.per_image[p][f"{m}/js_map"].to_numpy() for p in pairs], 1)
            res = across_pairs(x, y, n_boot=s.n_boot, alpha=s.alpha, rng=_rng(s.seed, 999, mi))
            res.insert(0, "method", m)
            a.across.append(res)
            for row in res.to_dict("records"):
                unit = "pairs" if row["level"] == "pair_means" else "(image, pair) points"
                status, line = verdict(
                    row,
                    s.alpha,
                    "mean JS(pred)" if unit == "pairs" else "JS(pred)",
                    "mean JS(S̃)" if unit == "pairs" else "JS(S̃)",
                    unit,
                )
                a.verdicts.append(
                    {
                        "scope": f"across pairs ({row['level']})",
                        "method": m,
                        "status": status,
                        "line": line,
                    }
                )
                for kind in ("spearman", "pearson"):
                    for suffix in ("", "_lo", "_hi"):
                        v = float(row[f"{kind}{suffix}"])
                        if np.isfinite(v):
                            a.metrics[f"{PREFIX}across/{m}/{row['level']}/rho_{kind}{suffix}"] = v
    return a, embed, probs


def headline_verdict(verdicts: pd.DataFrame, n_models: int) -> str:
    """The verdict that answers the question: the pair's, or pooled over pairs."""
    if n_models >= 3:
        pooled = verdicts[verdicts.scope == "across pairs (pooled)"]
        if len(pooled):
            return str(pooled.line.iloc[0])
    return str(verdicts.line.iloc[0])


def plot_embeddings(
    s: Settings,
    models: Sequence[SourceModel],
    embed: dict,
    probs: Sequence[np.ndarray],
    labels: np.ndarray,
    pairs: Sequence[tuple[int, int]],
    per_image: dict[tuple[int, int], pd.DataFrame],
    out: Path,
) -> None:
    """``embedding/<method>.png``: the first two PCs of every model's maps, pairs linked."""
    (out / "embedding").mkdir(exist_ok=True)
    for m in s.methods:
        z, explained, d = embed[m]
        if d < 2:
            continue
        points = {model.label: z[k, :, :2] for k, model in enumerate(models)}
        correct = {model.label: probs[k].argmax(1) == labels for k, model in enumerate(models)}
        links = [
            (models[i].label, models[j].label, per_image[(i, j)].disagree.to_numpy())
            for i, j in pairs
        ]
        plot_embedding(
            points,
            correct,
            links,
            out / "embedding" / f"{m}.png",
            explained=explained,
            title=f"saliency embeddings ({m}, PCA of standardised tokens)",
        )
