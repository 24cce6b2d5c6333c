"""The study's findings: comparisons with 95 % intervals, worded by their intervals.

Each finding is one difference (full- vs seg-trained model, a model on cue-intact vs
cue-shuffled images, ...) computed from per-image evidence (:mod:`.evidence`,
:mod:`.quantities`). With one training seed its interval is a bootstrap over test images;
with several (``study.seeds``) it is the t interval of the per-seed values. A finding names a
direction only when its interval excludes 0, otherwise it says "no clear difference" with
the interval (:mod:`sage.stats.wording`). The first domain with a spurious cue gives the
3–5 headline findings the report opens with.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..stats import Interval, compare_phrase, seed_interval
from .evidence import SeedEvidence
from .quantities import (
    STICKER,
    Comparison,
    Domain,
    accuracy_gap,
    model_quantities,
    rfs_gap,
    saliency_gap,
    shortcut_drop,
    shortcut_gap,
)

OTHERS = ("seg", "bboxseg")  # compared with the full-trained model, as the SAGE paper does


@dataclass
class Finding:
    """One stated difference: ``diff`` = ``a`` − ``b`` with intervals; ``text`` says it."""

    key: str
    domain: str
    text: str
    diff: Interval | None
    a: Interval | None = None
    b: Interval | None = None
    labels: tuple[str, str] = ("", "")
    figure: str | None = None  # a file name in the report's figures, set by the report

    @property
    def direction(self) -> int:
        """+1 / −1 where the interval of ``diff`` excludes 0, else 0."""
        return self.diff.sign if self.diff is not None else 0

    def as_dict(self) -> dict[str, Any]:
        out = {"key": self.key, "domain": self.domain, "text": self.text}
        out["direction"] = self.direction
        for name in ("diff", "a", "b"):
            value = getattr(self, name)
            out[name] = value.as_dict() if value is not None else None
        out["labels"] = list(self.labels)
        return out


def combine(per_seed: Sequence[Comparison]) -> Comparison:
    """One seed: its bootstrap intervals; several: mean ± t interval over the seeds."""
    if len(per_seed) == 1:
        return per_seed[0]
    return Comparison(
        *(seed_interval([getattr(c, k).value for c in per_seed]) for k in ("diff", "a", "b"))
    )


@dataclass
class _Spec:
    """How to compute one finding on each seed's evidence and how to say it."""

    key: str
    compute: Callable[[SeedEvidence], Comparison]
    sentence: Callable[[Comparison], str]
    labels: tuple[str, str]
    domain: str


def _pair_spec(
    d: Domain,
    o: str,
    key: str,
    compute: Callable[[SeedEvidence], Comparison],
    lead: str,
    words: tuple[str, str],
    digits: int = 2,
    suffix: str = "",
) -> _Spec:
    """A full- vs ``o``-trained finding, key ``<key>/<domain>/full-vs-<o><suffix>``, said as
    ``"<lead>: a vs b; <phrase>."``."""

    def sentence(c: Comparison) -> str:
        phrase = compare_phrase(c.diff, *words, digits=digits)
        return f"{lead}: {c.a.text(digits)} vs {c.b.text(digits)}; {phrase}."

    return _Spec(f"{key}/{d.name}/full-vs-{o}{suffix}", compute, sentence, ("full", o), d.name)


