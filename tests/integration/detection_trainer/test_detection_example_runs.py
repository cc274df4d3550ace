"""The detection example runs on a fresh machine (the built-in offline photo_objects set),
shortened: fit leaves its run folder with val/map, num_classes comes from the data, predict
writes and draws."""

from __future__ import annotations

import pytest
from example_runs import fit_example, predict_example

from autotimm_detection.data import builtin

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

EXAMPLE = "detection_quickstart.yaml"


def test_detection_example_runs_short(tmp_path, monkeypatch):
    # The example's own set, generated into this test's cache folder; fewer images per split
    # (same generator and seeds) since the short run reads two batches only.
    monkeypatch.setenv(builtin.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(
        builtin, "PHOTO_OBJECTS_SPLITS", {"train": (32, 0), "val": (16, 1), "test": (16, 2)}
    )
    root = tmp_path / "runs"
    run, rows = fit_example(EXAMPLE, root)
    assert run.model.num_classes == 3
    assert run.model.class_names == ["cat", "coffee", "astronaut"]
    assert (
        tmp_path / "cache" / "photo_objects_v1" / "annotations" / "instances_train.json"
    ).is_file()
    assert len(rows) == 1 and 0.0 <= float(rows[0]["val/map"]) <= 1.0
    out = tmp_path / "pred"
    lines = predict_example(EXAMPLE, run.trainer.best_model_path, root, out)
    assert len(lines) == 16  # one batch of the example's batch_size
    first = lines[0]
    assert len(first["boxes"]) == len(first["scores"]) == len(first["label_names"])
    names = {n for line in lines for n in line["label_names"]}
    assert names <= {"cat", "coffee", "astronaut"}
    assert len(list(out.glob("*.png"))) == 16
