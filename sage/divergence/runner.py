"""``evaluate.py mode=divergence``: why do the selected models behave differently?

``run(cfg)`` (dispatched from :func:`sage.evaluate.run`):

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
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import torch
from omegaconf import DictConfig, OmegaConf

from ..errors import SageError
from ..evaluation.cell_runs import cell_slug
from ..evaluation.selection import select_from_config
from ..evaluation.targets import targets_from_config
from ..models import get_backbone_spec
from ..models.fingerprint import model_fingerprint
from ..saliency.tokens import grid_name
from ..tracking.run_record import code_version
from ..tracking.store import experiment_for
from ..training.classifier import load_classifier
from .analysis import analyse, headline_verdict, plot_embeddings
from .collection import collect_outputs, make_loaders
from .report import behaviour_table, render_report, saliency_table
from .settings import PREFIX, read_settings

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


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if np.isfinite(v)}


def run(cfg: DictConfig) -> dict[str, object]:
    """Run the divergence analysis of ``cfg``; return the run id, verdict and the report."""
    start = time.perf_counter()
    s = read_settings(cfg)
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
    loaders, which = make_loaders(cfg, target.data, specs, sizes)
    ids, labels, runs, pair_maps = collect_outputs(
        cfg, s, nets, specs, sizes, loaders, which, pairs, bool(cfg.progress)
    )
    seconds_forward = time.perf_counter() - start
    a, embed, probs = analyse(s, models, ids, labels, classes, runs, pair_maps, pairs, out)
    plot_embeddings(s, models, embed, probs, labels, pairs, a.per_image, out)

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
    headline = headline_verdict(verdicts, len(models))
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
        behaviour=behaviour_table(a.behaviour),
        saliency=saliency_table(a.saliency, grids),
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
    # the compared models first (backbone, then their variants), the time last, as every
    # stage's run names: small_cnn-full-vs-seg/synth-sf3d-full-test/divergence-<time>
    backbones = "-vs-".join(dict.fromkeys(m.backbone for m in models))
    variants = "-vs-".join(m.variant or cell_slug(m.label) for m in models)
    name = f"{backbones}-{variants}/{cell_slug(target.label)}-{cfg.split}/divergence-{stamp}"
    exp_id = experiment_for(cfg.logger)
    tags = {
        "stage": "divergence",
        "dataset": target.name,
        "split": cfg.split,
        "models": json.dumps([m.label for m in models]),
        "source_runs": json.dumps([m.run_id for m in models]),
        "verdict": headline[:4900],
        # sage_version, and git_commit of the code's own checkout when it runs from one
        **code_version(),
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
