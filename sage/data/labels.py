"""Declarative label unification: source labels -> an ordered unified class list.

A mapping is a JSON file, shipped in ``sage/data/mappings/`` or anywhere on disk::

    {"name": "100-driver-sf3d-nc10",
     "source": "driver100",                       # optional: the vocabulary it maps from
     "unified": {"c0": "Normal Driving", ...},    # ordered: position = integer label
     "forward": {"C1_Drive_Safe": "c0", ...},     # source label -> unified code
     "drop": "unmapped"}                          # optional; or "error"

``forward`` may be many-to-one (a merged class); the reverse mapping (unified code -> its
source labels) is derived for provenance. Source labels absent from ``forward`` are
*unmapped*: with ``drop: "unmapped"`` their rows are dropped and counted per label, with
``drop: "error"`` their presence is an error. An optional ``"description"`` string is
allowed for humans.

Errors (:class:`MappingError`, a ``ValueError``) name the culprit: an unknown source label,
a source label or unified code listed twice (duplicate JSON keys are detected while
parsing), a target that is not a declared unified class, a unified class that receives no
source label, a missing or unexpected key, a file that does not exist.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

SHIPPED_DIR = Path(__file__).parent / "mappings"
DROP_POLICIES: tuple[str, ...] = ("unmapped", "error")
_REQUIRED_KEYS: tuple[str, ...] = ("name", "unified", "forward")
_OPTIONAL_KEYS: tuple[str, ...] = ("drop", "source", "description")


class MappingError(ValueError):
    """A label mapping is malformed or does not fit the data it is applied to."""


@dataclass(frozen=True)
class LabelMapping:
    """A source -> unified label mapping with balancing weights for merged classes.

    ``unified`` is ordered: the position of a code in it is the integer ``label``.
    Construction checks the mapping against itself (every target declared, every unified
    class fed); :meth:`validate` checks it against a source vocabulary.
    """

    name: str
    unified: dict[str, str]
    forward: dict[str, str]
    drop: str = "unmapped"
    source: str | None = None

    def __hash__(self) -> int:
        # The generated hash would fail on the dict fields; hash their frozen contents.
        return hash(
            (self.name, tuple(self.unified.items()), tuple(self.forward.items()), self.drop)
        )

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise MappingError(f"mapping name must be a non-empty string, got {self.name!r}")
        for key in ("unified", "forward"):
            value = getattr(self, key)
            if not isinstance(value, dict) or not value:
                raise MappingError(f"mapping {self.name!r}: {key!r} must be a non-empty object")
            for k, v in value.items():
                if not isinstance(k, str) or not isinstance(v, str) or not k or not v:
                    raise MappingError(
                        f"mapping {self.name!r}: {key!r} must map non-empty strings to "
                        f"non-empty strings, got {k!r}: {v!r}"
                    )
            # Own copies: a frozen mapping must not change under the caller's feet.
            object.__setattr__(self, key, dict(value))
        if self.drop not in DROP_POLICIES:
            raise MappingError(
                f"mapping {self.name!r}: drop must be one of {list(DROP_POLICIES)}, "
                f"got {self.drop!r}"
            )
        if self.source is not None and not isinstance(self.source, str):
            raise MappingError(f"mapping {self.name!r}: source must be a string")
        for src, code in self.forward.items():
            if code not in self.unified:
                raise MappingError(
                    f"mapping {self.name!r} maps source label {src!r} to undeclared unified "
                    f"class {code!r} (declared: {list(self.unified)})"
                )
        empty = [code for code, members in self.reverse.items() if not members]
        if empty:
            raise MappingError(
                f"mapping {self.name!r}: unified class {empty[0]!r} receives no source label"
                + (f" (nor do {empty[1:]})" if len(empty) > 1 else "")
            )

    @property
    def reverse(self) -> dict[str, list[str]]:
        """Unified code -> the source labels merged into it, in ``forward`` order."""
        out: dict[str, list[str]] = {code: [] for code in self.unified}
        for src, code in self.forward.items():
            out[code].append(src)
        return out

    @property
    def classes(self) -> list[str]:
        """Ordered unified codes; ``classes[label]`` is the code of integer ``label``."""
        return list(self.unified)

    @property
    def class_names(self) -> list[str]:
        """Human-readable names in the order of :attr:`classes`."""
        return list(self.unified.values())

    def validate(self, source_labels: Iterable[str] | None = None) -> None:
        """Check that every source label in ``forward`` exists in the vocabulary.

        Without ``source_labels``, the vocabulary of the reader named by ``source`` is
        used (``sf3d``, ``driver100``; ``generic`` needs the labels passed explicitly).
        Source labels of the vocabulary that the mapping leaves out are fine: they are
        the unmapped ones, counted by :meth:`apply`.
        """
        if source_labels is None:
            source_labels = _reader_vocabulary(self.name, self.source)
        vocab = set(source_labels)
        unknown = [s for s in self.forward if s not in vocab]
        if unknown:
            listed = ", ".join(repr(s) for s in unknown)
            plural = "s" if len(unknown) > 1 else ""
            raise MappingError(
                f"mapping {self.name!r} names unknown source label{plural} {listed} "
                f"(vocabulary: {sorted(vocab)})"
            )

    def weights(self, counts: dict[str, int]) -> dict[str, float]:
        """Per-source-label balancing weights from image counts ``n_s``.

        For a unified class ``u`` fed by the ``k`` source labels present in ``counts``
        (``n_s > 0``), every image of source label ``s`` gets::

            w_s = mean_{s' in u}(n_s') / (k * n_s)

        so each constituent's total weight is ``n_s * w_s = mean / k`` (an equal share) and
        the merged class weighs ``mean_{s'}(n_s')`` in total, the size of an average
        constituent, rather than the sum that would let a merge dominate. A class with a
        single present constituent (every unmerged class) gets weight exactly 1.
        """
        out: dict[str, float] = {}
        for members in self.reverse.values():
            present = [s for s in members if counts.get(s, 0) > 0]
            if len(present) == 1:
                out[present[0]] = 1.0
                continue
            k = len(present)
            mean = sum(counts[s] for s in present) / k if k else 0.0
            for s in present:
                out[s] = mean / (k * counts[s])
        return out

    def apply(self, df: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
        """Map ``df["source_label"]`` to unified classes, dropping unmapped rows.

        Returns a copy of the kept rows (index reset) with ``label`` (int index into
        :attr:`classes`), ``label_name`` (unified code) and ``weight`` (see
        :meth:`weights`; counts are taken on ``df``), and a stats dict:
        ``{"mapping", "kept", "dropped", "unmapped": {source_label: count},
        "per_class": {code: count}, "weights": {source_label: weight}}``.
        Every unmapped source label present in ``df`` appears in ``unmapped``.
        """
        if "source_label" not in df.columns:
            raise MappingError(
                f"mapping {self.name!r}: the frame has no 'source_label' column "
                f"(columns: {list(df.columns)})"
            )
        src = df["source_label"]
        mapped = src.isin(list(self.forward))
        unmapped = {str(k): int(v) for k, v in src[~mapped].value_counts(dropna=False).items()}
        unmapped = dict(sorted(unmapped.items()))
        if unmapped and self.drop == "error":
            raise MappingError(
                f"mapping {self.name!r} (drop='error') does not map source labels {unmapped}"
            )
        counts = {str(k): int(v) for k, v in src[mapped].value_counts().items()}
        weights = self.weights(counts)
        index = {code: i for i, code in enumerate(self.classes)}
        out = df.loc[mapped].copy().reset_index(drop=True)
        codes = out["source_label"].map(self.forward)
        out["label"] = codes.map(index).astype("int64")
        out["label_name"] = codes.astype(object)
        out["weight"] = out["source_label"].map(weights).astype("float64")
        per_class = {code: int((codes == code).sum()) for code in self.classes}
        stats: dict[str, Any] = {
            "mapping": self.name,
            "kept": len(out),
            "dropped": len(df) - len(out),
            "unmapped": unmapped,
            "per_class": per_class,
            "weights": weights,
        }
        return out, stats

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form including the derived reverse mapping (provenance)."""
        return {
            "name": self.name,
            "source": self.source,
            "unified": dict(self.unified),
            "forward": dict(self.forward),
            "drop": self.drop,
            "reverse": self.reverse,
        }


