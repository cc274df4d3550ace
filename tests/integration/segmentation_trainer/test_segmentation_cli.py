"""Segmentation with the trainer: the example YAML through the `autotimm` CLI, and AutoTrainer."""

from __future__ import annotations

from pathlib import Path

import pytest

import autotimm_trainer.cli as cli
from autotimm_segmentation import SegmentationDataModule, SemanticSegmentor
from autotimm_trainer import AutoTrainer

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "segmentation_quickstart.yaml"


def test_the_cli_finds_the_task_and_fits_the_example(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the example's data_dir is relative to the repository
    assert cli.get_task("SemanticSegmentor") is SemanticSegmentor
    run = cli.build_cli(
        [
            "fit",
            "--config",
            str(EXAMPLE),
            "--trainer.max_epochs",
            "1",
            "--trainer.accelerator",
            "cpu",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    assert type(run.model) is SemanticSegmentor and run.model.hparams.head == "fpn"
    assert "val/miou" in run.trainer.callback_metrics
    assert list(tmp_path.rglob("*.ckpt"))


def test_auto_trainer_fits_and_tests(tmp_path):
    data = SegmentationDataModule(
        ROOT / "examples" / "data" / "scenes", image_size=64, batch_size=8, num_workers=0
    )
    # timm's tiny test ResNet: this test checks the trainer's path, not what the model learns.
    model = SemanticSegmentor(
        "test_resnet", num_classes=data.num_classes, pretrained=False, head="unet"
    )
    trainer = AutoTrainer(
        max_epochs=1,
        accelerator="cpu",
        default_root_dir=str(tmp_path),
        checkpoint_monitor="val/miou",
        checkpoint_mode="max",
        enable_progress_bar=False,
    )
    trainer.fit(model, datamodule=data)
    with pytest.raises(FileNotFoundError, match="no test split"):
        trainer.test(model, datamodule=data)
    results = trainer.validate(model, datamodule=data)
    assert 0.0 <= results[0]["val/miou"] <= 1.0
    assert {f"val/iou/{c}" for c in data.class_names} <= set(results[0])
