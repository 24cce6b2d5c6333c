"""``evaluate.py mode=divergence``: why do the selected models behave differently?

``run(cfg)`` (dispatched from :func:`sage.evaluation.run`):

1. selects the models as the grid does (:func:`sage.evaluation.selection.select_models`:
   ``models=[...]`` or the MLflow filter ``select.*``; at least two) and opens ONE dataset,
   ``divergence.dataset`` (a ``sage/conf/dataset`` name composed and, for SynthDrivers, prepared
   by :func:`sage.evaluation.targets.load_targets`; null: the first of ``targets``);
2. runs every model and every ``divergence.methods`` saliency method over the split in batches
   (:func:`sage.explain_batch.explain_batch`: predictions, raw maps, ReLU+PDF S̃, A_fg/A_bg,
   tokens) and, per batch, the map-level divergences of every pair, so no map is kept;
   a model with another input size has its raw maps resized (bilinear) to the first model's
   size before normalising, so both maps of a pair live on the same pixels and mask;
3. per pair: behaviour (:mod:`~sage.divergence.behaviour`), saliency divergences
   (:mod:`~sage.divergence.saliency`), saliency embeddings (:mod:`~sage.divergence.embedding`)
   and the hypothesis test (:mod:`~sage.divergence.hypothesis`), plus the test across pairs
   with three or more models;
4. writes tables, plots and ``report.md`` to the run directory and logs them to one MLflow run
   ``divergence-<ts>/<K>models-on-<dataset>-<variant>-<split>`` (tags ``stage=divergence``,
   ``verdict``), metrics ``divergence/<pair>/...``.

Run directory (and MLflow artifacts):

| file | content |
|---|---|
| ``report.md`` | verdicts with their numbers, behaviour, saliency, correlation, fg/bg tables |
| ``verdicts.csv`` | scope (pair or across pairs), method, status, line |
| ``behaviour.csv`` | per pair: accuracies, disagreement, mean JS(pred), flip shares |
| ``pairs/<a>--<b>/per_image.csv`` | per image: behaviour, and per method every divergence |
| ``pairs/<a>--<b>/per_class.csv``, ``flips.csv`` | per true class; a's × b's predicted class |
| ``pairs/<a>--<b>/*.png`` | scatter with fit per method, per-class bars, fg/bg bars, flips |
| ``saliency.csv`` | per pair, method and measure: mean, median, images defined |
| ``correlations.csv`` | per pair, method, behaviour (js_pred, disagree) and measure: ρ, r, CIs, p |
| ``fg_bg.csv``, ``partial.csv`` | fg/bg parts of JS(S̃) and A_bg per group; partial Spearman ρ |
| ``across_pairs.csv`` | with ≥ 3 models: correlation of pair means and pooled |
| ``embedding/<method>.csv``, ``embedding/<method>.png`` | PCA scores per (model, image); plot |
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.datamodule import PreparedImages, image_transform
from ..data.prepared import SPLITS
from ..errors import SageError
from ..evaluation.selection import select_from_config
from ..evaluation.targets import targets_from_config
from ..explain_batch import explain_batch
from ..models import get_backbone_spec
from ..models.fingerprint import model_fingerprint
from ..plots.divergence import (
    plot_divergence_scatter,
    plot_embedding,
    plot_fg_bg,
    plot_flip_matrix,
    plot_per_class,
)
from ..saliency.methods import SaliencyMethod, create_method
from ..saliency.normalize import normalize_batch
from ..saliency.tokens import FEATURES, grid_name, tokenize_grids
from ..tracking.run_record import git_commit
from ..tracking.store import experiment_for
from ..training.classifier import load_classifier
from .behaviour import behaviour_frame, behaviour_summary, flip_matrix, per_class_table
from .embedding import embedding_matrix, fit_pca
from .hypothesis import across_pairs, correlate, partial_spearman, verdict
from .report import fg_bg_table, measure_label, render_report
from .saliency import DEFAULT_FEATURES, map_divergence, token_divergence, token_stats

PREFIX = "divergence/"
ARTIFACTS = (
    "report.md",
    "selection.json",
    "verdicts.csv",
    "behaviour.csv",
    "saliency.csv",
    "correlations.csv",
    "fg_bg.csv",
    "partial.csv",
    "across_pairs.csv",
    "pairs",
    "embedding",
)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)


@dataclass
class _Settings:
    """The ``divergence`` block, checked."""

    dataset: str
    methods: dict[str, SaliencyMethod]
    grids: list[tuple[int, int]]
    alpha: float
    n_boot: int
    pca_dim: int
    seed: int
    features: list[str]


def _settings(cfg: DictConfig) -> _Settings:
    div = cfg.get("divergence") or {}
    if cfg.split not in SPLITS:
        raise SageError(f"split must be one of {SPLITS}, got {cfg.split!r}")
    if cfg.checkpoint_select not in ("best", "last"):
        raise SageError(
            f"checkpoint_select must be 'best' or 'last', got {cfg.checkpoint_select!r}"
        )
    dataset = div.get("dataset") or (list(cfg.get("targets") or []) or [None])[0]
    if not dataset:
        raise SageError("divergence.dataset is not set and there are no targets to default to")
    names = [str(m) for m in div.get("methods") or []]
    if not names:
        raise SageError("divergence.methods is empty: e.g. divergence.methods=[gradcam]")
    opts = div.get("options")
    options = OmegaConf.to_container(opts, resolve=True) if isinstance(opts, DictConfig) else {}
    alpha = float(div.get("alpha", 0.05))
    if not 0 < alpha < 1:
        raise SageError(f"divergence.alpha must lie in (0, 1), got {alpha}")
    n_boot = int(div.get("bootstrap", 1000))
    if n_boot < 0:
        raise SageError(f"divergence.bootstrap must be >= 0, got {n_boot}")
    pca_dim = int(div.get("pca_dim", 10))
    if pca_dim < 1:
        raise SageError(f"divergence.pca_dim must be >= 1, got {pca_dim}")
    features = [str(f) for f in div.get("features") or DEFAULT_FEATURES]
    unknown = sorted(set(features) - set(FEATURES))
    if unknown:
        raise SageError(f"unknown token feature(s) {unknown} in divergence.features; {FEATURES}")
    grids = [(int(g[0]), int(g[1])) for g in div.get("grids") or [[4, 4], [8, 8]]]
    seed = div.get("seed")
    return _Settings(
        dataset=str(dataset),
        methods={n: create_method(n, **(options.get(n) or {})) for n in names},
        grids=grids,
        alpha=alpha,
        n_boot=n_boot,
        pca_dim=pca_dim,
        seed=int(cfg.seed if seed is None else seed),
        features=features,
    )


@dataclass
class _ModelRun:
    """What one model says about the split (CPU, aligned with the image order)."""

    probs: list[np.ndarray] = field(default_factory=list)
    zero: dict[str, list[np.ndarray]] = field(default_factory=dict)  # method -> (B,)
    a_fg: dict[str, list[np.ndarray]] = field(default_factory=dict)
    tokens: dict[str, dict[str, list[torch.Tensor]]] = field(default_factory=dict)


def _loaders(cfg: DictConfig, data, specs, sizes) -> tuple[list[DataLoader], list[int]]:
    """One loader per distinct (size, mean, std); the model -> loader map."""
    keys: list[tuple] = []
    which = []
    for spec, size in zip(specs, sizes, strict=True):
        key = (size, tuple(spec.mean), tuple(spec.std))
        if key not in keys:
            keys.append(key)
        which.append(keys.index(key))
    loaders = []
    for size, mean, std in keys:
        transform = image_transform(size, mean, std)
        images = PreparedImages(data, cfg.split, transform, with_masks=True, limit=cfg.get("limit"))
        if len(images) == 0:
            raise SageError(f"split {cfg.split!r} of {data.root} is empty")
        loaders.append(
            DataLoader(
                images,
                batch_size=int(cfg.batch_size),
                shuffle=False,
                num_workers=int(cfg.get("num_workers") or 0),
            )
        )
    return loaders, which


def _collect(cfg, s: _Settings, nets, specs, sizes, loaders, which, pairs, progress: bool):
    """Forward + explain every batch with every model and method; pair map divergences."""
    device = torch.device(cfg.device)
    runs = [_ModelRun() for _ in nets]
    pair_maps: dict[tuple[int, int], dict[str, dict[str, list]]] = {
        p: {m: {} for m in s.methods} for p in pairs
    }
    ids: list[str] = []
    labels: list[np.ndarray] = []
    first = next(iter(s.methods))
    ref = sizes[0]
    for batches in tqdm(
        zip(*loaders, strict=True), total=len(loaders[0]), desc="divergence", disable=not progress
    ):
        batch_ids = list(batches[0]["image_id"])
        if any(list(b["image_id"]) != batch_ids for b in batches[1:]):
            raise SageError("loaders of different input sizes disagree on the image order")
        ids += batch_ids
        labels.append(batches[0]["label"].numpy())
        ref_masks = batches[which[0]]["mask"].to(device)
        outs: list[dict[str, tuple]] = []
        for k, net in enumerate(nets):
            b = batches[which[k]]
            x, y = b["image"].to(device), b["label"].to(device)
            masks = b["mask"].to(device)
            per_method = {}
            for name, method in s.methods.items():
                res = explain_batch(
                    net,
                    method,
                    x,
                    y,
                    masks,
                    grids=s.grids,
                    mean=specs[k].mean,
                    std=specs[k].std,
                    ids=batch_ids,
                    where=f"of model {k}",
                )
                if name == first:
                    logits = res.logits.float()  # finite: explain_batch checks
                    runs[k].probs.append(logits.softmax(-1).double().cpu().numpy())
                sb, toks = res.saliency, res.tokens
                if sizes[k] != ref:  # compare on the first model's pixels and mask
                    maps = F.interpolate(
                        res.maps[:, None].float(),
                        size=(ref, ref),
                        mode="bilinear",
                        align_corners=False,
                    )[:, 0]
                    sb = normalize_batch(maps, ref_masks)
                    toks = tokenize_grids(sb.pdf, ref_masks, s.grids)
                per_method[name] = (sb.pdf.detach(), sb.minmax.detach(), sb.zero)
                runs[k].zero.setdefault(name, []).append(sb.zero.cpu().numpy())
                runs[k].a_fg.setdefault(name, []).append(sb.a_fg.detach().cpu().numpy())
                store = runs[k].tokens.setdefault(name, {})
                for g, t in toks.items():
                    store.setdefault(g, []).append(t.detach().cpu())
            outs.append(per_method)
        for i, j in pairs:
            for name in s.methods:
                pdf_a, mm_a, z_a = outs[i][name]
                pdf_b, mm_b, z_b = outs[j][name]
                cols = map_divergence(pdf_a, pdf_b, mm_a, mm_b, ref_masks, z_a | z_b)
                for col, v in cols.items():
                    pair_maps[(i, j)][name].setdefault(col, []).append(v.cpu().numpy())
    return ids, np.concatenate(labels).astype(np.int64), runs, pair_maps


def _cat(parts: list) -> np.ndarray | torch.Tensor:
    return torch.cat(parts) if isinstance(parts[0], torch.Tensor) else np.concatenate(parts)


@dataclass
class _Analysis:
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


def _analyse(s: _Settings, models, ids, labels, classes, runs, pair_maps, pairs, out: Path):
    a = _Analysis()
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


def _headline(verdicts: pd.DataFrame, n_models: int) -> str:
    """The verdict that answers the question: the pair's, or pooled over pairs."""
    if n_models >= 3:
        pooled = verdicts[verdicts.scope == "across pairs (pooled)"]
        if len(pooled):
            return str(pooled.line.iloc[0])
    return str(verdicts.line.iloc[0])


