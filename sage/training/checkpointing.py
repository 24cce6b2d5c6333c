"""ModelCheckpoint whose ``last.ckpt`` always holds the newest weights.

Lightning 2.5+ refreshes ``last.ckpt`` only when a top-k checkpoint was saved in the same
step, so once the monitored metric stops improving "last" silently stays at the best epoch.
Evaluation (``checkpoint_select=last``) and COSE's earlier-checkpoint comparisons need the
final weights, so this subclass also saves ``last`` at every validation end it skipped.
"""

from __future__ import annotations

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint as LightningModelCheckpoint


class ModelCheckpoint(LightningModelCheckpoint):
    """Lightning's ModelCheckpoint with ``save_last`` meaning "the newest weights"."""

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