class _Obj(dict):
    """A JSON object that remembers the keys it saw more than once."""

    duplicates: list[str]


def _pairs_hook(pairs: list[tuple[str, Any]]) -> _Obj:
    obj = _Obj()
    obj.duplicates = []
    for key, value in pairs:
        if key in obj:
            obj.duplicates.append(key)
        obj[key] = value
    return obj


def _reader_vocabulary(name: str, source: str | None) -> list[str]:
    from sage.data.readers import VOCABULARIES  # local: labels must not need readers to load

    if source is None:
        raise MappingError(
            f"mapping {name!r} declares no 'source': pass the source labels to validate"
        )
    if source not in VOCABULARIES:
        raise MappingError(
            f"mapping {name!r} declares unknown source {source!r} (known: {sorted(VOCABULARIES)})"
        )
    if source == "generic":
        raise MappingError(
            f"mapping {name!r} maps generic class folders: pass their names to validate"
        )
    return VOCABULARIES[source]()


def mapping_from_dict(data: Any, origin: str = "<dict>") -> LabelMapping:
    """Build a :class:`LabelMapping` from parsed JSON, checking keys and duplicates."""
    if not isinstance(data, dict):
        raise MappingError(f"mapping {origin}: expected a JSON object, got {type(data).__name__}")
    label = repr(data["name"]) if isinstance(data.get("name"), str) else origin
    where = f"mapping {label} ({origin})" if origin != "<dict>" else f"mapping {label}"
    if getattr(data, "duplicates", None):
        raise MappingError(f"{where}: key {data.duplicates[0]!r} appears twice")
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        raise MappingError(f"{where}: missing key(s) {missing} (required: {list(_REQUIRED_KEYS)})")
    extra = [k for k in data if k not in _REQUIRED_KEYS + _OPTIONAL_KEYS]
    if extra:
        raise MappingError(
            f"{where}: unexpected key(s) {extra} (allowed: {list(_REQUIRED_KEYS + _OPTIONAL_KEYS)})"
        )
    for key in ("unified", "forward"):
        if not isinstance(data[key], dict):
            raise MappingError(f"{where}: {key!r} must be a JSON object")
    dup_codes = getattr(data["unified"], "duplicates", None)
    if dup_codes:
        raise MappingError(f"{where} declares unified class {dup_codes[0]!r} twice")
    dup_sources = getattr(data["forward"], "duplicates", None)
    if dup_sources:
        raise MappingError(f"{where} maps source label {dup_sources[0]!r} twice")
    if "description" in data and not isinstance(data["description"], str):
        raise MappingError(f"{where}: 'description' must be a string")
    return LabelMapping(
        name=data["name"],
        unified=dict(data["unified"]),
        forward=dict(data["forward"]),
        drop=data.get("drop", "unmapped"),
        source=data.get("source"),
    )


