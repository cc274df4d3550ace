"""TunerConfig and the tuning pass of AutoTrainer.fit / AutoTrainer.tune."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import Callback
from pytorch_lightning.utilities.memory import is_oom_error
from trainer_helpers import TinyData, TinyImages, TinyModel, TinyTimmTask

import autotimm_trainer.memory as memory
import autotimm_trainer.tuning as tuning
from autotimm_trainer import AutoTrainer, TunerConfig

QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "accelerator": "cpu"}
LR_FAST = {"num_training": 30, "min_lr": 1e-4, "max_lr": 1.0}


class EpochCounter(Callback):
    epochs = 0

    def on_train_epoch_start(self, trainer, pl_module):
        self.epochs += 1


def test_tuner_config_defaults_and_spec_keys():
    config = TunerConfig()
    assert (config.auto_lr, config.auto_batch_size) == (False, False) and not config.enabled
    assert config.lr_find_kwargs == {} and config.batch_size_kwargs == {}
    TunerConfig(
        auto_lr=True,
        auto_batch_size=True,
        lr_find_kwargs={
            "min_lr": 1e-6,
            "max_lr": 1.0,
            "num_training": 100,
            "mode": "exponential",
            "early_stop_threshold": 4.0,
        },
        batch_size_kwargs={
            "mode": "binsearch",
            "steps_per_trial": 3,
            "init_val": 16,
            "max_trials": 5,
        },
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            {"lr_find_kwargs": {"min_learning_rate": 1e-5}},
            r"unknown key\(s\) \['min_learning_rate'\]; valid keys are \['min_lr', 'max_lr', 'num_training', 'mode', 'early_stop_threshold'",
        ),
        (
            {"batch_size_kwargs": {"init": 4}},
            r"unknown key\(s\) \['init'\]; valid keys are \['mode', 'steps_per_trial', 'init_val', 'max_trials'",
        ),
        (
            {"batch_size_kwargs": {"mode": "linear"}},
            r"\['mode'\] must be one of \['power', 'binsearch'\]",
        ),
        ({"lr_find_kwargs": {"mode": "power"}}, r"must be one of \['exponential', 'linear'\]"),
        ({"batch_size_kwargs": {"init_val": 0}}, "must be a positive int"),
        ({"lr_find_kwargs": {"min_lr": 1.0, "max_lr": 0.1}}, "must be below max_lr"),
    ],
)
def test_tuner_config_rejects_bad_kwargs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TunerConfig(auto_lr=True, **kwargs)


def test_fit_tunes_lr_and_batch_size_then_trains_all_epochs(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("autotimm_trainer"), "propagate", True)
    caplog.set_level(logging.INFO, logger="autotimm_trainer")
    model, data = TinyModel(lr=0.1), TinyData(num_samples=128, batch_size=8)
    counter = EpochCounter()
    trainer = AutoTrainer(
        max_epochs=2,
        default_root_dir=tmp_path,
        callbacks=[counter],
        tuner_config=TunerConfig(
            auto_lr=True,
            auto_batch_size=True,
            lr_find_kwargs=LR_FAST,
            batch_size_kwargs={
                "mode": "power",
                "init_val": 4,
                "max_trials": 3,
                "steps_per_trial": 1,
            },
        ),
        **QUIET,
    )
    trainer.fit(model, datamodule=data)
    results = trainer.tuning_results
    # power search from 4, three trials: 4, 8, 16 all fit
    assert results["batch_size"] == 16 == data.batch_size and results["previous_batch_size"] == 8
    assert results["previous_lr"] == 0.1 and results["lr"] is not None
    assert model.lr == pytest.approx(results["lr"]) and 1e-4 <= model.lr <= 1.0
    plot = Path(results["lr_plot"])
    assert plot == tmp_path / "version_0" / "lr_find.png"
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # tuning used no training epochs; its temporary checkpoints are gone
    assert counter.epochs == 2 and trainer.current_epoch == 2
    assert trainer.global_step == 2 * 8  # 128 samples / batch 16
    assert not list(tmp_path.rglob(".*.ckpt"))
    messages = "\n".join(r.message for r in caplog.records)
    assert "Batch size finder: batch_size=16 (was 8)" in messages
    assert "Learning-rate finder: lr=" in messages


def test_tune_leaves_the_weights_and_the_epoch_untouched(tmp_path):
    model, data = TinyModel(), TinyData()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer = AutoTrainer(
        default_root_dir=tmp_path,
        tuner_config=TunerConfig(auto_lr=True, lr_find_kwargs=LR_FAST),
        **QUIET,
    )
    results = trainer.tune(model, datamodule=data)
    assert results["lr"] == model.lr
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert trainer.current_epoch == 0 and trainer.global_step == 0
    assert not list(tmp_path.rglob("*.ckpt"))


def test_no_suggestion_keeps_the_lr_with_a_warning(tmp_path):
    model = TinyModel(lr=0.05)
    trainer = AutoTrainer(
        max_epochs=1,
        default_root_dir=tmp_path,
        # five points are too few for a suggestion
        tuner_config=TunerConfig(auto_lr=True, lr_find_kwargs={"num_training": 5}),
        **QUIET,
    )
    with pytest.warns(UserWarning, match=r"no suggestion.*keeping lr=0.05"):
        trainer.fit(model, datamodule=TinyData())
    assert model.lr == 0.05 and trainer.tuning_results["lr"] is None
    assert trainer.current_epoch == 1


def test_tuning_needs_somewhere_to_put_the_results(tmp_path):
    class NoLr(TinyModel):
        def __init__(self):
            super().__init__()
            del self.lr
            self.hparams.pop("lr")

    trainer = AutoTrainer(default_root_dir=tmp_path, tuner_config={"auto_lr": True}, **QUIET)
    with pytest.raises(
        ValueError, match=r"auto_lr=True\) needs the model to expose .*'lr' or 'learning_rate'"
    ):
        trainer.fit(NoLr(), datamodule=TinyData())
    data = TinyData()
    trainer = AutoTrainer(
        default_root_dir=tmp_path, tuner_config={"auto_batch_size": True}, **QUIET
    )
    with pytest.raises(ValueError, match=r"needs a 'batch_size' attribute"):
        trainer.fit(TinyModel(), data.train_dataloader(), data.val_dataloader())


def test_fast_dev_run_skips_tuning(tmp_path):
    model = TinyModel(lr=0.05)
    trainer = AutoTrainer(
        fast_dev_run=True, default_root_dir=tmp_path, tuner_config={"auto_lr": True}, **QUIET
    )
    trainer.fit(model, datamodule=TinyData())
    assert trainer.tuning_results is None and model.lr == 0.05


def test_cpu_batch_size_search_is_bounded_by_host_memory(tmp_path, monkeypatch):
    # Pretend each sample holds 1 MiB during a step and 100 MiB are available: with the guard's
    # 50 % share and 1.5x headroom, 32 fits (48 MiB) and 64 does not.
    state = {"calls": 0}
    data = TinyData(num_samples=512, batch_size=2)

    def fake_rss():
        state["calls"] += 1
        in_step = state["calls"] % 2 == 0  # calls alternate: step start, before backward
        return 10 * 2**20 + (data.batch_size * 2**20 if in_step else 0)

    monkeypatch.setattr(memory, "_process_rss", fake_rss)
    monkeypatch.setattr(memory, "_available_memory", lambda: 100 * 2**20)
    trainer = AutoTrainer(
        default_root_dir=tmp_path,
        tuner_config=TunerConfig(
            auto_batch_size=True, batch_size_kwargs={"init_val": 2, "steps_per_trial": 1}
        ),
        **QUIET,
    )
    results = trainer.tune(TinyModel(), datamodule=data)
    assert results["batch_size"] == 32 == data.batch_size


def test_guard_measures_and_stops():
    model = TinyModel()
    readings = iter([0, 4096, 0])
    guard = memory.HostMemoryGuard(rss=lambda: next(readings), available=lambda: 10_000)
    big = (torch.zeros(8, 8), torch.zeros(8))
    with guard.active():
        guard.step_start((torch.zeros(4, 8), torch.zeros(4)), model)
        guard.before_backward()
        assert guard.bytes_per_sample == 1024
        guard.step_start((torch.zeros(3, 8), torch.zeros(3)), model)  # 4.6 KB: fits
        with pytest.raises(RuntimeError, match="DefaultCPUAllocator: can't allocate memory") as err:
            guard.step_start(big, model)
    assert guard.stopped_at == 8
    assert "stopped the batch size search at 8" in str(err.value)
    # What makes Lightning's batch-size finder back off instead of failing the run.
    assert is_oom_error(err.value)
    # Outside active() (the learning-rate search) the guard neither measures nor stops.
    guard.step_start(big, model)
    guard.before_backward()
    assert guard.bytes_per_sample == 1024
    # It sees the steps through the tuning trainer's strategy: the model is never patched.
    assert not {"on_train_batch_start", "on_before_backward"} & set(model.__dict__)


def test_host_oom_error_is_what_lightning_treats_as_out_of_memory():
    # The finder backs off only on errors is_oom_error() recognises; fails if Lightning changes it.
    error = memory.host_oom_error("test")
    assert isinstance(error, RuntimeError) and is_oom_error(error)
    assert not is_oom_error(RuntimeError("some other failure"))


def test_more_than_one_device_tunes_in_one_process_or_refuses(tmp_path, monkeypatch):
    # Processes started by a launcher (LOCAL_RANK set) cannot tune: clear error, nothing trains.
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    trainer = AutoTrainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        default_root_dir=tmp_path,
        tuner_config={"auto_lr": True},
    )
    model = TinyModel()
    with pytest.raises(RuntimeError, match=r"Tune first with\s+`autotimm tune --config"):
        trainer.fit(model, datamodule=TinyData())
    assert model.lr == 0.1 and trainer.global_step == 0


def test_tuning_a_base_task(tmp_path):
    """BaseTask's lr property is what the LR finder sets; val/accuracy comes from MetricConfig."""
    model = TinyTimmTask(lr=1e-3, scheduler="none")
    data = TinyImages(num_samples=32, batch_size=8)
    trainer = AutoTrainer(
        max_epochs=1,
        checkpoint_monitor="val/accuracy",
        tuner_config=TunerConfig(
            auto_lr=True, lr_find_kwargs={"num_training": 15, "early_stop_threshold": None}
        ),
        default_root_dir=tmp_path,
        **QUIET,
    )
    trainer.fit(model, datamodule=data)
    found = trainer.tuning_results["lr"]
    assert found is not None and model.lr == model._lr == pytest.approx(found)
    assert "-val_accuracy=" in Path(trainer.best_model_path).name


def test_lr_plot_without_matplotlib_warns_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "is_available", lambda name: name != "matplotlib")
    with pytest.warns(UserWarning, match=r'pip install "\./packages/trainer\[plot\]"'):
        assert tuning._save_lr_plot(object(), tmp_path, suggest=True) is None
    assert not (tmp_path / "lr_find.png").exists()
