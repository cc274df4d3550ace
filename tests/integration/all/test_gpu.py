"""The GPU paths: bf16-mixed and channels_last training, tuning, evaluation and prediction on CUDA.

CI has no GPU, so these skip there; they run by hand on a machine with one (see
docs/pages/benchmarks.md for the last run). Small models and generated data, seconds each.
"""

from __future__ import annotations

import pytest
import torch
from pytorch_lightning import Callback
from reliability_helpers import (
    classifier_and_data,
    colour_folder,
    detector_and_data,
    shapes_folder,
)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class _SeenInTraining(Callback):
    """Where the weights and batches were during training (Lightning moves the model back to
    the CPU when fit ends)."""

    def __init__(self) -> None:
        self.seen: set[tuple] = set()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        weight = next(p for p in pl_module.parameters() if p.dim() == 4)
        self.seen.add(
            (
                weight.device.type,
                weight.dtype,
                weight.is_contiguous(memory_format=torch.channels_last),
                batch[0].device.type,
            )
        )


def _gpu_trainer(root, **kw):
    from autotimm_trainer import AutoTrainer

    kw.setdefault("enable_checkpointing", False)
    return AutoTrainer(
        accelerator="gpu",
        devices=1,
        precision="bf16-mixed",
        default_root_dir=root,
        enable_progress_bar=False,
        enable_model_summary=False,
        seed=0,
        **kw,
    )


def test_classifier_bf16_channels_last_tunes_trains_and_predicts(tmp_path):
    from autotimm_trainer import TunerConfig

    root = colour_folder(tmp_path / "colours")
    model, data = classifier_and_data(root)
    model = model.to(memory_format=torch.channels_last)
    seen = _SeenInTraining()
    trainer = _gpu_trainer(
        tmp_path / "run",
        max_epochs=8,
        callbacks=[seen],
        tuner_config=TunerConfig(
            auto_lr=True,
            auto_batch_size=True,
            lr_find_kwargs={"num_training": 20},
            batch_size_kwargs={"max_trials": 3, "steps_per_trial": 1},
        ),
    )
    trainer.fit(model, datamodule=data)
    # tuning ran on the GPU and its results were applied
    assert model.lr == trainer.tuning_results["lr"] and model.lr > 0
    assert data.batch_size == trainer.tuning_results["batch_size"] >= 2
    # trained on the GPU; bf16-mixed keeps fp32 master weights; channels_last survived the move
    assert seen.seen == {("cuda", torch.float32, True, "cuda")}
    result = trainer.validate(model, datamodule=data, verbose=False)[0]
    assert result["val/accuracy"] > 0.6  # 3 colour classes: chance is 1/3
    images = sorted((root / "val").rglob("*.jpg"))[:3]
    predictions = model.predict([str(p) for p in images])
    assert [p[0]["label"] for p in predictions] == [p.parent.name for p in images]


def test_detector_bf16_trains_evaluates_and_predicts_on_gpu(tmp_path):
    root = shapes_folder(tmp_path / "shapes")
    model, data = detector_and_data(root)
    seen = _SeenInTraining()
    trainer = _gpu_trainer(
        tmp_path / "run", max_epochs=20, num_sanity_val_steps=0, callbacks=[seen]
    )
    trainer.fit(model, datamodule=data)
    assert seen.seen == {("cuda", torch.float32, False, "cuda")}
    result = trainer.validate(model, datamodule=data, verbose=False)[0]
    assert {"val/map", "val/map_50", "val/loss"} <= set(result)
    assert torch.isfinite(torch.tensor(result["val/loss"]))
    assert result["val/map_50"] > 0  # it learned to find some of the shapes
    images = sorted((root / "val2017").glob("*"))[:2]
    detections = model.predict([str(p) for p in images])
    assert len(detections) == 2
    for det in detections:
        assert det["boxes"].shape[1] == 4 and len(det["scores"]) == len(det["label_names"])