def _specs(d: Domain, variants: set[str]) -> list[_Spec]:
    """The findings of domain ``d`` (the models trained on its variants ``variants``)."""
    specs: list[_Spec] = []
    others = [o for o in OTHERS if o in variants]
    if "full" not in variants:
        return specs
    if d.twin:
        for v in ["full", *others]:

            def sentence(c: Comparison, v=v) -> str:
                phrase = compare_phrase(c.diff, "it drops by", "it rises by", "no clear change")
                return (
                    f"{d.name}: shuffling the sticker colours (same scenes, full images) moves "
                    f"the {v}-trained model's accuracy from {c.a.text()} to {c.b.text()}: "
                    f"{phrase}."
                )

            specs.append(
                _Spec(
                    f"shortcut/{d.name}/{v}",
                    lambda ev, v=v: shortcut_drop(ev, d, v),
                    sentence,
                    ("sticker as generated", "sticker shuffled"),
                    d.name,
                )
            )
    for o in others:
        pair = ("full", o)
        who = f"full- vs {o}-trained model"
        higher = ("the full-trained model's is higher by", f"the {o}-trained model's is higher by")
        if d.twin:
            specs.append(
                _pair_spec(
                    d,
                    o,
                    "shortcut_gap",
                    lambda ev, pair=pair: shortcut_gap(ev, d, pair),
                    f"{d.name}: accuracy lost to the sticker shuffle, {who}",
                    (
                        "the full-trained model loses more, by",
                        f"the {o}-trained model loses more, by",
                    ),
                )
            )
            specs.append(
                _pair_spec(
                    d,
                    o,
                    "sticker",
                    lambda ev, pair=pair: saliency_gap(ev, d, pair, STICKER, "full"),
                    f"{d.name}: share of GradCAM saliency on the spurious sticker "
                    f"({STICKER}, both on full test images), {who}",
                    (
                        "the full-trained model puts more there, by",
                        f"the {o}-trained model puts more there, by",
                    ),
                    digits=3,
                )
            )
        for where, suffix, said in (
            ("own", "own_variant", "each on its own variant"),
            ("full", "full_images", "both on full images"),
        ):
            specs.append(
                _pair_spec(
                    d,
                    o,
                    "bg_mass",
                    lambda ev, pair=pair, where=where: saliency_gap(ev, d, pair, "bg_mass", where),
                    f"{d.name}: share of GradCAM saliency outside the driver "
                    f"(bg_mass, {said}), {who}",
                    (
                        "the full-trained model puts more on the background, by",
                        f"the {o}-trained model puts more on the background, by",
                    ),
                    suffix=f"/{suffix}",
                )
            )
        if d.target:
            targets = (f"{d.target}/full", f"{d.target}/{o}")
            specs.append(
                _pair_spec(
                    d,
                    o,
                    "transfer",
                    lambda ev, pair=pair, targets=targets: accuracy_gap(ev, d, pair, targets),
                    f"{d.name} → {d.target}: accuracy on the other domain, full-trained model "
                    f"on full images vs {o}-trained model on {o} images",
                    higher,
                )
            )
        own = (f"{d.name}/full", f"{d.name}/{o}")
        specs.append(
            _pair_spec(
                d,
                o,
                "in_domain",
                lambda ev, pair=pair, own=own: accuracy_gap(ev, d, pair, own),
                f"{d.name}: in-domain test accuracy (each on its own variant), {who}",
                higher,
            )
        )
        specs.append(
            _pair_spec(
                d,
                o,
                "rfs",
                lambda ev, pair=pair: rfs_gap(ev, d, pair),
                f"{d.name}: RFS (rfs/rfs; > 0: hurt more by noise on the driver than on the "
                f"background), {who}",
                higher,
            )
        )
    return specs


# The headline questions, answered by the first cue domain's findings (full vs compare[1]).
_HEADLINES = (
    ("Does the full-trained model depend on the spurious sticker?", "shortcut/{d}/full"),
    ("Does training on {o} images remove that dependence?", "shortcut_gap/{d}/full-vs-{o}"),
    ("Does the saliency show the shortcut?", "sticker/{d}/full-vs-{o}"),
    ("Where does each model look on its own images?", "bg_mass/{d}/full-vs-{o}/own_variant"),
    ("Which transfers better to the other domain?", "transfer/{d}/full-vs-{o}"),
)


def headlines(findings: Sequence[Finding], domains: Sequence[Domain], other: str) -> list[dict]:
    """3–5 headline findings: ``{"title", "text", "key"}``, in the order of the questions."""
    by_key = {f.key: f for f in findings}
    first = next((d for d in domains if d.twin), domains[0] if domains else None)
    if first is None:
        return []
    out = []
    for title, key in _HEADLINES:
        found = by_key.get(key.format(d=first.name, o=other))
        if found is not None:
            out.append({"title": title.format(o=other), "text": found.text, "key": found.key})
    return out


