"""Per-class results: the table from a confusion matrix, its CSV and PNG, and what BaseTask writes."""

import csv
import warnings

import pytest
import pytorch_lightning as pl
import torch
from tiny_task import TinyTask
from torch.utils.data import DataLoader, TensorDataset

from autotimm_core import LoggingConfig, per_class
from autotimm_core.per_class import per_class_table, report_confusion_matrix, write_per_class_csv

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# Rows: true class; columns: predicted class.
CM = torch.tensor([[5, 1, 0], [2, 3, 0], [0, 0, 0]])


def test_table_from_a_known_confusion_matrix():
    rows = per_class_table(CM, ["cat", "dog", "bird"])
    assert [r["class"] for r in rows] == ["cat", "dog", "bird"]
    cat, dog, bird = rows
    # cat: 5 of 7 predicted cats are cats, 5 of 6 cats found.
    assert cat["precision"] == pytest.approx(5 / 7)
    assert cat["recall"] == pytest.approx(5 / 6)
    assert cat["f1"] == pytest.approx(2 * (5 / 7) * (5 / 6) / (5 / 7 + 5 / 6))
    assert cat["support"] == 6
    assert dog["precision"] == pytest.approx(3 / 4)
    assert dog["recall"] == pytest.approx(3 / 5)
    assert dog["support"] == 5
    # A class never seen nor predicted: zeros, not NaN.
    assert bird == {"class": "bird", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_table_matches_torchmetrics_per_class_scores():
    from torchmetrics.functional.classification import (
        multiclass_confusion_matrix,
        multiclass_f1_score,
    )

    preds = torch.tensor([0, 0, 1, 1, 2, 0, 2, 1])
    target = torch.tensor([0, 1, 1, 2, 2, 0, 0, 1])
    rows = per_class_table(multiclass_confusion_matrix(preds, target, 3))
    f1 = multiclass_f1_score(preds, target, 3, average=None)
    assert [r["f1"] for r in rows] == pytest.approx(f1.tolist())
    assert [r["class"] for r in rows] == ["0", "1", "2"]  # no names: the index


def test_table_rejects_a_non_square_matrix():
    with pytest.raises(ValueError, match=r"square \(C, C\) matrix, got shape \(2, 3\)"):
        per_class_table(torch.zeros(2, 3))


def test_csv_values(tmp_path):
    path = write_per_class_csv(tmp_path / "per_class_val.csv", CM, ["cat", "dog", "bird"])
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["class", "precision", "recall", "f1", "support"]
    assert rows[0]["class"] == "cat"
    assert float(rows[0]["precision"]) == pytest.approx(5 / 7, abs=1e-6)
    assert float(rows[1]["recall"]) == pytest.approx(0.6, abs=1e-6)
    assert [int(r["support"]) for r in rows] == [6, 5, 0]


class _Trainer:
    """What report_confusion_matrix reads from a Trainer."""

    def __init__(self, log_dir, loggers=()):
        self.log_dir, self.default_root_dir, self.loggers = (
            str(log_dir),
            str(log_dir),
            list(loggers),
        )
        self.global_step, self.current_epoch = 7, 2


def test_png_and_csv_written(tmp_path):
    pytest.importorskip("matplotlib")
    written = report_confusion_matrix(_Trainer(tmp_path), "val", CM, ["cat", "dog", "bird"])
    assert written == {
        "png": tmp_path / "confusion_matrix_val.png",
        "csv": tmp_path / "per_class_val.csv",
    }
    assert (tmp_path / "confusion_matrix_val.png").read_bytes()[:8] == PNG_SIGNATURE
    assert (tmp_path / "per_class_val.csv").is_file()


def test_without_matplotlib_only_the_csv_and_one_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(per_class, "is_available", lambda name: name != "matplotlib")
    monkeypatch.setattr(per_class, "_warned_no_matplotlib", False)
    with pytest.warns(UserWarning, match=r'pip install "\./packages/trainer\[plot\]"'):
        written = report_confusion_matrix(_Trainer(tmp_path), "test", CM)
    assert set(written) == {"csv"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["per_class_test.csv"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once only
        report_confusion_matrix(_Trainer(tmp_path), "val", CM)


def test_tensorboard_gets_the_figure(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tensorboard")
    from pytorch_lightning.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = TensorBoardLogger(tmp_path / "tb")
    report_confusion_matrix(_Trainer(tmp_path, [logger]), "val", CM, ["cat", "dog", "bird"])
    logger.experiment.flush()
    events = EventAccumulator(logger.log_dir)
    events.Reload()
    assert events.Tags()["images"] == ["val/confusion_matrix"]
    (image,) = events.Images("val/confusion_matrix")
    assert image.step == 7
    assert image.encoded_image_string[:8] == PNG_SIGNATURE


def TinyClassifier(num_classes=3, logging_config=None, metric_task=None, metrics=None):
    """The core tests' tiny task with three named classes and no scheduler."""
    return TinyTask(
        num_classes=num_classes,
        logging_config=logging_config,
        metric_task=metric_task,
        metrics=metrics,
        scheduler=None,
        class_names=["red", "green", "blue"],
    )


def _loader(n=12):
    y = torch.arange(n) % 3
    x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1)) + y.view(-1, 1, 1, 1)
    return DataLoader(TensorDataset(x, y), batch_size=6)


def _fit_and_test(model, root):
    trainer = pl.Trainer(
        default_root_dir=root,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, _loader(), _loader())
    trainer.test(model, _loader(), verbose=False)
    return trainer


def test_task_writes_confusion_matrix_and_table_for_val_and_test(tmp_path):
    pytest.importorskip("matplotlib")
    _fit_and_test(TinyClassifier(), tmp_path)
    names = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert names == [
        "confusion_matrix_test.png",
        "confusion_matrix_val.png",
        "per_class_test.csv",
        "per_class_val.csv",
    ]
    assert (tmp_path / "confusion_matrix_val.png").read_bytes()[:8] == PNG_SIGNATURE
    with (tmp_path / "per_class_test.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [r["class"] for r in rows] == ["red", "green", "blue"]
    assert [int(r["support"]) for r in rows] == [4, 4, 4]  # every test sample counted once


def test_log_confusion_matrix_false_writes_nothing(tmp_path):
    model = TinyClassifier(logging_config=LoggingConfig(log_confusion_matrix=False))
    assert not model.metric_manager.has("train")
    _fit_and_test(model, tmp_path)
    assert not [p for p in tmp_path.iterdir() if p.suffix in (".png", ".csv")]


def test_no_confusion_matrix_for_multilabel():
    model = TinyClassifier(metric_task="multilabel", metrics=[])
    assert not model.metric_manager.has("val")


def test_logging_config_flag_must_be_a_bool():
    with pytest.raises(
        ValueError, match=r"LoggingConfig.log_confusion_matrix must be True or False"
    ):
        LoggingConfig(log_confusion_matrix="yes")
    assert LoggingConfig().log_confusion_matrix is True
    assert LoggingConfig.coerce({"log_learning_rate": True}).log_confusion_matrix is True


def test_per_class_values_and_summary_name_worst_and_best():
    from autotimm_core.per_class import best_and_worst, per_class_values

    scalars = {
        "val/accuracy": (torch.tensor(0.5), True),
        "val/f1/cat": (torch.tensor(0.9), False),
        "val/f1/dog": (torch.tensor(0.2), False),
        "train/f1/cat": (torch.tensor(0.1), False),
    }
    # Per-class log names give the metric's values; the matrix adds recall by class name.
    found = per_class_values(scalars, "val", CM, ["cat", "dog", "bird"])
    assert found["f1"] == {"cat": pytest.approx(0.9), "dog": pytest.approx(0.2)}
    assert found["recall"] == {"cat": pytest.approx(5 / 6), "dog": pytest.approx(3 / 5)}
    assert best_and_worst({"a": 0.5, "b": 0.1, "c": 0.9}) == "from worst: b 0.1, a 0.5, c 0.9"
    many = {f"c{i}": i / 10 for i in range(10)}
    assert best_and_worst(many, k=2) == "worst c0 0, c1 0.1; best c9 0.9, c8 0.8"
