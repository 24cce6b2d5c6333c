"""User-facing errors: bad input the user can fix (a path, a config value, a file).

Entry points print these as one line instead of a stack trace; everything else is a bug and
keeps its traceback.
"""


class SageError(Exception):
    """Bad input or configuration, with a message that names the culprit and the fix."""


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights requested but not on disk (here, not with the models, so that
    entry points can name it without importing torch)."""


def check_finite_logits(logits, ids=None, where: str = "") -> None:
    """A SageError naming the images whose logits hold NaN or ±inf (NaN weights, a broken
    checkpoint), so no prediction or score is ever computed from them. ``logits``: (B, K)
    tensor; ``ids``: the batch's image ids (indices when None); ``where``: appended to the
    message (e.g. ``"of model 2"``)."""
    finite = logits.isfinite().all(-1)
    if not bool(finite.all()):
        rows = (~finite).nonzero().flatten().tolist()
        bad = [ids[i] for i in rows] if ids is not None else rows
        suffix = f" {where}" if where else ""
        raise SageError(f"non-finite logits for images {bad[:5]}{suffix} (NaN or inf weights?)")


class UnknownNameError(SageError, KeyError):
    """A name that is not registered (backbone, timm model, saliency method). Also a
    KeyError, as the registries raised before; prints its message unquoted."""

    __str__ = SageError.__str__  # KeyError.__str__ would wrap the message in quotes


def unknown_name(kind: str, name: str, valid: list[str], limit: int = 12) -> UnknownNameError:
    """An :class:`UnknownNameError` for ``name`` listing the ``valid`` names (at most
    ``limit`` of them) and, for a typo, the closest ones ("did you mean")."""
    import difflib  # only needed on this error path

    close = difflib.get_close_matches(str(name), [str(v) for v in valid], n=3)
    hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
    shown = ", ".join(str(v) for v in valid[:limit])
    more = f", ... ({len(valid) - limit} more)" if len(valid) > limit else ""
    return UnknownNameError(f"unknown {kind} {name!r}{hint}; valid: {shown}{more}")
