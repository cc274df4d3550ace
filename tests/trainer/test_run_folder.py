"""The run folder a fit leaves: flat, logged by default, with results.csv and results.png."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
from trainer_helpers import TinyData, TinyModel

from autotimm_core import LoggerConfig
from autotimm_trainer import AutoTrainer

QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "accelerator": "cpu"}
HAS_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def test_a_fit_leaves_one_flat_folder_with_logs_and_results(tmp_path):
    trainer = AutoTrainer(
        max_epochs=3, checkpoint_monitor="val/accuracy", default_root_dir=tmp_path, **QUIET
    )
    trainer.fit(TinyModel(), datamodule=TinyData())
    run = tmp_path / "version_0"
    assert trainer.run_dir == run and [p.name for p in tmp_path.iterdir()] == ["version_0"]
    names = {p.name for p in run.iterdir()}
    assert {"checkpoints", "metrics.csv", "hparams.yaml", "results.csv"} <= names
    assert Path(trainer.best_model_path).parent == run / "checkpoints"
    # every configured logger writes into the same folder
    assert all(Path(lg.log_dir) == run for lg in trainer.loggers)
    if HAS_TENSORBOARD:
        assert any(n.startswith("events.out.tfevents") for n in names)
    # hyperparameters logged
    assert "lr: 0.1" in (run / "hparams.yaml").read_text()

    rows = list(csv.DictReader((run / "results.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [int(r["step"]) for r in rows] == [8, 16, 24]
    assert list(rows[0])[:3] == ["epoch", "step", "time"]
    for key in ("train/loss", "val/loss", "val/accuracy", "lr"):
        assert all(r[key] for r in rows), key
    assert float(rows[0]["lr"]) == pytest.approx(0.1)
    assert 0.0 <= float(rows[-1]["val/accuracy"]) <= 1.0
    assert float(rows[0]["time"]) <= float(rows[1]["time"]) <= float(rows[2]["time"])
    # the per-step values stay in the loggers' files
    assert not any(k.endswith("_step") for k in rows[0])
    if HAS_MATPLOTLIB:
        assert (run / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"results in {run}" in trainer.summary()

    # a second fit of the same trainer (nothing left to train) gets the next folder; the first
    # is untouched
    before = (run / "results.csv").read_text()
    trainer.fit(TinyModel(), datamodule=TinyData())
    assert trainer.run_dir == tmp_path / "version_1"
    assert all(Path(lg.log_dir) == tmp_path / "version_1" for lg in trainer.loggers)
    assert (run / "results.csv").read_text() == before


def test_a_named_run_folder(tmp_path):
    for _ in range(2):
        trainer = AutoTrainer(max_epochs=1, name="digits", default_root_dir=tmp_path, **QUIET)
        trainer.fit(TinyModel(), datamodule=TinyData())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits", "digits_1"]
    for folder in ("digits", "digits_1"):
        assert (tmp_path / folder / "results.csv").is_file()
        assert (tmp_path / folder / "checkpoints").is_dir()
    with pytest.raises(ValueError, match="name must be a folder name"):
        AutoTrainer(name="a/b", default_root_dir=tmp_path)


def test_logger_configs_that_say_where_write_there(tmp_path):
    trainer = AutoTrainer(
        max_epochs=1,
        logger=[LoggerConfig(backend="csv", params={"save_dir": str(tmp_path / "elsewhere")})],
        default_root_dir=tmp_path,
        **QUIET,
    )
    trainer.fit(TinyModel(), datamodule=TinyData())
    # the logger's own folder is the run folder then, results included
    run = Path(trainer.loggers[0].log_dir)
    assert run.is_relative_to(tmp_path / "elsewhere") and trainer.run_dir == run
    assert (run / "metrics.csv").is_file() and (run / "results.csv").is_file()


def test_logger_false_writes_no_results(tmp_path):
    trainer = AutoTrainer(max_epochs=1, logger=False, default_root_dir=tmp_path, **QUIET)
    trainer.fit(TinyModel(), datamodule=TinyData())
    assert (tmp_path / "version_0" / "checkpoints").is_dir()
    assert not list(tmp_path.rglob("results.*")) and not list(tmp_path.rglob("*.csv"))


def test_rich_bar_and_table_when_rich_is_installed(tmp_path, capsys):
    pytest.importorskip("rich")
    from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar

    assert not any(
        isinstance(cb, RichProgressBar)
        for cb in AutoTrainer(enable_progress_bar=False, default_root_dir=tmp_path).callbacks
    )
    mine = TQDMProgressBar()
    assert mine in AutoTrainer(callbacks=[mine], default_root_dir=tmp_path).callbacks
    trainer = AutoTrainer(
        max_epochs=1, accelerator="cpu", enable_model_summary=False, default_root_dir=tmp_path
    )
    assert isinstance(trainer.progress_bar_callback, RichProgressBar)
    trainer.fit(TinyModel(), datamodule=TinyData())
    out = capsys.readouterr().out
    assert "AutoTrainer: epoch 1" in out and "val/accuracy" in out
