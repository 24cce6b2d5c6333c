"""Known console noise of the libraries SAGE drives, silenced in one place.

A training run used to open with Lightning's advertising ("💡 Tip: ... litlogger"), device
banners ("GPU available: False, used: False", "TPU available: ..."), "Seed set to 42", MLflow's
"Creating initial MLflow database tables..." and, on every loop, torch's deprecation warning
about Lightning's own use of ``LeafSpec``. None of it is about the user's run, and it buried
the lines that are (errors, SAGE notes, the final run id and output directory).

:func:`quiet_known_noise` drops exactly those messages, matched by text, and nothing else:
other Lightning info lines, every other warning (user warnings, other deprecations) and
progress bars still show. Set ``SAGE_VERBOSE=1`` (or pass ``verbose=True``, e.g. from a
``+verbose=true`` override) to see everything.
"""

from __future__ import annotations

import logging
import os
import re
import warnings

VERBOSE_ENV = "SAGE_VERBOSE"

# (logger the record is created on, message pattern). Filters attach to the originating
# logger because logging applies a logger's filters only to records created on it.
_NOISY_LOGS: tuple[tuple[str, str], ...] = (
    # rank_zero_info/warn of Lightning log on these two, whichever module imported last
    ("pytorch_lightning.utilities.rank_zero", r"💡 Tip: "),
    ("pytorch_lightning.utilities.rank_zero", r"(GPU|TPU|HPU|IPU) available: "),
    ("lightning_fabric.utilities.rank_zero", r"💡 Tip: "),
    ("lightning_fabric.utilities.rank_zero", r"(GPU|TPU|HPU|IPU) available: "),
    ("lightning_fabric.utilities.seed", r"Seed set to "),  # the seed is a run tag
    (
        "mlflow.store.db.utils",
        r"(Creating initial MLflow database tables|Updating database tables)",
    ),
)

# (category, message pattern) of warnings raised inside the libraries, not by user code
_NOISY_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # torch 2.10 deprecates LeafSpec, which Lightning 2.6's _pytree still uses on every loop
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
)


class _DropMatching(logging.Filter):
    """Drops the records whose message matches one of the patterns given for its logger."""

    def __init__(self, patterns: list[str]) -> None:
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.match(record.getMessage())


def verbose_requested(verbose: bool | None = None) -> bool:
    """Whether everything should be shown: ``verbose`` when given, else ``SAGE_VERBOSE``."""
    if verbose is not None:
        return bool(verbose)
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def quiet_known_noise(verbose: bool | None = None) -> bool:
    """Silence the known library noise for this process (idempotent); return whether it did.

    With ``verbose`` (or ``SAGE_VERBOSE=1``) nothing is silenced and earlier filters of this
    module are removed again, so a later verbose call shows everything.
    """
    by_logger: dict[str, list[str]] = {}
    for name, pattern in _NOISY_LOGS:
        by_logger.setdefault(name, []).append(pattern)
    quiet = not verbose_requested(verbose)
    for name, patterns in by_logger.items():
        log = logging.getLogger(name)
        for old in [f for f in log.filters if isinstance(f, _DropMatching)]:
            log.removeFilter(old)
        if quiet:
            log.addFilter(_DropMatching(patterns))
    for category, pattern in _NOISY_WARNINGS:
        # one entry per pattern however often this runs; a verbose call drops it again
        warnings.filters[:] = [f for f in warnings.filters if not _is_ours(f, category, pattern)]
        if quiet:
            warnings.filterwarnings("ignore", message=pattern, category=category)
    return quiet


def _is_ours(entry: tuple, category: type[Warning], pattern: str) -> bool:
    action, message, entry_category = entry[:3]
    return (
        action == "ignore"
        and entry_category is category
        and getattr(message, "pattern", None) == pattern
    )