def _embedding_plots(s: _Settings, models, embed, probs, labels, pairs, per_image, out: Path):
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


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}


def _behaviour_table(rows: Sequence[dict]) -> pd.DataFrame:
    b = pd.DataFrame(rows)
    return pd.DataFrame(
        {
            "pair": b.pair,
            "n": b.n_images.astype(int),
            "acc a": b.acc_a,
            "acc b": b.acc_b,
            "disagreement": b.disagreement,
            "mean JS(pred)": b.js_pred,
            "fixed by b": b["flip/fixed"],
            "broken by b": b["flip/broken"],
            "different wrong": b["flip/different_wrong"],
        }
    )


def _saliency_table(frames: Sequence[pd.DataFrame], grids: Sequence[str]) -> pd.DataFrame:
    sal = pd.concat(frames, ignore_index=True)
    wide = sal.pivot_table(index=["pair", "method"], columns="measure", values="mean", sort=False)
    keep = ["js_map", "ssim_dist"]
    for g in grids:
        keep += [f"spearman_{g}_whole", f"euclid_{g}_whole", f"patch_kl_{g}_whole"]
    keep.append("embed_dist")
    wide = wide[[k for k in keep if k in wide.columns]]
    wide.columns = [measure_label(c) for c in wide.columns]
    return wide.reset_index()


