"""The autotimm command: LightningCLI with AutoTrainer, task discovery, `tune`."""

from __future__ import annotations

import logging
import re
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
import yaml
from trainer_helpers import TinyData, TinyModel

import autotimm_trainer.cli as cli
from autotimm_trainer import AutoTrainer

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, model_path: str = "trainer_helpers.TinyModel", **trainer) -> Path:
    config = {
        "trainer": {
            "max_epochs": 2,
            "accelerator": "cpu",
            "default_root_dir": str(tmp_path),
            "checkpoint_monitor": "val/accuracy",
            "enable_progress_bar": False,
            **trainer,
        },
        "model": {"class_path": model_path, "init_args": {"lr": 0.2}},
        "data": {"class_path": "trainer_helpers.TinyData", "init_args": {"batch_size": 4}},
    }
    path = tmp_path / "input.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_fit_from_a_config_file(tmp_path):
    config = write_config(tmp_path, tuner_config={"auto_lr": False})
    run = cli.build_cli(["fit", "--config", str(config)])
    trainer = run.trainer
    assert isinstance(trainer, AutoTrainer) and isinstance(run.model, TinyModel)
    assert isinstance(run.datamodule, TinyData) and run.datamodule.batch_size == 4
    assert trainer.current_epoch == 2 and run.model.lr == 0.2
    best = Path(trainer.best_model_path)
    assert best.parent == tmp_path / "version_0" / "checkpoints" and best.is_file()
    # LightningCLI's config copy lands in the run folder, not in the shared root
    saved = yaml.safe_load((tmp_path / "version_0" / "config.yaml").read_text())
    assert saved["trainer"]["checkpoint_monitor"] == "val/accuracy"
    # a second run neither collides with the saved config nor overwrites checkpoints
    cli.build_cli(["fit", "--config", str(config), "--trainer.max_epochs", "1"])
    assert (tmp_path / "version_1" / "config.yaml").is_file() and best.is_file()


def test_validate_and_test_with_a_checkpoint(tmp_path):
    config = write_config(tmp_path, max_epochs=1)
    run = cli.build_cli(["fit", "--config", str(config)])
    ckpt = run.trainer.best_model_path
    run = cli.build_cli(["validate", "--config", str(config), "--ckpt_path", ckpt])
    assert "val/accuracy" in run.trainer.callback_metrics
    run = cli.build_cli(["test", "--config", str(config), "--ckpt_path", ckpt])
    assert "test/loss" in run.trainer.callback_metrics


def test_tune_prints_suggestions_and_trains_nothing(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(logging.getLogger("autotimm_trainer"), "propagate", True)
    caplog.set_level(logging.INFO, logger="autotimm_trainer")
    config = write_config(
        tmp_path,
        tuner_config={
            "auto_lr": True,
            "auto_batch_size": True,
            "lr_find_kwargs": {"num_training": 30},
            "batch_size_kwargs": {"init_val": 4, "max_trials": 2, "steps_per_trial": 1},
        },
    )
    run = cli.build_cli(["tune", "--config", str(config)])
    results = run.trainer.tuning_results
    assert results["batch_size"] == 8 and results["lr"] is not None
    text = "\n".join(r.message for r in caplog.records)
    assert "data.init_args.batch_size: 8" in text
    assert re.search(r"model\.init_args\.lr: [0-9.e-]+", text)
    assert not list(tmp_path.rglob("*.ckpt")) and run.trainer.global_step == 0


def test_bad_trainer_argument_is_reported_by_the_parser(tmp_path, capsys):
    config = write_config(tmp_path, checkpoint_mode="best")
    # rejected by the parser before anything is built (issue 17; was AutoTrainer's ValueError)
    with pytest.raises(SystemExit):
        cli.build_cli(["fit", "--config", str(config)])
    assert "trainer.checkpoint_mode='best' is not one of: max, min" in capsys.readouterr().err


def test_tasks_from_entry_points_are_selectable_by_class_name(tmp_path, monkeypatch):
    eps = [
        EntryPoint("TinyModel", "trainer_helpers:TinyModel", cli.ENTRY_POINT_GROUP),
        EntryPoint("TinyData", "trainer_helpers:TinyData", cli.ENTRY_POINT_GROUP),
        EntryPoint("Broken", "no_such_module_xyz:Thing", cli.ENTRY_POINT_GROUP),
        EntryPoint("NotATask", "pathlib:Path", cli.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(cli, "entry_points", lambda group: [e for e in eps if e.group == group])
    with pytest.warns(UserWarning) as record:
        found = cli.load_tasks()
    assert found == {"TinyModel": TinyModel, "TinyData": TinyData}
    messages = " ".join(str(w.message) for w in record)
    assert "could not load Broken" in messages and "NotATask" in messages
    config = write_config(tmp_path, model_path="TinyModel", max_epochs=1)
    run = cli.build_cli(["fit", "--config", str(config)])
    assert type(run.model) is TinyModel and run.trainer.current_epoch == 1


def test_installed_tasks_are_listed_and_looked_up_by_class_name(monkeypatch):
    eps = [
        EntryPoint("TinyModel", "trainer_helpers:TinyModel", cli.ENTRY_POINT_GROUP),
        EntryPoint("TinyData", "trainer_helpers:TinyData", cli.ENTRY_POINT_GROUP),
        EntryPoint("Broken", "no_such_module_xyz:Thing", cli.ENTRY_POINT_GROUP),
    ]
    monkeypatch.setattr(cli, "entry_points", lambda group: [e for e in eps if e.group == group])
    monkeypatch.setattr(cli, "_TASKS", None)  # nothing loaded yet: list_tasks loads
    with pytest.warns(UserWarning, match="could not load Broken"):
        assert cli.list_tasks() == ["TinyData", "TinyModel"]
    assert cli.list_tasks("*Model") == ["TinyModel"]
    assert cli.get_task("TinyModel") is TinyModel
    with pytest.raises(ValueError, match=r"Unknown task 'TinyModle'\. Did you mean: TinyModel"):
        cli.get_task("TinyModle")
    # a load of another group leaves the installed tasks alone
    assert cli.load_tasks("no.such.group") == {}
    assert cli.list_tasks() == ["TinyData", "TinyModel"]


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name
)
def test_examples_parse(example, monkeypatch):
    """Every example config parses against the installed classes (runs are not timed here)."""
    monkeypatch.chdir(ROOT)  # examples name their data relative to the repository, where they run
    config = yaml.safe_load(example.read_text())
    for section in ("model", "data"):
        module = config[section]["class_path"].rpartition(".")[0]
        pytest.importorskip(module)
    cli.build_cli(["--config", str(example)], run=False)