def list_mappings() -> list[str]:
    """Names (file stems) of the mappings shipped in ``sage/data/mappings/``."""
    return sorted(p.stem for p in SHIPPED_DIR.glob("*.json"))


def _resolve(name_or_path: str | os.PathLike[str]) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    text = os.fspath(name_or_path)
    stem = text[:-5] if text.endswith(".json") else text
    shipped = SHIPPED_DIR / f"{stem}.json"
    if os.sep not in text and "/" not in text and shipped.is_file():
        return shipped
    # Also accept a shipped mapping's "name" field ("100-driver-sf3d-nc10").
    for candidate in sorted(SHIPPED_DIR.glob("*.json")):
        try:
            with open(candidate, encoding="utf-8") as fh:
                if json.load(fh).get("name") == text:
                    return candidate
        except (OSError, ValueError, AttributeError):
            continue
    raise MappingError(
        f"label mapping {text!r} not found: not an existing file and not a shipped mapping "
        f"(shipped: {list_mappings()})"
    )


def load_mapping(name_or_path: str | os.PathLike[str], validate: bool = True) -> LabelMapping:
    """Load a shipped mapping by name (``"driver100_to_sf3d_nc10"``) or a JSON file by path.

    With ``validate`` (default) a mapping that declares its ``source`` vocabulary
    (``sf3d``, ``driver100``) is checked against it; others are validated by the caller.
    """
    path = _resolve(name_or_path)
    try:
        with open(path, encoding="utf-8-sig") as fh:
            data = json.load(fh, object_pairs_hook=_pairs_hook)
    except json.JSONDecodeError as exc:
        raise MappingError(f"mapping file {path} is not valid JSON: {exc}") from None
    mapping = mapping_from_dict(data, origin=str(path))
    if validate and mapping.source is not None and mapping.source != "generic":
        mapping.validate()
    return mapping


__all__ = [
    "DROP_POLICIES",
    "SHIPPED_DIR",
    "LabelMapping",
    "MappingError",
    "list_mappings",
    "load_mapping",
    "mapping_from_dict",
]
