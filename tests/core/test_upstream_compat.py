"""What users coming from upstream AutoTimm rely on: LoggerManager.loggers, and a metric's
num_classes that differs from the model's (the model's is used, with a warning)."""

from __future__ import annotations

import pytest
import torch
from pytorch_lightning.loggers import CSVLogger

from autotimm_core import LoggerConfig, LoggerManager, MetricConfig, MetricManager


def test_logger_manager_loggers_are_the_built_lightning_loggers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    manager = LoggerManager(configs=[LoggerConfig(backend="csv", params={"name": "exp"})])
    loggers = manager.loggers
    assert [type(lg) for lg in loggers] == [CSVLogger] and loggers is manager.loggers
    assert loggers[0].name == "exp" and loggers[0].save_dir == "./logs"


def test_a_metric_num_classes_that_differs_from_the_model_is_replaced_with_a_warning():
    config = MetricConfig(
        "accuracy", "Accuracy", params={"task": "multiclass", "num_classes": 5}, stages=["val"]
    )
    with pytest.warns(UserWarning, match=r"num_classes=5 differs from the model's num_classes=3"):
        manager = MetricManager([config], num_classes=3)
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]])
    manager.update("val", logits, torch.tensor([0, 1, 2, 2]))
    values = manager.compute_all("val").scalars
    assert float(values["val/accuracy"][0]) == pytest.approx(0.75)
