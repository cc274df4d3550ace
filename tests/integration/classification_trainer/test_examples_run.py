"""The classification example runs on a fresh machine (built-in offline digits), shortened:
fit leaves its run folder, num_classes comes from the data, predict writes and draws."""

from __future__ import annotations

import pytest
from example_runs import fit_example, predict_example

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

EXAMPLE = "classification_quickstart.yaml"


def test_classification_example_runs_short(tmp_path):
    root = tmp_path / "runs"
    run, rows = fit_example(EXAMPLE, root)
    assert run.model.num_classes == 10 and run.model.class_names == [str(i) for i in range(10)]
    assert len(rows) == 1 and 0.0 <= float(rows[0]["val/accuracy"]) <= 1.0
    out = tmp_path / "pred"
    lines = predict_example(EXAMPLE, run.trainer.best_model_path, root, out)
    assert len(lines) == 32  # one batch of the example's batch_size
    assert {d["label"] for d in lines[0]["predictions"]} <= {str(i) for i in range(10)}
    assert len(lines[0]["predictions"]) == 5 and len(list(out.glob("*.png"))) == 32
