"""Command line: ``python -m sage.data.synth --domain synth-sf3d --out outputs/data/raw``.

Generates (or finds cached) SynthDrivers datasets and prints each root and its counts.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence

from .generate import DOMAINS, MANIFEST, SynthConfig, generate


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, generate the requested domain(s) and print where they are."""
    defaults = SynthConfig()
    p = argparse.ArgumentParser(
        prog="python -m sage.data.synth",
        description=(
            "Generate SynthDrivers datasets in the raw SF3D / 100-Driver layouts, with "
            "foreground masks in ROOT_masks/ and part labels in ROOT_parts/. Cached: an "
            "existing dataset with the same settings is reused unless --force is given."
        ),
    )
    p.add_argument(
        "--domain", choices=[*DOMAINS, "all"], default=defaults.domain, help="domain to write"
    )
    p.add_argument(
        "--out", required=True, help="parent directory; the dataset goes to OUT/<domain>"
    )
    p.add_argument(
        "--images-per-class",
        type=int,
        default=defaults.images_per_class,
        help="images per mapped class (unmapped 100-Driver classes get a quarter)",
    )
    p.add_argument(
        "--size",
        type=int,
        nargs="+",
        metavar="PX",
        default=[defaults.size],
        help="image side in pixels, or WIDTH HEIGHT (e.g. 640 480, the size of real SF3D)",
    )
    p.add_argument(
        "--p-spurious",
        type=float,
        default=defaults.p_spurious,
        help="P(sticker colour = class colour) in synth-sf3d; synth-driver100 ignores it",
    )
    p.add_argument("--n-subjects", type=int, default=defaults.n_subjects, help="synthetic drivers")
    p.add_argument("--seed", type=int, default=defaults.seed, help="base random seed")
    p.add_argument("--force", action="store_true", help="regenerate even if cached")
    p.add_argument("--workers", type=int, default=1, help="rendering processes (same bytes)")
    args = p.parse_args(argv)
    if len(args.size) > 2:
        p.error("--size takes one value (square) or two (WIDTH HEIGHT)")
    size = args.size[0] if len(args.size) == 1 else tuple(args.size)

    domains = DOMAINS if args.domain == "all" else (args.domain,)
    for domain in domains:
        cfg = SynthConfig(
            domain=domain,
            images_per_class=args.images_per_class,
            size=size,
            p_spurious=args.p_spurious,
            n_subjects=args.n_subjects,
            seed=args.seed,
        )
        t0 = time.perf_counter()
        root = generate(args.out, cfg, force=args.force, workers=args.workers)
        dt = time.perf_counter() - t0
        manifest = json.loads((root / MANIFEST).read_text())
        print(f"{root}  ({manifest['n_images']} images, {dt:.1f} s)")
        for cls, n in manifest["counts"].items():
            print(f"  {cls:26s} {n}")
        if manifest.get("n_unlabelled"):
            print(f"  {'(unlabelled test)':26s} {manifest['n_unlabelled']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
