"""ModelCheckpoint that keeps the newest weights in ``last`` and breaks ties for ``best``.

Lightning 2.5+ refreshes ``last.ckpt`` only when a top-k checkpoint was saved in the same
step, so once the monitored metric stops improving "last" silently stays at the best epoch.
Evaluation (``checkpoint_select=last``) and COSE's earlier-checkpoint comparisons need the
final weights, so this subclass also saves ``last`` at every validation end it skipped.

Lightning keeps the *first* checkpoint among equal monitored values. Validation accuracy on
a small split ties often (1.0 from epoch 0 on an easy task), and then "best" is an
undertrained epoch-0 model. Here a tie on ``monitor`` is broken by ``tie_breaker`` (the
validation loss by default), and the chosen epoch is recorded in the logger.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint
from pytorch_lightning.loggers import MLFlowLogger


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ModelCheckpoint with ``save_last`` meaning "the newest weights" and ties on
    ``monitor`` broken by ``tie_breaker`` (``tie_mode``: ``min`` or ``max``; ``None``: off)."""

    def __init__(
        self, *args: Any, tie_breaker: str | None = "val/loss", tie_mode: str = "min", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        if tie_mode not in ("min", "max"):
            raise ValueError(f"tie_mode must be 'min' or 'max', got {tie_mode!r}")
        self.tie_breaker, self.tie_mode = tie_breaker, tie_mode
        self.tie_values: dict[str, float] = {}  # checkpoint path -> its tie-breaker value
        self.epochs: dict[str, int] = {}  # checkpoint path -> epoch it was saved at

    def _tie_value(self, candidates: dict[str, torch.Tensor]) -> float:
        value = candidates.get(self.tie_breaker) if self.tie_breaker else None
        worst = float("inf") if self.tie_mode == "min" else float("-inf")
        if value is None or not torch.isfinite(torch.as_tensor(value)):
            return worst
        return float(value)

    def _better_tie(self, a: float, b: float) -> bool:
        return a < b if self.tie_mode == "min" else a > b

    def check_monitor_top_k(self, trainer: pl.Trainer, current: torch.Tensor | None = None) -> bool:
        if super().check_monitor_top_k(trainer, current):
            return True
        if current is None or not self.tie_breaker or not self.kth_best_model_path:
            return False
        kth = self.best_k_models.get(self.kth_best_model_path)
        tie = kth is not None and bool(torch.eq(current, kth))
        if tie:
            mine = self._tie_value(self._monitor_candidates(trainer))
            theirs = self.tie_values.get(self.kth_best_model_path, mine)
            tie = self._better_tie(mine, theirs)
        return trainer.strategy.reduce_boolean_decision(tie)

    def _update_best_and_save(
        self, current: torch.Tensor, trainer: pl.Trainer, monitor_candidates: dict
    ) -> None:
        before = set(self.best_k_models)
        super()._update_best_and_save(current, trainer, monitor_candidates)
        for path in set(self.best_k_models) - before:
            self.tie_values[path] = self._tie_value(monitor_candidates)
            self.epochs[path] = int(monitor_candidates["epoch"])
        for path in set(self.tie_values) - set(self.best_k_models):
            self.tie_values.pop(path)
            self.epochs.pop(path, None)
        # among equal scores Lightning picks the first inserted; prefer the better tie value
        score = self.best_model_score
        tied = [p for p, v in self.best_k_models.items() if bool(torch.eq(v, score))]
        sign = 1.0 if self.tie_mode == "min" else -1.0
        self.best_model_path = min(tied, key=lambda p: sign * self.tie_values.get(p, 0.0))

    @property
    def best_epoch(self) -> int | None:
        """Epoch of ``best_model_path`` (``None`` before the first save)."""
        return self.epochs.get(self.best_model_path)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "tie_values": self.tie_values, "epochs": self.epochs}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.tie_values = dict(state_dict.get("tie_values", {}))
        self.epochs = dict(state_dict.get("epochs", {}))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        logger = trainer.logger
        if (
            trainer.is_global_zero
            and isinstance(logger, MLFlowLogger)
            and self.best_epoch is not None
        ):
            logger.experiment.set_tag(logger.run_id, "best_checkpoint_epoch", str(self.best_epoch))

    def _refresh_last(self, trainer: pl.Trainer) -> None:
        # skipped when anything (top-k or last) was already saved at this global step
        if self.save_last and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    # Lightning saves in one of these two hooks (train epoch end by default, validation end
    # when validation runs at another cadence); the refresh follows the same choice.
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)
