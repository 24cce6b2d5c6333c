"""Benchmark: what SAGE's saliency pipeline costs on top of the model's forward+backward.

For one batch on one model, measured in one run (ratios, not absolute times):

- floor: a plain forward + backward of the target logits (what grad-cam pays: it
  back-propagates to every parameter; SAGE stops at the target layer, so it can go below);
- grad-cam: pytorch-grad-cam's batched GradCAM (its own ReLU, min-max, OpenCV resize);
- sage: SAGE's GradCAM (raw maps, torch upsampling) + ReLU/PDF + min-max + fg/bg masses +
  tokens on the 4x4 and 8x8 grids;
- tokens: normalisation + tokenisation alone.

Usage: python benchmarks/saliency_overhead.py [--model resnet18] [--batch 16] [--size 224]
Writes outputs/benchmarks/saliency_overhead.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import torch
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from timing import timed

from sage.models import create_backbone, get_backbone_spec, resolve_layers
from sage.saliency.methods import create_method
from sage.saliency.normalize import normalize_batch
from sage.saliency.tokens import tokenize_grids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default="outputs/benchmarks")
    args = parser.parse_args()

    torch.manual_seed(0)
    model = create_backbone(args.model, 10).eval()
    images = torch.randn(args.batch, 3, args.size, args.size)
    masks = torch.zeros(args.batch, args.size, args.size, dtype=torch.bool)
    masks[:, args.size // 4 : 3 * args.size // 4, args.size // 4 : 3 * args.size // 4] = True
    with torch.no_grad():
        targets = model(images).argmax(1)
    layer = resolve_layers(model, get_backbone_spec(args.model).target_layers)

    def floor() -> None:
        model.zero_grad()
        logits = model(images)
        logits.gather(1, targets[:, None]).sum().backward()

    def gradcam_lib() -> None:
        with GradCAM(model, layer) as cam:
            cam(images, [ClassifierOutputTarget(int(t)) for t in targets])

    method = create_method("gradcam")

    def sage_full() -> None:
        maps = method(model, images, None)
        sb = normalize_batch(maps, masks)
        tokenize_grids(sb.pdf, masks)

    maps = method(model, images, None)

    def tokens_only() -> None:
        sb = normalize_batch(maps, masks)
        tokenize_grids(sb.pdf, masks)

    results = {}
    for name, fn in (
        ("floor", floor),
        ("grad-cam GradCAM", gradcam_lib),
        ("SAGE GradCAM+norm+fg/bg+tokens", sage_full),
        ("SAGE norm+fg/bg+tokens", tokens_only),
    ):
        times = timed(fn, args.repeats)
        results[name] = {"min_s": min(times), "median_s": statistics.median(times)}
    base = results["floor"]["min_s"]
    gradcam_s = results["SAGE GradCAM+norm+fg/bg+tokens"]["min_s"]
    for r in results.values():
        r["ratio_to_floor_min"] = r["min_s"] / base
    results["SAGE norm+fg/bg+tokens"]["share_of_sage_gradcam"] = (
        results["SAGE norm+fg/bg+tokens"]["min_s"] / gradcam_s
    )
    meta = {
        "model": args.model,
        "batch": args.batch,
        "size": args.size,
        "repeats": args.repeats,
        "threads": torch.get_num_threads(),
        "device": "cpu",
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "saliency_overhead.json").write_text(
        json.dumps({"meta": meta, "results": results}, indent=2)
    )
    lines = [
        f"# Saliency overhead: {args.model}, batch {args.batch}, {args.size}px, "
        f"{meta['threads']} threads",
        "",
        "| step | min s | median s | × floor (min) |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {v['min_s']:.4f} | {v['median_s']:.4f} | {v['ratio_to_floor_min']:.3f} |"
        for k, v in results.items()
    ]
    lines += [
        "",
        "tokenisation share of the SAGE GradCAM pipeline: "
        f"{results['SAGE norm+fg/bg+tokens']['share_of_sage_gradcam']:.1%}",
    ]
    (out / "saliency_overhead.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
