"""AutoTrainer: parameters, checkpoints, loggers, errors, resume, summary."""

from __future__ import annotations

import importlib.util
import inspect
import logging
import os
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, EarlyStopping, LearningRateMonitor
from pytorch_lightning.loggers import CSVLogger
from trainer_helpers import TinyData, TinyModel

from autotimm_core import LoggerConfig, LoggerManager
from autotimm_trainer import AutoTrainer

QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "accelerator": "cpu"}


@pytest.fixture
def autotimm_log(caplog, monkeypatch):
    """Capture the package's messages (it does not propagate when the root logger is bare)."""
    monkeypatch.setattr(logging.getLogger("autotimm_trainer"), "propagate", True)
    caplog.set_level(logging.INFO, logger="autotimm_trainer")
    return caplog


class Counter(Callback):
    def __init__(self):
        self.train_epochs = self.train_batches = self.validations = 0

    def on_train_epoch_start(self, trainer, pl_module):
        self.train_epochs += 1

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.train_batches += 1

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.validations += 1


def test_defaults_follow_the_spec():
    params = inspect.signature(AutoTrainer.__init__).parameters
    expected = {
        "max_epochs": 10,
        "accelerator": "auto",
        "devices": "auto",
        "precision": 32,
        "logger": True,  # CSV (+ TensorBoard when installed) in the run folder (issue 17)
        "tuner_config": None,
        "checkpoint_monitor": None,
        "checkpoint_mode": None,  # follows the monitored name
        "callbacks": None,
        "default_root_dir": ".",
        "name": None,
        "gradient_clip_val": None,
        "accumulate_grad_batches": 1,
        "val_check_interval": 1.0,
        "enable_checkpointing": True,
        "fast_dev_run": False,
        "seed": None,
    }
    assert {k: params[k].default for k in expected} == expected
    trainer = AutoTrainer(accelerator="cpu", default_root_dir="unused")
    assert trainer.max_epochs == 10 and trainer.precision == "32-true"
    tensorboard = importlib.util.find_spec("tensorboard") is not None
    expected_loggers = ["CSVLogger"] + (["TensorBoardLogger"] if tensorboard else [])
    assert [type(lg).__name__ for lg in trainer.loggers] == expected_loggers
    assert AutoTrainer(accelerator="cpu", logger=False, default_root_dir="unused").loggers == []


def test_other_trainer_arguments_pass_through(tmp_path):
    trainer = AutoTrainer(
        accelerator="cpu",
        devices=1,
        num_nodes=2,
        strategy="ddp",
        limit_train_batches=3,
        log_every_n_steps=7,
        default_root_dir=tmp_path,
    )
    assert trainer.num_nodes == 2
    assert trainer.limit_train_batches == 3 and trainer.log_every_n_steps == 7
    assert type(trainer.strategy).__name__ == "DDPStrategy"


def test_best_and_last_checkpoints_in_fresh_versioned_folders(tmp_path, autotimm_log):
    runs = []
    for _ in range(2):
        trainer = AutoTrainer(
            max_epochs=2, checkpoint_monitor="val/accuracy", default_root_dir=tmp_path, **QUIET
        )
        trainer.fit(TinyModel(), datamodule=TinyData())
        runs.append(trainer)
    first, second = (Path(t.best_model_path) for t in runs)
    assert first.parent == tmp_path / "version_0" / "checkpoints"
    assert second.parent == tmp_path / "version_1" / "checkpoints"
    for trainer, best in zip(runs, (first, second)):
        files = sorted(p.name for p in best.parent.iterdir())
        assert len(files) == 2 and "last.ckpt" in files
        # epoch and value in the name, "/" replaced: no nested folder
        assert best.name.startswith("epoch=") and "-val_accuracy=" in best.name
        value = float(best.name.split("val_accuracy=")[1].removesuffix(".ckpt"))
        assert trainer.best_model_score == pytest.approx(value, abs=1e-4)
        assert 0 <= value <= 1
        assert not any(p.is_dir() for p in best.parent.iterdir())
    summary = [r.message for r in autotimm_log.records if r.message.startswith("AutoTrainer:")]
    assert len(summary) == 2
    assert "2 epochs" in summary[0] and "images/s" in summary[0]
    assert str(first) in summary[0] and "val/accuracy=" in summary[0]


class TrackValLoss(Callback):
    def __init__(self):
        self.losses = []

    def on_validation_end(self, trainer, pl_module):
        if not trainer.sanity_checking:
            self.losses.append(float(trainer.callback_metrics["val/loss"]))


