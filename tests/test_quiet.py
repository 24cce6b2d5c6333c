"""The known library noise is silenced, nothing else is, and SAGE_VERBOSE=1 shows it all."""

from __future__ import annotations

import logging
import warnings

import pytest

from sage.quiet import quiet_known_noise


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def lightning_log():
    """What Lightning's rank_zero_info would print (its records, collected)."""
    log = logging.getLogger("pytorch_lightning.utilities.rank_zero")
    handler, level = _Collect(), log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    yield log, handler.messages
    log.removeHandler(handler)
    log.setLevel(level)
    quiet_known_noise(verbose=True)  # leave no filter behind for other tests


def _emit(log: logging.Logger) -> None:
    log.info("💡 Tip: For seamless cloud logging, try installing [litlogger]")
    log.info("GPU available: False, used: False")
    log.info("`Trainer.fit` stopped: `max_epochs=1` reached.")


def _warn() -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        quiet_known_noise(None)  # catch_warnings restored the filters: apply them again
        warnings.warn(
            "`isinstance(treespec, LeafSpec)` is deprecated, use ... instead.",
            FutureWarning,
            stacklevel=2,
        )
        warnings.warn("a deprecation of the user's own code", FutureWarning, stacklevel=2)
        warnings.warn(
            "`isinstance(treespec, LeafSpec)` as a UserWarning", UserWarning, stacklevel=2
        )
    return [str(w.message) for w in caught]


def test_known_noise_is_dropped_and_other_lines_kept(lightning_log, monkeypatch):
    monkeypatch.delenv("SAGE_VERBOSE", raising=False)
    log, messages = lightning_log
    assert quiet_known_noise() and quiet_known_noise()  # idempotent
    _emit(log)
    assert messages == ["`Trainer.fit` stopped: `max_epochs=1` reached."]
    assert len(log.filters) == 1
    caught = _warn()
    assert not any("deprecated" in m for m in caught)
    assert "a deprecation of the user's own code" in caught  # other warnings still show
    assert any("UserWarning" in m for m in caught)  # same text, other category: shown


def test_verbose_shows_everything(lightning_log, monkeypatch):
    log, messages = lightning_log
    quiet_known_noise()
    monkeypatch.setenv("SAGE_VERBOSE", "1")
    assert not quiet_known_noise()  # a verbose call also lifts earlier filters
    _emit(log)
    assert len(messages) == 3 and not log.filters
    assert any("deprecated" in m for m in _warn())
    monkeypatch.setenv("SAGE_VERBOSE", "0")
    assert quiet_known_noise() and not quiet_known_noise(verbose=True)


def test_every_command_is_quiet_through_its_entry_decorator(lightning_log, monkeypatch):
    """explain, evaluate and train share one_line_errors: it applies sage.quiet first, and a
    ``verbose`` config key turns it off."""
    from omegaconf import OmegaConf

    from sage.cli import one_line_errors

    monkeypatch.delenv("SAGE_VERBOSE", raising=False)
    log, messages = lightning_log

    @one_line_errors
    def task(cfg):
        _emit(log)

    task(OmegaConf.create({}))
    assert messages == ["`Trainer.fit` stopped: `max_epochs=1` reached."]
    messages.clear()
    task(OmegaConf.create({"verbose": True}))
    assert len(messages) == 3
