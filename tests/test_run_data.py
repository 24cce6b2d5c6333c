"""Which data and which checkpoint a run uses: settings-keyed SynthDrivers, explain on the
data a checkpoint was trained on, datasets with gaps, ties between "best" checkpoints."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch
from omegaconf import OmegaConf

from conftest import TINY_SYNTH
from sage.data.datamodule import PreparedDataModule
from sage.data.ensure import ensure_prepared
from sage.data.prepared import PreparedDataset
from sage.errors import SageError
from sage.explain import run as explain_run
from sage.train import run as train_run
from sage.training.checkpointing import ModelCheckpoint

FAST_TRAIN = [*TINY_SYNTH, "debug=fast", "model.input_size=32", "data.batch_size=8"]


def _ds(compose_cfg, *extra: str) -> dict:
    cfg = compose_cfg("train", [*TINY_SYNTH, *extra])
    return OmegaConf.to_container(cfg.dataset, resolve=True)


def test_other_synth_settings_never_touch_existing_data(compose_cfg):
    first = ensure_prepared(_ds(compose_cfg))
    target = first.resolve()
    raw_manifests = set(target.parents[3].glob("raw/*/synth-sf3d/synth_manifest.json"))
    other = ensure_prepared(_ds(compose_cfg, "dataset.synth.images_per_class=6"))
    assert other != first and other.resolve() != target
    assert first.resolve() == target  # the first setting's link did not move
    assert len(PreparedDataset.open(first).meta) < len(PreparedDataset.open(other).meta)
    # and its raw images were not regenerated: a second raw tree exists beside the first
    after = set(target.parents[3].glob("raw/*/synth-sf3d/synth_manifest.json"))
    assert raw_manifests < after and len(after) == 2


@pytest.fixture
def checkpoint(compose_cfg, tmp_path) -> Path:
    train_run(compose_cfg("train", FAST_TRAIN))
    return next((tmp_path / "run" / "checkpoints").glob("last*.ckpt"))


def _explain(compose_cfg, checkpoint, *extra: str) -> dict:
    cfg = compose_cfg(
        "explain",
        [f"checkpoint={checkpoint}", "cam=[half]", "progress=false", "overlays=0", *extra],
    )
    return explain_run(cfg)


def test_explain_defaults_to_the_data_the_checkpoint_was_trained_on(
    compose_cfg, checkpoint, tmp_path
):
    trained = torch.load(checkpoint, weights_only=True)["PreparedDataModule"]["prepared_dataset"]
    assert "runs" in Path(trained).parts  # the immutable prepared run, not a moving link
    links = sorted(p.name for p in (tmp_path / "outputs/data/prepared").iterdir())
    result = _explain(compose_cfg, checkpoint)
    run = mlflow.MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db").get_run(result["run_id"])
    assert run.data.tags["prepared_dataset"] == trained
    assert run.data.params["dataset/name"] == "synth-sf3d"
    assert run.data.params["dataset/variant"] == "full"
    # nothing was generated or prepared: the default 80-per-class data was never made
    assert sorted(p.name for p in (tmp_path / "outputs/data/prepared").iterdir()) == links
    # an explicit dataset= still wins
    explicit = [
        "dataset=synth_sf3d/full",
        *TINY_SYNTH[1:],
        "dataset.synth.images_per_class=6",
    ]
    result = _explain(compose_cfg, checkpoint, *explicit)
    run = mlflow.MlflowClient(f"sqlite:///{tmp_path}/outputs/mlflow.db").get_run(result["run_id"])
    assert run.data.tags["prepared_dataset"] != trained


def test_checkpoint_without_its_data_record_asks_for_dataset(compose_cfg, checkpoint, tmp_path):
    ckpt = torch.load(checkpoint, weights_only=True)
    del ckpt["PreparedDataModule"]
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    with pytest.raises(SageError, match="dataset=<config>"):
        _explain(compose_cfg, old)


def _without_class(root: Path, dst: Path, label: int, split: str) -> Path:
    """A copy of prepared dataset ``root`` in which class ``label`` has no ``split`` images."""
    shutil.copytree(root, dst, symlinks=True)
    meta = pd.read_csv(dst / "meta.csv", dtype={"image_id": str})
    meta = meta[~((meta.label == label) & (meta.split == split))]
    meta.to_csv(dst / "meta.csv", index=False)
    ids = meta.loc[meta.split == split, "image_id"]
    (dst / "index" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return dst


def test_training_refuses_a_class_without_training_images(compose_cfg, tmp_path):
    root = ensure_prepared(_ds(compose_cfg)).resolve()
    gappy = _without_class(root, tmp_path / "gappy", 7, "train")
    assert PreparedDataset.open(gappy).gaps() == ["class c7 has no train images"]
    with pytest.raises(SageError, match=r"class c7 has no train images.*data.allow_gaps=true"):
        PreparedDataModule(gappy, 32, (0.5,) * 3, (0.5,) * 3)
    dm = PreparedDataModule(gappy, 32, (0.5,) * 3, (0.5,) * 3, allow_gaps=True)
    assert len(dm.dataset("train")) > 0
    assert compose_cfg("train").data.allow_gaps is False  # the option the error names


def test_prepare_warns_about_an_empty_class(compose_cfg, monkeypatch, caplog):
    import sage.data.preparation as preparation

    real = preparation.assign_splits

    def no_val_c2(df, split_cfg):  # every c2 image lands in train
        df, report = real(df, split_cfg)
        df.loc[(df.label_name == "c2") & (df.split == "val"), "split"] = "train"
        return df, report

    monkeypatch.setattr(preparation, "assign_splits", no_val_c2)
    with caplog.at_level(logging.WARNING, logger="sage.data.preparation"):
        links = preparation.prepare_dataset(_ds(compose_cfg), show_progress=False)
    assert "class c2 has no val images" in caplog.text
    assert PreparedDataset.open(links["full"]).summary["gaps"] == ["class c2 has no val images"]


class _Tied(pl.LightningModule):
    """val/acc 1.0 at every epoch; val/loss follows ``losses``."""

    def __init__(self, losses: list[float]) -> None:
        super().__init__()
        self.layer, self.losses = torch.nn.Linear(2, 1), losses

    def training_step(self, batch, batch_idx):
        return self.layer(batch[0]).sum()

    def validation_step(self, batch, batch_idx):
        self.log("val/acc", 1.0)
        self.log("val/loss", self.losses[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


@pytest.mark.parametrize(("losses", "best"), [([0.9, 0.5, 0.2], 2), ([0.3, 0.5, 0.4], 0)])
def test_best_checkpoint_breaks_ties_with_the_validation_loss(tmp_path, losses, best):
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)))
    ckpt = ModelCheckpoint(
        dirpath=tmp_path,
        filename="best-epoch{epoch:03d}",
        auto_insert_metric_name=False,
        monitor="val/acc",
        mode="max",
        save_last=True,
    )
    trainer = pl.Trainer(
        max_epochs=3,
        callbacks=[ckpt],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(_Tied(losses), data, data)
    assert ckpt.best_epoch == best
    assert Path(ckpt.best_model_path).name == f"best-epoch{best:03d}.ckpt"
    assert sorted(p.name for p in tmp_path.glob("best-*")) == [f"best-epoch{best:03d}.ckpt"]
