"""Multi-process training helpers: exact evaluation under DDP, and launches that cannot work.

Under DDP (``trainer=ddp``) Lightning gives every rank a ``DistributedSampler`` that pads the
split with repeated images so all ranks run the same number of batches; validation and test
metrics would then count up to ``world_size - 1`` images twice. The post-fit test uses
:func:`unrepeated_loader` instead (each image exactly once; torchmetrics gathers the states of
every rank at ``compute``). Lightning keeps a sampler that is already distributed.

Lightning's DDP re-launches the entry script once per extra device with the same command line;
inside a Hydra multirun (``-m``) that command line is the whole sweep, so every child would
start a sweep of its own. :func:`check_launch` turns that into a clear error up front.
"""

from __future__ import annotations

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from pytorch_lightning.strategies.launchers import _SubprocessScriptLauncher  # listed in __all__
from torch.utils.data import DataLoader

from ..errors import SageError


def unrepeated_loader(loader: DataLoader, trainer: pl.Trainer) -> DataLoader:
    """``loader`` with this rank's share of its dataset, no image repeated across ranks."""
    sampler = UnrepeatedDistributedSampler(
        loader.dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
    )
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        persistent_workers=loader.persistent_workers,
    )


def check_launch(trainer: pl.Trainer) -> None:
    """Refuse script-relaunching DDP inside a Hydra multirun (see the module docstring)."""
    launcher = getattr(trainer.strategy, "launcher", None)
    if not isinstance(launcher, _SubprocessScriptLauncher):
        return  # one process, ddp_spawn, or ranks started by SLURM/torchrun
    if launcher.cluster_environment.creates_processes_externally or launcher.num_processes < 2:
        return
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        raise SageError(
            "trainer=ddp re-launches the script per device, which does not work inside a -m "
            "sweep; run DDP jobs without -m, or sweep with hydra/launcher=slurm and "
            "hydra.launcher.tasks_per_node=<devices> (SLURM starts the ranks)"
        )