class ShakyModel(TinyModel):
    """A learning rate high enough that val/loss goes up and down over the epochs."""

    def __init__(self):
        super().__init__(lr=3.0)


def test_min_mode_keeps_the_lowest(tmp_path):
    trainer = AutoTrainer(
        max_epochs=3,
        checkpoint_monitor="val/loss",
        checkpoint_mode="min",
        default_root_dir=tmp_path,
        **QUIET,
    )
    track = TrackValLoss()
    trainer.callbacks.append(track)
    trainer.fit(TinyModel(), datamodule=TinyData())
    assert trainer.best_model_score == pytest.approx(min(track.losses), abs=1e-4)


def test_checkpoint_mode_follows_the_monitored_name(tmp_path, autotimm_log):
    # No checkpoint_mode: "val/loss" is a loss, so the lowest value is kept (not the worst).
    track = TrackValLoss()
    trainer = AutoTrainer(
        max_epochs=4,
        checkpoint_monitor="val/loss",
        callbacks=[track],
        default_root_dir=tmp_path,
        **QUIET,
    )
    assert trainer.checkpoint_mode == "min"
    trainer.fit(ShakyModel(), datamodule=TinyData())
    assert min(track.losses) != max(track.losses)
    assert trainer.best_model_score == pytest.approx(min(track.losses), abs=1e-4)
    summary = next(r.message for r in autotimm_log.records if r.message.startswith("AutoTrainer:"))
    assert "val/loss=" in summary and "mode=min from the name" in summary
    # ... and an accuracy is kept at its highest.
    assert AutoTrainer(checkpoint_monitor="val/accuracy", **QUIET).checkpoint_mode == "max"
    assert AutoTrainer(checkpoint_monitor="val/error_rate", **QUIET).checkpoint_mode == "min"


def test_an_explicit_checkpoint_mode_wins(tmp_path, autotimm_log):
    track = TrackValLoss()
    trainer = AutoTrainer(
        max_epochs=4,
        checkpoint_monitor="val/loss",
        checkpoint_mode="max",
        callbacks=[track],
        default_root_dir=tmp_path,
        **QUIET,
    )
    trainer.fit(ShakyModel(), datamodule=TinyData())
    assert trainer.checkpoint_mode == "max"
    assert trainer.best_model_score == pytest.approx(max(track.losses), abs=1e-4)
    summary = next(r.message for r in autotimm_log.records if r.message.startswith("AutoTrainer:"))
    assert "mode=max)" in summary and "from the name" not in summary


def test_without_monitor_the_last_epoch_is_saved(tmp_path):
    trainer = AutoTrainer(max_epochs=2, default_root_dir=tmp_path, **QUIET)
    trainer.fit(TinyModel(), datamodule=TinyData())
    files = list((tmp_path / "version_0" / "checkpoints").iterdir())
    assert [p.name for p in files] == ["epoch=01-step=16.ckpt"]
    assert trainer.best_model_path == str(files[0]) and trainer.best_model_score is None
    assert torch.load(files[0], weights_only=False)["epoch"] == 1


