"""Speed figures for every run: training and inference images/s, per-batch latency, params."""

from __future__ import annotations

import time

import pytorch_lightning as pl

from ..models.fingerprint import count_parameters


class SpeedMonitor(pl.Callback):
    """Logs ``speed/*`` (wall clock, includes data loading) and ``model/params``."""

    def __init__(self) -> None:
        self._t0: dict[str, float] = {}
        self._n: dict[str, int] = {}
        self._time: dict[str, float] = {}
        self._batches: dict[str, int] = {}
        self._batch_t0 = 0.0

    def _start(self, stage: str) -> None:
        self._t0[stage] = time.perf_counter()
        self._n[stage], self._time[stage], self._batches[stage] = 0, 0.0, 0

    def _batch_end(self, stage: str, batch: dict) -> None:
        self._n[stage] += len(batch["label"])
        self._time[stage] += time.perf_counter() - self._batch_t0
        self._batches[stage] += 1

    def _end(self, trainer: pl.Trainer, stage: str) -> None:
        if not self._n.get(stage) or trainer.sanity_checking:
            return
        elapsed = time.perf_counter() - self._t0[stage]
        metrics = {
            f"speed/{stage}_images_per_s": self._n[stage] / max(elapsed, 1e-9),
            f"speed/{stage}_batch_latency_ms": 1000 * self._time[stage] / self._batches[stage],
        }
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for logger in trainer.loggers:
            logger.log_metrics({"model/params": float(count_parameters(pl_module))}, step=0)

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._start("train")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._batch_t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._batch_end("train", batch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, "train")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start("test")

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._batch_t0 = time.perf_counter()

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        self._batch_end("test", batch)

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, "test")