def _models_table(
    evidence: Sequence[SeedEvidence], domains: Sequence[Domain]
) -> tuple[pd.DataFrame, dict[tuple[str, str], Interval]]:
    """One row per model: values (combined over seeds) and their intervals."""
    rows, intervals = [], {}
    variants = sorted({v for ev in evidence for (_, v) in ev.runs}, key=_variant_order)
    for d in domains:
        for v in variants:
            label = f"{d.name}/{v}"
            per_seed = [model_quantities(ev, d, v) for ev in evidence if (d.name, v) in ev.runs]
            if not per_seed:
                continue
            row: dict[str, Any] = {"trained_on": label, "domain": d.name, "variant": v}
            for column in dict.fromkeys(c for q in per_seed for c in q):
                found = [q[column] for q in per_seed if column in q]
                value = found[0] if len(found) == 1 else seed_interval([i.value for i in found])
                intervals[(label, column)] = value
                row[column] = value.value
            last = evidence[0].train_metrics.get(label, {})
            row |= {k: v for k, v in last.items() if math.isfinite(v)}
            row["run_id"] = evidence[0].runs.get((d.name, v), "")
            rows.append(row)
    return pd.DataFrame(rows), intervals


def _variant_order(v: str) -> int:
    order = ["full", "bbox", "seg", "bboxseg"]
    return order.index(v) if v in order else len(order)


def collect_findings(
    evidence: Sequence[SeedEvidence],
    domains: Sequence[Domain],
    *,
    compare: Sequence[str] = ("full", "seg"),
    divergence: dict | None = None,
) -> dict[str, Any]:
    """Models table, findings, headlines and scalars of the study (see module docstring)."""
    models, intervals = _models_table(evidence, domains)
    findings: list[Finding] = []
    for d in domains:
        variants = {v for ev in evidence for (name, v) in ev.runs if name == d.name}
        for spec in _specs(d, variants):
            comparison = combine([spec.compute(ev) for ev in evidence])
            if comparison.diff.n == 0:  # evidence missing (a step skipped): nothing to say
                continue
            findings.append(
                Finding(
                    spec.key,
                    spec.domain,
                    spec.sentence(comparison),
                    comparison.diff,
                    comparison.a,
                    comparison.b,
                    spec.labels,
                )
            )
    verdict = None
    if isinstance(divergence, dict):
        verdict = divergence.get("verdict") or divergence.get("error")
        if divergence.get("verdict"):
            findings.append(
                Finding(
                    "divergence",
                    domains[0].name if domains else "",
                    f"divergence ({' vs '.join(compare)}): {verdict}",
                    divergence_rho(divergence.get("output_dir")),
                )
            )
    other = compare[1] if len(compare) > 1 else "seg"
    scalars = {}
    for (label, column), value in intervals.items():
        if math.isfinite(value.value):
            scalars[f"study/{label}/{column}"] = float(value.value)
    for f in findings:
        if f.diff is not None and f.diff.finite:
            scalars[f"study/finding/{f.key}/diff"] = f.diff.value
    return {
        "models": models,
        "intervals": intervals,
        "findings": findings,
        "headlines": headlines(findings, domains, other),
        "lines": [f.text for f in findings],
        "verdict": verdict,
        "divergence": divergence,
        "seeds": [ev.seed for ev in evidence],
        "scalars": scalars,
    }


def divergence_rho(output_dir: str | None) -> Interval | None:
    """Spearman ρ between the two models' prediction and map divergences (the verdict's
    number, GradCAM) with its bootstrap interval, from the analysis' correlations.csv."""
    path = Path(output_dir or "") / "correlations.csv"
    if not output_dir or not path.is_file():
        return None
    table = pd.read_csv(path)
    row = table[(table["behaviour"] == "js_pred") & (table["measure"] == "js_map")]
    if row.empty:
        return None
    r = row.iloc[0]
    return Interval(
        float(r.spearman), float(r.spearman_lo), float(r.spearman_hi), int(r.n), "bootstrap"
    )


def write_findings_json(findings: dict[str, Any], path: Path) -> Path:
    """``findings.json``: every finding with its intervals and direction, the models' numbers
    with theirs: what ``python -m sage.study.compare`` reads to compare two runs."""
    models = {
        f"{label}|{column}": value.as_dict()
        for (label, column), value in findings["intervals"].items()
    }
    data = {
        "seeds": findings["seeds"],
        "headlines": findings["headlines"],
        "findings": [f.as_dict() for f in findings["findings"]],
        "models": models,
    }
    path.write_text(json.dumps(data, indent=2, default=_json_default))
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