def test_enable_checkpointing_false_writes_nothing(tmp_path):
    trainer = AutoTrainer(
        max_epochs=1, enable_checkpointing=False, default_root_dir=tmp_path, **QUIET
    )
    trainer.fit(TinyModel(), datamodule=TinyData())
    assert trainer.best_model_path is None
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"checkpoint_mode": "maximum"}, r"checkpoint_mode must be 'max' or 'min', got 'maximum'"),
        ({"checkpoint_mode": "Min"}, r"checkpoint_mode must be 'max' or 'min', got 'Min'"),
        ({"precision": "fp17"}, r"precision='fp17'.*bf16-mixed"),
        ({"checkpoint_monitor": "val/loss", "enable_checkpointing": False}, "enable_checkpointing"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutoTrainer(accelerator="cpu", **kwargs)


def test_bad_ckpt_path_fails_before_training(tmp_path):
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    plain = tmp_path / "weights.pt"
    torch.save(TinyModel().state_dict(), plain)
    started = Counter()
    trainer = AutoTrainer(max_epochs=1, default_root_dir=tmp_path, callbacks=[started], **QUIET)
    with pytest.raises(FileNotFoundError, match=r"ckpt_path='.*missing\.ckpt' does not exist"):
        trainer.fit(TinyModel(), datamodule=TinyData(), ckpt_path=tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match="is not a checkpoint torch can read"):
        trainer.fit(TinyModel(), datamodule=TinyData(), ckpt_path=text)
    with pytest.raises(ValueError, match="not a Lightning checkpoint"):
        trainer.validate(TinyModel(), datamodule=TinyData(), ckpt_path=plain)
    assert started.train_batches == 0


def test_a_monitored_metric_never_logged_is_named_with_the_logged_ones(tmp_path):
    trainer = AutoTrainer(
        max_epochs=2, checkpoint_monitor="val/acc", default_root_dir=tmp_path, **QUIET
    )
    with pytest.raises(ValueError, match=r"checkpoint_monitor='val/acc' is never logged") as err:
        trainer.fit(TinyModel(), datamodule=TinyData())
    assert "'val/accuracy'" in str(err.value) and "'val/loss'" in str(err.value)
    assert trainer.current_epoch == 0  # stopped after the first validation


@pytest.mark.parametrize(("fast_dev_run", "batches"), [(True, 1), (5, 5)])
def test_fast_dev_run(tmp_path, fast_dev_run, batches):
    counter = Counter()
    trainer = AutoTrainer(
        fast_dev_run=fast_dev_run,
        checkpoint_monitor="val/accuracy",
        callbacks=[counter],
        default_root_dir=tmp_path,
        **QUIET,
    )
    trainer.fit(TinyModel(), datamodule=TinyData())
    assert counter.train_batches == batches and counter.validations == 1
    assert trainer.global_step == batches
    assert not list(tmp_path.rglob("*.ckpt"))


class NormRecordingSGD(torch.optim.SGD):
    """Records the gradient norm that reaches the update (after Lightning's clipping)."""

    norms: list[float]

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        grads = [p.grad for g in self.param_groups for p in g["params"] if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        super().step()
        return loss


class ClipProbe(TinyModel):
    def configure_optimizers(self):
        opt = NormRecordingSGD(self.parameters(), lr=self.lr)
        opt.norms = self.norms = []
        return opt


def test_gradient_clipping(tmp_path):
    clipped = ClipProbe()
    AutoTrainer(max_epochs=1, gradient_clip_val=0.01, default_root_dir=tmp_path, **QUIET).fit(
        clipped, datamodule=TinyData()
    )
    free = ClipProbe()
    AutoTrainer(max_epochs=1, default_root_dir=tmp_path, **QUIET).fit(free, datamodule=TinyData())
    assert len(clipped.norms) == 8
    assert max(clipped.norms) <= 0.01 + 1e-6
    assert min(free.norms) > 0.01


def test_gradient_accumulation(tmp_path):
    counter = Counter()
    trainer = AutoTrainer(
        max_epochs=1,
        accumulate_grad_batches=4,
        callbacks=[counter],
        default_root_dir=tmp_path,
        **QUIET,
    )
    trainer.fit(TinyModel(), datamodule=TinyData(num_samples=128))
    assert counter.train_batches == 16 and trainer.global_step == 4


@pytest.mark.parametrize(("interval", "validations"), [(1.0, 2), (0.25, 8), (3, 4)])
def test_val_check_interval(tmp_path, interval, validations):
    counter = Counter()
    trainer = AutoTrainer(
        max_epochs=2,
        val_check_interval=interval,
        callbacks=[counter],
        default_root_dir=tmp_path,
        **QUIET,
    )
    # 8 batches per epoch: 1.0 -> once per epoch, 0.25 -> 4 per epoch, 3 -> after batches 3 and 6
    trainer.fit(TinyModel(), datamodule=TinyData())
    assert counter.validations == validations


class AutocastProbe(TinyModel):
    def training_step(self, batch, batch_idx):
        self.seen = (torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu"))
        return super().training_step(batch, batch_idx)


def test_bf16_mixed_on_cpu(tmp_path):
    model = AutocastProbe()
    trainer = AutoTrainer(max_epochs=1, precision="bf16-mixed", default_root_dir=tmp_path, **QUIET)
    trainer.fit(model, datamodule=TinyData())
    assert trainer.precision == "bf16-mixed"
    assert model.seen == (True, torch.bfloat16)
    assert model.net[0].weight.dtype == torch.float32  # mixed: weights stay fp32


def test_resume_continues_at_the_right_epoch(tmp_path):
    first = AutoTrainer(
        max_epochs=2, checkpoint_monitor="val/accuracy", default_root_dir=tmp_path, **QUIET
    )
    first.fit(TinyModel(), datamodule=TinyData())
    last = Path(first.best_model_path).parent / "last.ckpt"
    counter = Counter()
    second = AutoTrainer(
        max_epochs=3,
        checkpoint_monitor="val/accuracy",
        callbacks=[counter],
        default_root_dir=tmp_path,
        **QUIET,
    )
    second.fit(TinyModel(), datamodule=TinyData(), ckpt_path=last)
    assert counter.train_epochs == 1
    assert second.current_epoch == 3 and second.global_step == 24
    # the resumed run writes into its own folder; the first run's files are untouched
    assert Path(second.best_model_path).parent.parent.name == "version_1"
    assert last.is_file() and torch.load(last, weights_only=False)["epoch"] == 1
    assert "(epochs 3-3)" in second.summary()


def test_loggers_from_configs_manager_and_objects(tmp_path):
    cases = {
        "configs": [LoggerConfig(backend="csv", params={"name": "a"})],
        "manager": LoggerManager([{"backend": "csv", "params": {"name": "b"}}]),
        "object": CSVLogger(save_dir=tmp_path / "logs", name="c"),
        "mixed": [
            {"backend": "csv", "params": {"name": "d"}},
            CSVLogger(save_dir=tmp_path / "logs", name="e"),
        ],
    }
    for case, logger in cases.items():
        trainer = AutoTrainer(max_epochs=1, logger=logger, default_root_dir=tmp_path, **QUIET)
        trainer.fit(TinyModel(), datamodule=TinyData())
        assert trainer.loggers, case
        for lg in trainer.loggers:
            metrics = Path(lg.log_dir) / "metrics.csv"
            assert metrics.is_file(), case
            assert "val/accuracy" in metrics.read_text().splitlines()[0]
        # checkpoints sit in the first logger's version folder
        assert (
            Path(trainer.best_model_path).parent == Path(trainer.loggers[0].log_dir) / "checkpoints"
        )
    with pytest.raises(TypeError, match="logger list entries"):
        AutoTrainer(logger=["csv"], default_root_dir=tmp_path)


def test_no_logger_writes_no_logs(tmp_path):
    AutoTrainer(max_epochs=1, logger=False, default_root_dir=tmp_path, **QUIET).fit(
        TinyModel(), datamodule=TinyData()
    )
    assert not (tmp_path / "logs").exists() and not list(tmp_path.rglob("*.csv"))


def test_callbacks_that_need_a_logger_get_a_csv_logger(tmp_path, autotimm_log):
    trainer = AutoTrainer(
        max_epochs=1,
        logger=False,
        default_root_dir=tmp_path,
        callbacks=[
            EarlyStopping(monitor="val/loss", patience=10, mode="min"),
            LearningRateMonitor(logging_interval="step"),
        ],
        log_every_n_steps=1,
        **QUIET,
    )
    trainer.fit(TinyModel(), datamodule=TinyData())
    notes = [r.message for r in autotimm_log.records if "needs a logger" in r.message]
    assert len(notes) == 1 and "LearningRateMonitor" in notes[0]
    header = (Path(trainer.logger.log_dir) / "metrics.csv").read_text().splitlines()[0]
    assert "lr-SGD" in header
    # in the run folder, as the default loggers (issue 17; was default_root_dir/logs)
    assert Path(trainer.logger.log_dir) == tmp_path / "version_0"


def test_seed_everything_with_workers(tmp_path, monkeypatch):
    monkeypatch.delenv("PL_SEED_WORKERS", raising=False)
    monkeypatch.delenv("PL_GLOBAL_SEED", raising=False)
    AutoTrainer(seed=7, accelerator="cpu", default_root_dir=tmp_path)
    a = torch.rand(3)
    AutoTrainer(seed=7, accelerator="cpu", default_root_dir=tmp_path)
    b = torch.rand(3)
    assert torch.equal(a, b)
    assert os.environ["PL_SEED_WORKERS"] == "1" and os.environ["PL_GLOBAL_SEED"] == "7"


def test_any_lightning_module_and_dataloaders(tmp_path):
    data = TinyData()
    trainer = AutoTrainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    trainer.fit(TinyModel(), data.train_dataloader(), data.val_dataloader())
    assert trainer.current_epoch == 1
    out = trainer.test(TinyModel(), data.test_dataloader(), ckpt_path=trainer.best_model_path)
    assert "test/loss" in out[0]
    preds = trainer.predict(TinyModel(), datamodule=data)
    assert sum(len(p) for p in preds) == 32


def test_trainer_is_a_lightning_trainer():
    assert issubclass(AutoTrainer, pl.Trainer)
