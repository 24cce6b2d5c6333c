"""Localisation metrics: SAGE's alignment functions vs Quantus 0.6 on the same maps and masks.

Both sides get the whole batch at once (Quantus is vectorised in numpy over the batch, SAGE in
torch): SAGE's GradCAM maps and the SynthDrivers foreground masks. Quantus gets numpy views of
the tensors (zero-copy on the CPU), prepared before timing.

Definitions, read from quantus 0.6.0 ``metrics/localisation/*.py`` (``evaluate_batch``) and
``metrics/base.py`` (``general_preprocess``: ``normalise_by_max`` — one max |a| over the
*whole batch* — then ``abs`` if set, before the metric):

- PointingGame: hit if *any* pixel tied at the map's maximum lies in the mask
  (``a == a.max()``); SAGE's :func:`~sage.metrics.alignment.pointing_game` takes the first
  argmax (row-major). Equal unless the maximum is tied across the mask boundary. (Quantus
  writes NaN for an empty mask into a bool array, which stores True; SAGE scores 0.)
- RelevanceMassAccuracy: ``Σ(a⊙m)/Σa`` on the attribution as given (signed; no clipping);
  SAGE's :func:`~sage.metrics.alignment.saliency_precision` is ``Σ(s⊙m)/Σs`` on the min-max
  map ``s``. Matched: Quantus is given SAGE's min-max map; on the raw signed map the two differ
  by definition (the gap is reported).
- AttributionLocalisation: ``Σ(a⁺⊙m)/(Σa⁺ + 1e-9)``, ``a⁺ = |a|`` by default (``abs=True``) or
  ``ReLU(a)`` with ``abs=False, positive_attributions=True``; NaN where the ratio exceeds 1.
  SAGE's A_fg (:func:`~sage.saliency.normalize.relu_pdf` +
  :func:`~sage.saliency.normalize.fg_bg_mass`) is ``Σ ReLU(S)⊙m / Σ ReLU(S)``. Matched:
  ``abs=False, positive_attributions=True``; the default ``abs=True`` gap is reported.
  (``weighted=True`` is left out: it multiplies by ``|m| / x_batch[2:].size``, the size of all
  but the first two *images* of the batch, not of one image.)
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import quantus

from sage.metrics.alignment import pointing_game, saliency_precision
from sage.saliency.normalize import fg_bg_mass, minmax, relu_pdf

from .common import Agreement, Row, Setup, floor_step, max_abs_diff

TITLES = {
    "pointing_game": "pointing game (SAGE pointing_game vs Quantus PointingGame)",
    "relevance_mass": "relevance mass (SAGE saliency_precision vs Quantus RelevanceMassAccuracy)",
    "attribution_localisation": "attribution localisation (SAGE A_fg vs Quantus "
    "AttributionLocalisation)",
}


def compare(setup: Setup) -> list[Row]:
    s = setup
    maps, masks = s.maps, s.masks
    scaled = minmax(maps)[0]
    x_np = s.images.detach().cpu().numpy()
    y_np = s.targets.cpu().numpy()
    a_raw = maps.detach().cpu().numpy()
    a_scaled = scaled.cpu().numpy()
    s_np = masks[:, None].cpu().numpy()
    # Quantus options that match SAGE's definitions (module docstring); Quantus prints its
    # parameterisation advice at construction, which would clutter the report on stdout
    with contextlib.redirect_stdout(io.StringIO()):
        q_pg = quantus.PointingGame(disable_warnings=True)
        q_rma = quantus.RelevanceMassAccuracy(disable_warnings=True)
        q_al = quantus.AttributionLocalisation(
            abs=False, positive_attributions=True, disable_warnings=True
        )
        al_abs = quantus.AttributionLocalisation(disable_warnings=True)  # default abs=True
    out: dict[str, object] = {}

    def q(metric, a_batch) -> np.ndarray:
        """Per-image scores of one Quantus metric (its own warnings silenced)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scores = metric(
                model=s.model,
                x_batch=x_np,
                y_batch=y_np,
                a_batch=a_batch,
                s_batch=s_np,
                channel_first=True,
            )
        return np.asarray(scores, dtype=np.float64)

    def sage_al() -> None:
        pdf, _ = relu_pdf(maps)
        out["a_fg"] = fg_bg_mass(pdf, masks)[0]

    steps = {
        "floor": (floor_step(s.model, s.images, s.targets), s.batch),
        "sage_pg": (lambda: pointing_game(maps, masks), s.batch),
        "peer_pg": (lambda: q(q_pg, a_raw), s.batch),
        "sage_rm": (lambda: saliency_precision(maps, masks), s.batch),
        "peer_rm": (lambda: q(q_rma, a_scaled), s.batch),
        "sage_al": (sage_al, s.batch),
        "peer_al": (lambda: q(q_al, a_raw), s.batch),
    }
    t = s.plan.time(steps)

    pg = pointing_game(maps, masks).cpu().numpy()
    prec = saliency_precision(maps, masks).cpu().numpy()
    a_fg = out["a_fg"].cpu().numpy()
    rm_raw_gap = max_abs_diff(prec, q(q_rma, a_raw))
    al_abs_gap = max_abs_diff(a_fg, q(al_abs, a_raw))
    # how many maps have their maximum tied over several pixels (where the PG rules can differ)
    flat = a_raw.reshape(s.batch, -1)
    tied = int(((flat == flat.max(1, keepdims=True)).sum(1) > 1).sum())
    setting = {"batch": s.batch, "size": s.size, "peer_images": s.batch}
    rows = [
        Row(
            s.name,
            "pointing_game",
            TITLES["pointing_game"],
            t["sage_pg"],
            t["peer_pg"],
            t["floor"],
            Agreement(
                quantity="hit (0/1)",
                max_abs_diff=max_abs_diff(pg, q(q_pg, a_raw)),
                n_images=s.batch,
                definitions="same but ties",
                note="Quantus: hit if any pixel tied at the max is in the mask; SAGE: the first "
                f"argmax (row-major). {tied} of {s.batch} maps have a tied maximum.",
                extra={"maps_with_tied_max": tied},
            ),
            setting,
        ),
        Row(
            s.name,
            "relevance_mass",
            TITLES["relevance_mass"],
            t["sage_rm"],
            t["peer_rm"],
            t["floor"],
            Agreement(
                quantity="Σ(s⊙m)/Σs",
                max_abs_diff=max_abs_diff(prec, q(q_rma, a_scaled)),
                n_images=s.batch,
                definitions="matched",
                note="Quantus given SAGE's min-max map. On the raw signed map Quantus sums "
                f"signed values, SAGE min-max scales first: gap {rm_raw_gap:.3g}.",
                extra={"raw_map_gap": rm_raw_gap},
            ),
            setting,
        ),
        Row(
            s.name,
            "attribution_localisation",
            TITLES["attribution_localisation"],
            t["sage_al"],
            t["peer_al"],
            t["floor"],
            Agreement(
                quantity="A_fg",
                max_abs_diff=max_abs_diff(a_fg, q(q_al, a_raw)),
                n_images=s.batch,
                definitions="matched",
                note="Quantus abs=False, positive_attributions=True (ReLU, + 1e-9); its default "
                f"abs=True counts |negative| attribution as relevance: gap {al_abs_gap:.3g}.",
                extra={"default_abs_gap": al_abs_gap},
            ),
            setting,
        ),
    ]
    return rows