def run(cfg: DictConfig) -> dict[str, object]:
    """Run the divergence analysis of ``cfg``; return the run id, verdict and the report."""
    start = time.perf_counter()
    s = _settings(cfg)
    torch.manual_seed(s.seed)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (target,) = targets_from_config(cfg, [s.dataset])
    models, skipped_runs = select_from_config(cfg, out)
    if len(models) < 2:
        raise SageError(
            f"divergence compares models: {len(models)} selected ({[m.label for m in models]}); "
            "pass models=[<run id or .ckpt>, <run id or .ckpt>, ...] or widen select.*"
        )
    classes = target.data.classes
    for m in models:
        if m.classes != classes:
            raise SageError(
                f"model {m.label} ({m.checkpoint}) predicts classes {m.classes} but "
                f"{target.name} ({target.data.root}) has {classes}; both must be identical"
            )
    nets, specs, sizes, fingerprints = [], [], [], []
    for m in models:
        net, _ = load_classifier(m.checkpoint, expect_backbone=m.backbone)
        nets.append(net.to(cfg.device).eval())
        spec = get_backbone_spec(m.backbone)
        specs.append(spec)
        sizes.append(int(m.image_size or spec.input_size))
        fingerprints.append(model_fingerprint(net))
    pairs = list(itertools.combinations(range(len(models)), 2))
    loaders, which = _loaders(cfg, target.data, specs, sizes)
    ids, labels, runs, pair_maps = _collect(
        cfg, s, nets, specs, sizes, loaders, which, pairs, bool(cfg.progress)
    )
    seconds_forward = time.perf_counter() - start
    a, embed, probs = _analyse(s, models, ids, labels, classes, runs, pair_maps, pairs, out)
    _embedding_plots(s, models, embed, probs, labels, pairs, a.per_image, out)

    grids = [grid_name(g) for g in s.grids]
    verdicts = pd.DataFrame(a.verdicts)
    behaviour = pd.DataFrame(a.behaviour)
    correlations = pd.concat(a.correlations, ignore_index=True)
    fg_bg = pd.concat(a.fg_bg, ignore_index=True)
    partial = pd.DataFrame(a.partial)
    across = pd.concat(a.across, ignore_index=True) if a.across else None
    verdicts.to_csv(out / "verdicts.csv", index=False)
    behaviour.to_csv(out / "behaviour.csv", index=False)
    pd.concat(a.saliency, ignore_index=True).to_csv(out / "saliency.csv", index=False)
    correlations.to_csv(out / "correlations.csv", index=False)
    fg_bg.to_csv(out / "fg_bg.csv", index=False)
    partial.to_csv(out / "partial.csv", index=False)
    if across is not None:
        across.to_csv(out / "across_pairs.csv", index=False)
    for m, frame in a.embeddings.items():
        frame.to_csv(out / "embedding" / f"{m}.csv", index=False)
    headline = _headline(verdicts, len(models))
    selection = {
        "dataset": target.name,
        "prepared": str(target.data.root),
        "split": cfg.split,
        "checkpoint_select": cfg.checkpoint_select,
        "models": [
            {
                "label": m.label,
                "key": m.key,
                "ckpt": str(m.checkpoint),
                "backbone": m.backbone,
                "image_size": size,
                "fingerprint": fp,
            }
            for m, size, fp in zip(models, sizes, fingerprints, strict=True)
        ],
        "skipped_runs": skipped_runs,
    }
    (out / "selection.json").write_text(json.dumps(selection, indent=1))

    seconds = time.perf_counter() - start
    a.metrics |= {
        f"{PREFIX}seconds": seconds,
        f"{PREFIX}seconds_forward_explain": seconds_forward,
        f"{PREFIX}images": float(len(ids)),
        f"{PREFIX}images_per_s": len(ids) * len(models) / max(seconds_forward, 1e-9),
    }
    setup = [
        f"dataset: `{target.label}` ({cfg.split} split, {len(ids)} images, `{target.data.root}`)",
        *[
            f"model {chr(97 + k) if len(models) == 2 else k}: **{m.label}** ({m.backbone}, "
            f"{m.image_size or sizes[k]} px, `{m.checkpoint}`)"
            for k, m in enumerate(models)
        ],
        f"saliency: {', '.join(s.methods)} (explaining each model's predicted class); grids "
        f"{', '.join(grids)}; token features {', '.join(s.features)}; PCA to {s.pca_dim} dims",
        f"α = {s.alpha:g}; {s.n_boot} bootstrap resamples of the images (seed {s.seed})",
        f"wall time {seconds:.1f} s ({seconds_forward:.1f} s forward + saliency)",
    ]
    files = [
        "verdicts.csv",
        "behaviour.csv",
        "saliency.csv",
        "correlations.csv",
        "fg_bg.csv",
        "partial.csv",
        *(["across_pairs.csv"] if across is not None else []),
        "pairs/<a>--<b>/{per_image,per_class,flips}.csv",
        "pairs/<a>--<b>/{scatter_<method>,fg_bg_<method>,per_class,flips}.png",
        "embedding/<method>.{csv,png}",
    ]
    fg_show = fg_bg[fg_bg.group.isin(["all", "same class", "class differs"])].rename(
        columns={
            "js_fg": "JS fg part",
            "js_bg": "JS bg part",
            "fg_share": "fg share",
            "a_bg_a": "A_bg a",
            "a_bg_b": "A_bg b",
        }
    )
    report = render_report(
        title=f"Why the models differ: divergence on {target.label} ({cfg.split})",
        setup=setup,
        verdicts=verdicts,
        behaviour=_behaviour_table(a.behaviour),
        saliency=_saliency_table(a.saliency, grids),
        correlations=correlations,
        fg_bg=fg_show,
        partial=partial,
        across=across,
        grids=grids,
        alpha=s.alpha,
        files=files,
    )
    (out / "report.md").write_text(report)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"divergence-{stamp}/{len(models)}models-on-{_slug(target.label)}-{cfg.split}"
    exp_id = experiment_for(cfg.logger)
    tags = {
        "stage": "divergence",
        "dataset": target.name,
        "split": cfg.split,
        "models": json.dumps([m.label for m in models]),
        "source_runs": json.dumps([m.run_id for m in models]),
        "verdict": headline[:4900],
        # the code's checkout, not paths.root_dir (which SAGE_ROOT may move outside the repo)
        "git_commit": git_commit(Path(__file__).resolve().parents[2]),
    }
    with mlflow.start_run(experiment_id=exp_id, run_name=name, tags=tags) as mlrun:
        mlflow.log_params(
            {
                "dataset": target.name,
                "split": cfg.split,
                "checkpoint_select": cfg.checkpoint_select,
                "n_models": len(models),
                "n_images": len(ids),
                "methods": json.dumps(list(s.methods)),
                "grids": json.dumps(grids),
                "alpha": s.alpha,
                "bootstrap": s.n_boot,
                "pca_dim": s.pca_dim,
                "seed": s.seed,
                "features": json.dumps(s.features),
                "limit": cfg.get("limit"),
            }
        )
        mlflow.log_text(OmegaConf.to_yaml(cfg, resolve=True), "config/config.yaml")
        mlflow.log_metrics(_finite(a.metrics))
        for item in sorted(out.iterdir()):  # what this analysis wrote; not .hydra/checkpoints
            if item.name in ARTIFACTS:
                if item.is_dir():
                    mlflow.log_artifacts(str(item), artifact_path=item.name)
                else:
                    mlflow.log_artifact(str(item))
    return {
        "run_id": mlrun.info.run_id,
        "verdict": headline,
        "models": len(models),
        "images": len(ids),
        "seconds": round(seconds, 1),
        "output_dir": str(out),
        "table": report,
    }
