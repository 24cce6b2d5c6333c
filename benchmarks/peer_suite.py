"""Benchmark suite: SAGE against pytorch-grad-cam, Quantus and captum, side by side in one run.

On the same model, images and masks (SynthDrivers synth-sf3d images with their exact
foreground masks; small_cnn, resnet18 and efficientnet_b0 with random weights; CPU, or CUDA
when present), for every comparison the SAGE step, the peer step and the model's plain
forward+backward (the physical floor of a gradient CAM) are timed interleaved within each
repeat, after a warm-up, and the per-image costs compared by their fastest repeat and their
median (``benchmarks/timing.py``). Each comparison also reports the max |SAGE − peer| of its
per-image scores, with matched options where the peer has them and the definitional gap
where it does not (``benchmarks/peers/*``):

1. GradCAM maps + fg/bg + tokens vs a per-image grad-cam loop (``peers/gradcam_pipeline``);
2. ROAD combined (4 percentiles) vs grad-cam ``ROADCombined``; ARCC vs grad-cam
   ``metrics/arcc.py`` (``peers/road_arcc``);
3. pointing game, relevance mass (saliency precision), attribution localisation (A_fg) vs
   Quantus ``PointingGame``, ``RelevanceMassAccuracy``, ``AttributionLocalisation``
   (``peers/quantus_localisation``);
4. Integrated Gradients through SAGE vs captum directly (``peers/captum_ig``);
4b. the catalogue (docs/metrics.md §12): sparseness, effective complexity, relevance rank
   accuracy, top-k intersection, region perturbation (AOPC) and the Deletion curve vs Quantus
   ``Sparseness``, ``EffectiveComplexity``, ``RelevanceRankAccuracy``, ``TopKIntersection``,
   ``RegionPerturbation``, ``PixelFlipping`` (``peers/quantus_catalogue``);
5. the validation callback's overhead on a training epoch (``peers/callback``);
6. scaling: the GradCAM pipeline's cost per image at batch 1/8/32 × 64/128/224 px
   (``peers/scaling``).

Usage: python benchmarks/peer_suite.py [--quick] [--models small_cnn resnet18 ...]
       [--skip-training] [--skip-scaling] [--out outputs/benchmarks]   (or: make bench)
Writes outputs/benchmarks/peer_suite.{json,md}. Exit status 1 if a comparison failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import json
import math
import os
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import torch
from peers import (
    callback,
    captum_ig,
    gradcam_pipeline,
    quantus_catalogue,
    quantus_localisation,
    road_arcc,
    scaling,
)
from peers.common import Plan, Row, failed_row, make_setup

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("small_cnn", "resnet18", "efficientnet_b0")
COMPARISONS = ("gradcam_pipeline", "road_arcc", "quantus", "ig", "catalogue")

# (comparison, peer) as the table names them
LABELS = {
    "gradcam_pipeline": ("GradCAM + fg/bg + tokens", "grad-cam per-image loop + numpy"),
    "road": ("ROAD, 4 percentiles", "grad-cam ROADCombined"),
    "arcc": ("ARCC", "grad-cam metrics/arcc.py ARCC"),
    "pointing_game": ("pointing game", "Quantus PointingGame"),
    "relevance_mass": ("relevance mass = saliency precision", "Quantus RelevanceMassAccuracy"),
    "attribution_localisation": (
        "attribution localisation = A_fg",
        "Quantus AttributionLocalisation",
    ),
    "integrated_gradients": ("Integrated Gradients", "captum IntegratedGradients"),
    "sparseness": ("sparseness (Gini)", "Quantus Sparseness"),
    "effective_complexity": ("effective complexity", "Quantus EffectiveComplexity"),
    "rank_accuracy": ("relevance rank accuracy", "Quantus RelevanceRankAccuracy"),
    "topk_intersection": ("top-k intersection", "Quantus TopKIntersection"),
    "aopc_morf": ("region perturbation MoRF (AOPC)", "Quantus RegionPerturbation"),
    "deletion": ("Deletion curve", "Quantus PixelFlipping"),
    "callback": ("validation callback ÷ training epoch", "— (no peer)"),
}

# What each agreement number compares, and where the definitions differ (read from the
# peers' sources: grad-cam 1.5.7, Quantus 0.6.0, captum 0.9).
DEFINITIONS = {
    "gradcam_pipeline": "A_fg per image. **Matched up to grad-cam's min-max shift**: both ReLU "
    "the CAM on its grid and then resize (OpenCV / torch); grad-cam then subtracts the minimum "
    "of a CAM that is positive everywhere, SAGE's S̃ = ReLU(S)/ΣReLU(S) has no shift. The peer's "
    "numpy tokens equal SAGE's to float rounding on the same S̃ (JSON `tokens_same_pdf`).",
    "road": "ROAD per image on the same ReLU'd GradCAM maps, percentiles 20/40/60/80, softmax "
    "of the explained class. **Same definition** with noise 0 on both sides (grad-cam's ROAD "
    "classes hard-code its imputer's random noise 0.01, replaced here by noise 0). Left: SAGE's "
    "CG imputation to tol 1e-4 vs grad-cam's exact `spsolve`.",
    "arcc": "ARCC per image. **Matched**: noise 0; grad-cam's ARCC passes one target list to "
    "ROAD (softmax) *and* to the coherency CAM, so its base method is wrapped to explain the "
    "class logit as SAGE does; SAGE's coherency is given the ReLU'd GradCAM (grad-cam's CAMs "
    "are ReLU'd). Left: grad-cam's Pearson (ddof 1, +1e-8) and its CAM resize order.",
    "pointing_game": "hit per image on the raw maps. **Same up to ties**: Quantus counts a hit "
    "if *any* pixel tied at the maximum is in the mask, SAGE takes the first argmax "
    "(row-major). Quantus' empty-mask NaN is written into a bool array (→ True); SAGE gives 0.",
    "relevance_mass": "Σ(s⊙m)/Σs. **Matched**: Quantus is given SAGE's min-max map; on the raw "
    "signed map Quantus sums signed values (scores can leave [0, 1]) while SAGE min-max scales "
    "first (JSON `raw_map_gap`).",
    "attribution_localisation": "A_fg = ΣReLU(S)⊙m/ΣReLU(S). **Matched**: Quantus "
    "`abs=False, positive_attributions=True`; its default `abs=True` counts |negative| "
    "attribution as relevance (JSON `default_abs_gap`). Its `weighted=True` divides by the size "
    "of `x_batch[2:]` (all but two images), so it is not used.",
    "integrated_gradients": "IG map per pixel. **Same definition** (captum inside SAGE): "
    "baseline 0, same steps and rule, |channel sum| (the scored map); the ratio is SAGE's "
    "wrapper overhead.",
    "sparseness": "Gini of |S| per image. **Matched**: Quantus `normalise=False` adds 1e-7 to "
    "every value first. Catalogue rows: GradCAM maps + a 1e-6·max jitter given to both sides "
    "(no ties, so rankings do not depend on np.argsort's tie order).",
    "effective_complexity": "count of |S|/max|S| > 1e-5. **Matched**: Quantus is given "
    "per-image max-scaled maps (its default scales by the batch maximum); SAGE's fraction × H·W.",
    "rank_accuracy": "fraction of the |M| top pixels in the mask. **Same** without ties.",
    "topk_intersection": "fraction of the top 2 % pixels in the mask. **Same** without ties.",
    "aopc_morf": "MoRF drop curve f(x) − f(x_k), k = 1..16, 8² regions. **Same**: Quantus "
    "`perturb_baseline=0.0` on the normalised input is SAGE's `mean` baseline; AOPC = Σ/(L+1) "
    "(JSON `aopc`).",
    "deletion": "Deletion curve, 16 steps of s pixels. **Same**: Quantus PixelFlipping flips s "
    "input values per step (it requires s | H·W, so 3·s-value steps are impossible on RGB): its "
    "point 3j (j·s whole pixels, the channels of a pixel tie) is SAGE's point j; baseline 0.0 = "
    "SAGE's `mean`. Quantus evaluates 3× the points (in its time); SAGE's Deletion alone timed.",
    "callback": "no peer library has a training-time saliency callback. The ratio is the "
    "callback's own seconds (`val_sage/seconds`) over the rest of the same epoch (training + "
    "validation), both from one epoch of the run with the callback; the cross-run ratio "
    "(÷ an epoch of a second training without it) is at the mercy of load changes between "
    "the two trainings.",
}


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("torch", "torchvision", "grad-cam", "captum", "quantus", "numpy", "scipy"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = "missing"
    return out


def _machine(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        # the machine is shared: the load says how disturbed the absolute times are
        "load_average_1min": os.getloadavg()[0],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats, small sizes and grid")
    p.add_argument("--models", nargs="+", default=list(MODELS))
    p.add_argument("--only", nargs="+", choices=COMPARISONS, default=list(COMPARISONS))
    p.add_argument("--size", type=int, help="image side of the comparisons (224; quick 64)")
    p.add_argument("--batch", type=int, help="images per SAGE call (8; quick 4)")
    p.add_argument("--repeats", type=int, help="timed repeats per step (3; quick 2)")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per step first")
    p.add_argument("--min-time", type=float, default=0.05, help="min seconds per sample")
    p.add_argument(
        "--budget",
        type=float,
        help="seconds a group of steps may keep repeating past --repeats (2; quick 0.5)",
    )
    p.add_argument("--max-repeats", type=int, help="cap on those extra repeats (15; quick 5)")
    p.add_argument("--loop-images", type=int, help="images of the grad-cam loop (4; quick 2)")
    p.add_argument("--road-images", type=int, help="images of grad-cam ROAD/ARCC (2; quick 1)")
    p.add_argument("--ig-images", type=int, help="images of the IG comparison (2; quick 1)")
    p.add_argument("--ig-steps", type=int, help="IG steps (16; quick 4)")
    p.add_argument("--scaling-batches", type=int, nargs="+", help="(1 8 32; quick 1 4)")
    p.add_argument("--scaling-sizes", type=int, nargs="+", help="(64 128 224; quick 64)")
    p.add_argument("--scaling-loop-images", type=int, default=2)
    p.add_argument("--skip-scaling", action="store_true")
    p.add_argument("--epochs", type=int, help="training epochs per callback run (3; quick 2)")
    p.add_argument(
        "--skip-training",
        action="store_true",
        help="read outputs/benchmarks/callback_overhead.json instead of training",
    )
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    p.add_argument("--out", default=str(ROOT / "outputs" / "benchmarks"))
    args = p.parse_args(argv)
    full = {
        "size": 224,
        "batch": 8,
        "repeats": 3,
        "loop_images": 4,
        "road_images": 2,
        "ig_images": 2,
        "ig_steps": 16,
        "scaling_batches": [1, 8, 32],
        "scaling_sizes": [64, 128, 224],
        "epochs": 3,
        "budget": 2.0,
        "max_repeats": 15,
    }
    quick = {
        "size": 64,
        "batch": 4,
        "repeats": 2,
        "loop_images": 2,
        "road_images": 1,
        "ig_images": 1,
        "ig_steps": 4,
        "scaling_batches": [1, 4],
        "scaling_sizes": [64],
        "epochs": 2,
        "budget": 0.5,
        "max_repeats": 5,
    }
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def _log(msg: str, t0: float) -> None:
    print(f"[bench {time.perf_counter() - t0:7.1f}s] {msg}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    plan = Plan(args.repeats, args.warmup, args.min_time, args.budget, args.max_repeats, device)
    rows: list[Row] = []
    cells: list[dict[str, Any]] = []
    for name in args.models:
        _log(f"{name}: setting up (batch {args.batch}, {args.size}px)", t0)
        setup = make_setup(name, args.batch, args.size, device, plan)
        jobs = {
            "gradcam_pipeline": lambda s=setup: gradcam_pipeline.compare(s, args.loop_images),
            "road_arcc": lambda s=setup: road_arcc.compare(s, args.road_images),
            "quantus": lambda s=setup: quantus_localisation.compare(s),
            "ig": lambda s=setup: captum_ig.compare(s, args.ig_images, args.ig_steps),
            "catalogue": lambda s=setup: quantus_catalogue.compare(s),
        }
        for key in args.only:
            _log(f"{name}: {key}", t0)
            try:
                rows.extend(jobs[key]())
            except Exception as err:  # recorded in the report; the other comparisons still run
                traceback.print_exc()
                rows.append(failed_row(name, key, key, err))
        if not args.skip_scaling:
            _log(f"{name}: scaling {args.scaling_batches} x {args.scaling_sizes}", t0)
            try:
                cells += scaling.run(
                    name,
                    setup.model,
                    args.scaling_batches,
                    args.scaling_sizes,
                    args.scaling_loop_images,
                    plan,
                )
            except Exception as err:
                traceback.print_exc()
                cells.append({"model": name, "error": f"{type(err).__name__}: {err}"})
    _log("callback overhead" + (" (from file)" if args.skip_training else ": training"), t0)
    try:
        rows.append(
            callback.row(args.epochs, args.skip_training, Path(args.out) / "callback_overhead.json")
        )
    except Exception as err:
        traceback.print_exc()
        rows.append(failed_row("small_cnn", "callback", "callback", err))
    _log("done", t0)
    settings = {k: v for k, v in vars(args).items() if k not in ("out",)}
    return {
        "meta": {
            "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
            "machine": _machine(device),
            "versions": _versions(),
            "settings": settings,
            "data": "SynthDrivers synth-sf3d images (rendered in memory, seed 0) and their "
            "foreground masks; models with random weights (seed 0), 10 classes, BatchNorm "
            "statistics calibrated on 16 other SynthDrivers images (peers/common.py)",
            "seconds_total": time.perf_counter() - t0,
            "load_average_1min_end": os.getloadavg()[0],
        },
        "definitions": DEFINITIONS,
        "rows": [r.to_dict() for r in rows],
        "scaling": cells,
    }


# ------------------------------------------------------------------------------ markdown


def _ms(per_image: dict[str, float] | None) -> str:
    if not per_image:
        return "—"
    v = per_image["min"] * 1e3
    return f"{v:.3g}" if v < 100 else f"{v:.0f}"


def _ratio(r: dict[str, float] | None) -> str:
    if not r:
        return "—"

    def f(v: float) -> str:
        return f"{v:.2g}" if v < 0.1 else f"{v:.2f}" if v < 10 else f"{v:.0f}"

    return f"{f(r['min'])} ({f(r['median'])})"


def _gap(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return "0" if v == 0 else f"{v:.1e}" if v < 1e-2 or math.isinf(v) else f"{v:.3f}"


def _extras(extra: dict[str, float]) -> str:
    names = {
        "minmax_map": "min-max maps",
        "tokens_same_pdf": "tokens on same S̃",
        "coherency": "coherency",
        "complexity": "complexity",
        "raw_map_gap": "raw maps",
        "default_abs_gap": "Quantus default abs=True",
        "maps_with_tied_max": "tied maxima",
        "max_abs_map": "max |map|",
        "aopc": "AOPC",
    }
    parts = []
    for k, v in extra.items():
        text = (
            str(int(v))
            if k == "maps_with_tied_max"
            else f"{v:.3g}"
            if k == "max_abs_map"
            else _gap(v)
        )
        parts.append(f"{names.get(k, k)} {text}")
    return "; ".join(parts)


def markdown(result: dict[str, Any]) -> str:
    meta, s = result["meta"], result["meta"]["settings"]
    m, v = meta["machine"], meta["versions"]
    lines = [
        f"# SAGE vs peer libraries — {meta['date'][:10]}",
        "",
        f"Machine: {m['processor']}, {m['cpu_count']} CPUs visible, {m['torch_threads']} torch "
        f"threads, device {m['device']}{' (' + m['gpu'] + ')' if 'gpu' in m else ''}; "
        f"torch {v['torch']}, grad-cam {v['grad-cam']}, captum {v['captum']}, "
        f"quantus {v['quantus']}, numpy {v['numpy']}, scipy {v['scipy']}. "
        f"Load average (1 min) {m['load_average_1min']:.1f} at the start, "
        f"{meta['load_average_1min_end']:.1f} at the end. "
        f"Total {meta['seconds_total'] / 60:.1f} min{' (--quick)' if s['quick'] else ''}.",
        "",
        f"Data: {meta['data']}. Comparisons at {s['size']}×{s['size']} px, SAGE on batches of "
        f"{s['batch']} (IG: {s['ig_images']} images, {s['ig_steps']} steps); per-image peers on "
        f"the first images (grad-cam loop {s['loop_images']}, grad-cam ROAD/ARCC "
        f"{s['road_images']}). Steps timed interleaved after {s['warmup']} warm-up call(s), "
        f"{s['repeats']} repeats (cheap groups repeat up to {s['max_repeats']}× within "
        f"{s['budget']:g} s; millisecond steps summed over calls of ≥ {s['min_time']:g} s). "
        "Costs are per image, fastest repeat; ratios are "
        "fastest-repeat ratios with the ratio of medians in parentheses. fwd+bwd = the model's "
        "plain forward + backward of the target logits on the same batch (the floor of a "
        "gradient CAM).",
        "",
        "| model | comparison | peer | SAGE ms/img | peer ms/img | SAGE ÷ peer | SAGE ÷ fwd+bwd "
        "| peer ÷ fwd+bwd | agreement max abs Δ (n) | definitions | other gaps |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        label, peer = LABELS.get(row["key"], (row["title"], "?"))
        if "error" in row or "skipped" in row:
            status = "FAILED: " + row["error"] if "error" in row else "skipped: " + row["skipped"]
            lines.append(f"| {row['model']} | {label} | {peer} | {status} |||||||| ")
            continue
        ratios = row["ratios"]
        if row["key"] == "callback":
            d = row["direct"]
            lines.append(
                f"| {row['model']} | {label} | {peer} | {d['callback_s_per_epoch']['min']:.2f} "
                f"s/epoch | — | — | {_ratio(ratios['sage_over_floor'])} (÷ rest of the same "
                f"epoch, {d['rest_of_epoch_s']['min']:.2f} s) | — | — | — | "
                f"{row['setting']['source']}, {d['epochs']} epochs; cross-run ratio "
                f"{_ratio(d['cross_run_callback_over_epoch_off'])} |"
            )
            continue
        a = row["agreement"]
        lines.append(
            f"| {row['model']} | {label} | {peer} | {_ms(row['sage']['per_image_s'])} | "
            f"{_ms(row['peer']['per_image_s'])} | {_ratio(ratios['sage_over_peer'])} | "
            f"{_ratio(ratios['sage_over_floor'])} | {_ratio(ratios['peer_over_floor'])} | "
            f"{_gap(a['max_abs_diff'])} ({a['quantity']}, {a['n_images']}) | "
            f"{a['definitions']} | {_extras(a['extra'])} |"
        )
    lines += ["", "Definitions (what each agreement compares; the peers' source was read):", ""]
    keys = list(dict.fromkeys(r["key"] for r in result["rows"]))
    lines += [
        f"- **{LABELS.get(k, (k,))[0]}**: {result['definitions'][k]}"
        for k in keys
        if k in result["definitions"]
    ]
    if result["scaling"]:
        lines += [
            "",
            "## Scaling: GradCAM + fg/bg + tokens, cost per image",
            "",
            f"grad-cam loop on the first {s['scaling_loop_images']} images of each batch (its "
            "cost per image does not depend on the batch). ms/img fastest repeat; ratios "
            "fastest (median).",
            "",
            "| model | px | batch | fwd+bwd ms/img | SAGE ms/img | grad-cam loop ms/img | "
            "SAGE ÷ fwd+bwd | SAGE ÷ grad-cam loop |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in result["scaling"]:
            if "error" in c:
                lines.append(f"| {c['model']} | FAILED: {c['error']} |||||||")
                continue
            lines.append(
                f"| {c['model']} | {c['size']} | {c['batch']} | "
                f"{_ms(c['floor']['per_image_s'])} | {_ms(c['sage']['per_image_s'])} | "
                f"{_ms(c['peer']['per_image_s'])} | {_ratio(c['sage_over_floor'])} | "
                f"{_ratio(c['sage_over_peer'])} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    result = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "peer_suite.json").write_text(json.dumps(result, indent=2, default=float))
    text = markdown(result)
    (out / "peer_suite.md").write_text(text)
    print(text)
    failed = [r for r in result["rows"] if "error" in r] + [
        c for c in result["scaling"] if "error" in c
    ]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
