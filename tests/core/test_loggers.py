import builtins

import pytest
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from autotimm_core import LoggerConfig, LoggerManager, LoggingConfig


def test_logger_manager_builds_lightning_loggers(tmp_path):
    mgr = LoggerManager(
        [
            LoggerConfig(backend="tensorboard", params={"save_dir": str(tmp_path / "tb")}),
            LoggerConfig(backend="csv"),
            {"backend": "csv", "params": {"name": "second"}},
        ]
    )
    loggers = mgr.build(default_root_dir=str(tmp_path))
    assert [type(x) for x in loggers] == [TensorBoardLogger, CSVLogger, CSVLogger]
    assert loggers[0].save_dir == str(tmp_path / "tb")
    assert loggers[1].save_dir == str(tmp_path / "logs")  # default under the root dir
    assert loggers[2].name == "second"
    assert len(mgr) == 3


def test_unknown_backend_lists_choices():
    with pytest.raises(ValueError, match=r"\['csv', 'mlflow', 'tensorboard', 'wandb'\]"):
        LoggerConfig(backend="neptune")


def test_missing_package_names_pip_install(monkeypatch):
    real_import = builtins.__import__

    def no_wandb(name, *args, **kwargs):
        if name == "wandb" or name.startswith("wandb."):
            raise ModuleNotFoundError("No module named 'wandb'", name="wandb")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_wandb)
    with pytest.raises(ImportError, match="pip install wandb"):
        LoggerConfig(backend="wandb", params={"project": "x"}).build()


def test_logging_config_defaults_and_validation():
    cfg = LoggingConfig()
    assert cfg.log_learning_rate is False and cfg.log_gradient_norm is False
    assert LoggingConfig.coerce({"log_learning_rate": True}).log_learning_rate is True
    with pytest.raises(ValueError, match="log_every_n_steps"):
        LoggingConfig(log_every_n_steps=0)
