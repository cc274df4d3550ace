"""Shortened runs of the examples/ YAML files through the CLI, for the per-task example tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
#: One epoch of two training batches and one validation batch, without the progress bar.
SHORT = [
    *("--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"),
    *("--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"),
]


def fit_example(name: str, root: Path) -> tuple[Any, list[dict[str, str]]]:
    """``autotimm fit --config examples/<name>`` shortened, into ``root``; checks that the run
    folder holds what every run leaves and returns the CLI object and ``results.csv``'s rows."""
    from autotimm_trainer import cli

    run = cli.build_cli(
        ["fit", "--config", str(EXAMPLES / name), *SHORT, "--trainer.default_root_dir", str(root)]
    )
    folder = root / "version_0"
    names = {p.name for p in folder.iterdir()}
    assert {"checkpoints", "config.yaml", "hparams.yaml", "metrics.csv", "results.csv"} <= names
    with (folder / "results.csv").open() as f:
        return run, list(csv.DictReader(f))


def predict_example(name: str, ckpt_path: str, root: Path, out: Path) -> list[dict[str, Any]]:
    """``autotimm predict`` of one batch with ``--output_dir out --draw true``; returns the
    records of ``predictions.jsonl``."""
    from autotimm_trainer import cli

    cli.build_cli(
        [
            *("predict", "--config", str(EXAMPLES / name), "--ckpt_path", ckpt_path),
            *("--trainer.limit_predict_batches", "1", "--trainer.enable_progress_bar", "false"),
            *("--trainer.default_root_dir", str(root), "--output_dir", str(out), "--draw", "true"),
        ]
    )
    return [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
