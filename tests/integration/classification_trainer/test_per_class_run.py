"""A short AutoTrainer fit of ImageClassifier leaves the per-class results in its run folder."""

from __future__ import annotations

import csv

import pytest
from reliability_helpers import classifier_and_data, colour_folder, trainer

from autotimm_core import LoggerConfig, MetricConfig

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _rows(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_run_folder_holds_confusion_matrix_and_per_class_table(tmp_path):
    pytest.importorskip("matplotlib")
    model, data = classifier_and_data(colour_folder(tmp_path / "data"))
    t = trainer(tmp_path / "out", max_epochs=1)
    t.fit(model, datamodule=data)
    run = t.run_dir
    assert (run / "confusion_matrix_val.png").read_bytes()[:8] == PNG_SIGNATURE
    rows = _rows(run / "per_class_val.csv")
    # The class names come from the image folders; 2 validation images per class.
    assert [r["class"] for r in rows] == ["blue", "green", "red"]
    assert [int(r["support"]) for r in rows] == [2, 2, 2]
    for r in rows:
        assert 0.0 <= float(r["precision"]) <= 1.0 and 0.0 <= float(r["f1"]) <= 1.0


def test_loggers_get_per_class_values_and_the_image(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    metrics = [
        MetricConfig("accuracy", "Accuracy", stages=["val"]),
        MetricConfig("recall", "Recall", params={"average": None}, stages=["val"]),
    ]
    model, data = classifier_and_data(colour_folder(tmp_path / "data"), metrics=metrics)
    t = trainer(
        tmp_path / "out",
        max_epochs=1,
        logger=[
            LoggerConfig(backend="csv", params={"name": "csv"}),
            LoggerConfig(backend="tensorboard", params={"name": "tb"}),
        ],
    )
    t.fit(model, datamodule=data)
    run = t.run_dir  # the first logger's folder
    assert (run / "confusion_matrix_val.png").is_file() and (run / "per_class_val.csv").is_file()
    (logged,) = [r for r in _rows(run / "metrics.csv") if r.get("val/recall/red")]
    # Recall per class is the CSV's recall column of the same epoch.
    table = {r["class"]: float(r["recall"]) for r in _rows(run / "per_class_val.csv")}
    for name in ("blue", "green", "red"):
        assert float(logged[f"val/recall/{name}"]) == pytest.approx(table[name], abs=1e-6)
    events = EventAccumulator(t.loggers[1].log_dir)
    events.Reload()
    assert "val/confusion_matrix" in events.Tags()["images"]


def test_fit_summary_names_the_worst_and_best_classes(tmp_path):
    model, data = classifier_and_data(colour_folder(tmp_path / "data"))
    t = trainer(tmp_path / "out", max_epochs=1)
    t.fit(model, datamodule=data)
    first, second = t.summary().splitlines()
    assert first.startswith("AutoTrainer: 1 epoch")
    # Recall of each class in the last validation (from the confusion matrix), worst first.
    recall = {r["class"]: float(r["recall"]) for r in _rows(t.run_dir / "per_class_val.csv")}
    ranked = sorted(recall.items(), key=lambda kv: (kv[1], kv[0]))
    listing = ", ".join(f"{c} {v:.3g}" for c, v in ranked)
    assert second == f"val recall per class: from worst: {listing} (last validation)"
