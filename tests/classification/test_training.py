"""End to end: training on a folder of images, checkpoints, and the user guide's snippets."""

import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from helpers import make_image_folder
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger

from autotimm_classification import ImageClassifier, ImageDataModule
from autotimm_core import LoggingConfig, MetricConfig


@pytest.mark.slow
def test_trains_well_above_chance_then_tests_predicts_and_reloads(tmp_path):
    # Every generator (python, numpy, torch): earlier tests in the same worker leave python's
    # and numpy's in another state, and which epoch is "best" on 4 validation images follows.
    pl.seed_everything(0)
    root = make_image_folder(tmp_path / "data", {"train": 16, "test": 6}, seed=1)
    data = ImageDataModule(root, image_size=32, batch_size=8, num_workers=1, val_split=0.25)
    model = ImageClassifier("test_resnet", num_classes=3, pretrained=False, lr=1e-2)
    best = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/accuracy", mode="max")
    trainer = pl.Trainer(
        max_epochs=4,
        callbacks=[best],
        logger=CSVLogger(tmp_path / "logs"),
        enable_progress_bar=False,
        enable_model_summary=False,
        log_every_n_steps=1,
    )
    trainer.fit(model, datamodule=data)
    assert {"train/loss", "val/loss", "val/accuracy"} <= set(trainer.callback_metrics)

    (result,) = trainer.test(model, datamodule=data, ckpt_path="best")
    assert result["test/accuracy"] >= 0.9  # chance is 1/3
    assert "test/loss" in result

    batches = trainer.predict(model, datamodule=data)
    preds = torch.cat([b["labels"] for b in batches])
    probs = torch.cat([b["probs"] for b in batches])
    assert probs.shape == (18, 3) and torch.allclose(probs.sum(1), torch.ones(18))
    assert (preds == torch.tensor(data.test_dataset.targets)).float().mean() >= 0.9

    # predict() on the file gives what the data module's test path gave for it: the same
    # pixels and weights (the best checkpoint's, which may be an early, unconfident epoch).
    red0 = root / "test" / "red" / "000.jpg"
    (index,) = [i for i, (p, _) in enumerate(data.test_dataset.samples) if Path(p) == red0]
    top = model.predict([str(red0)], top_k=3)[0]
    assert top[0]["label"] == "red" == model.class_names[int(preds[index])]
    assert top[0]["score"] > 0.5
    assert [r["score"] for r in top] == pytest.approx(
        probs[index].sort(descending=True).values.tolist(), abs=1e-5
    )

    loaded = ImageClassifier.load_from_checkpoint(best.best_model_path)
    assert loaded.class_names == ["blue", "green", "red"]
    assert loaded.hparams["pretrained"] is False and model.hparams["pretrained"] is False
    x = torch.randn(4, 3, 32, 32)
    model.eval(), loaded.eval()
    assert torch.allclose(model(x), loaded(x), atol=1e-6)
    again = loaded.predict([str(root / "test" / "red" / "000.jpg")], top_k=3)[0]
    assert [r["label"] for r in again] == [r["label"] for r in top]
    assert [r["score"] for r in again] == pytest.approx([r["score"] for r in top], abs=1e-6)


# The guide's classification snippets, with test_resnet, a folder data set and one batch.
GUIDE_METRICS = [
    MetricConfig(
        name="accuracy",
        backend="torchmetrics",
        metric_class="Accuracy",
        params={"task": "multiclass"},
        stages=["train", "val", "test"],
        prog_bar=True,
    ),
]
GUIDE_MODELS = {
    "full-example": {
        "metrics": GUIDE_METRICS,
        "logging_config": LoggingConfig(log_learning_rate=True, log_gradient_norm=True),
    },
    "custom-optimizer": {
        "metrics": GUIDE_METRICS,
        "optimizer": "adamw",
        "lr": 1e-3,
        "weight_decay": 1e-4,
    },
    "cosineannealinglr": {
        "metrics": GUIDE_METRICS,
        "lr": 1e-3,
        "scheduler": "cosineannealinglr",
        "scheduler_kwargs": {"T_max": 50, "eta_min": 1e-6},
    },
    "multisteplr": {
        "metrics": GUIDE_METRICS,
        "lr": 1e-3,
        "scheduler": "multisteplr",
        "scheduler_kwargs": {"milestones": [30, 60, 90], "gamma": 0.1},
    },
}


@pytest.mark.parametrize("snippet", list(GUIDE_MODELS))
def test_guide_snippets_run(colour_folder, tmp_path, snippet):
    data = ImageDataModule(data_dir=colour_folder, image_size=32, batch_size=8, num_workers=0)
    model = ImageClassifier(
        backbone="test_resnet", num_classes=3, pretrained=False, **GUIDE_MODELS[snippet]
    )
    trainer = pl.Trainer(
        max_epochs=2,
        limit_train_batches=2,
        limit_val_batches=1,
        limit_test_batches=1,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=1,
        gradient_clip_val=1.0,
        callbacks=[
            ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/accuracy", mode="max"),
            EarlyStopping(monitor="val/loss", patience=10, mode="min"),
        ],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    logged = set(trainer.logged_metrics)
    assert {"train/accuracy", "val/accuracy", "train/loss_epoch", "val/loss"} <= logged
    if snippet == "full-example":
        assert {"train/lr", "train/grad_norm"} <= logged
    (result,) = trainer.test(model, datamodule=data)
    assert {"test/accuracy", "test/loss"} <= set(result)


def test_readme_quick_start_runs_offline(tmp_path, monkeypatch, capsys):
    readme = Path(__file__).parents[2] / "packages" / "classification" / "README.md"
    code = re.search(r"```python\n(.*?)```", readme.read_text(), re.S).group(1)
    code = code.replace('"resnet18"', '"test_resnet"').replace(
        "pl.Trainer(max_epochs=5)",
        "pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, "
        "limit_test_batches=1, logger=False, enable_checkpointing=False)",
    )
    assert "test_resnet" in code and "limit_train_batches" in code
    monkeypatch.chdir(tmp_path)
    exec(compile(code, str(readme), "exec"), {})
    printed = capsys.readouterr().out
    assert "'label':" in printed and "'score':" in printed
