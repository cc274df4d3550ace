"""The classification example runs on a fresh machine (built-in offline digits), shortened:
fit leaves its run folder, num_classes comes from the data, predict writes and draws."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from autotimm_trainer import cli

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "classification_quickstart.yaml"
SHORT = [
    "--trainer.max_epochs",
    "1",
    "--trainer.limit_train_batches",
    "2",
    "--trainer.limit_val_batches",
    "1",
    "--trainer.enable_progress_bar",
    "false",
]


def test_classification_example_runs_short(tmp_path):
    root = tmp_path / "runs"
    run = cli.build_cli(
        ["fit", "--config", str(EXAMPLE), *SHORT, "--trainer.default_root_dir", str(root)]
    )
    assert run.model.num_classes == 10 and run.model.class_names == [str(i) for i in range(10)]
    folder = root / "version_0"
    names = {p.name for p in folder.iterdir()}
    assert {"checkpoints", "config.yaml", "hparams.yaml", "metrics.csv", "results.csv"} <= names
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert len(rows) == 1 and 0.0 <= float(rows[0]["val/accuracy"]) <= 1.0
    out = tmp_path / "pred"
    cli.build_cli(
        [
            *("predict", "--config", str(EXAMPLE), "--ckpt_path", run.trainer.best_model_path),
            *("--trainer.limit_predict_batches", "1", "--trainer.enable_progress_bar", "false"),
            *("--trainer.default_root_dir", str(root), "--output_dir", str(out), "--draw", "true"),
        ]
    )
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 32  # one batch of the example's batch_size
    assert {d["label"] for d in lines[0]["predictions"]} <= {str(i) for i in range(10)}
    assert len(lines[0]["predictions"]) == 5 and len(list(out.glob("*.png"))) == 32
