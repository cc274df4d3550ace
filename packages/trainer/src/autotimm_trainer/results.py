"""``results.csv`` and ``results.png``: a fit's history, one row per epoch, in its run folder.

The loggers keep everything (per step, in their own formats); these two files are the short
version a person opens first, as Ultralytics leaves them: one row per epoch with the epoch-level
losses and metrics, the learning rate of each parameter group and the time so far, and the loss
and metric curves drawn from those rows (the drawing needs matplotlib, the trainer's ``[plot]``
extra; without it only the CSV is written, and the log says what to install).
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback

from autotimm_core._imports import install_command
from autotimm_trainer import _log

RESULTS_CSV = "results.csv"
RESULTS_PNG = "results.png"
#: Columns that come first in ``results.csv``, in this order.
LEAD_COLUMNS = ("epoch", "step", "time")


def _scalar(value: Any) -> float | None:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().cpu()) if value.numel() == 1 else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def epoch_metrics(callback_metrics: dict[str, Any]) -> dict[str, float]:
    """The epoch-level scalars of ``trainer.callback_metrics``: per-step values (``*_step``)
    are left out and ``name_epoch`` becomes ``name``."""
    row: dict[str, float] = {}
    for key, value in callback_metrics.items():
        if key.endswith("_step"):
            continue
        number = _scalar(value)
        if number is not None:
            row[key.removesuffix("_epoch")] = number
    return row


def learning_rates(trainer: pl.Trainer) -> dict[str, float]:
    """``lr`` (one optimizer, one group), else ``lr/<optimizer>-<group>`` for each."""
    groups = [
        (i, j, g["lr"])
        for i, opt in enumerate(trainer.optimizers)
        for j, g in enumerate(opt.param_groups)
        if "lr" in g
    ]
    if len(groups) == 1:
        return {"lr": float(groups[0][2])}
    return {f"lr/{i}-{j}": float(lr) for i, j, lr in groups}


class RunResults(Callback):
    """Collect one row per training epoch and write ``results.csv`` / ``results.png``.

    The files go into ``trainer.run_dir`` (AutoTrainer's run folder) or ``trainer.log_dir`` at
    the end of ``fit`` on the main process; nothing is written without a logger (``logger=False``
    means no logs at all) or with ``fast_dev_run``.

    Attributes:
        rows: the rows of the last fit, as written.
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []
        self._t0 = 0.0

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows = []
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        row = {
            "epoch": float(trainer.current_epoch + 1),
            "step": float(trainer.global_step),
            "time": round(time.perf_counter() - self._t0, 3),
        }
        row.update(epoch_metrics(dict(trainer.callback_metrics)))
        row.update(learning_rates(trainer))
        self.rows.append(row)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or not trainer.loggers or trainer.fast_dev_run:
            return
        if not self.rows:
            return
        folder = Path(getattr(trainer, "run_dir", None) or trainer.log_dir or ".")
        folder.mkdir(parents=True, exist_ok=True)
        write_csv(self.rows, folder / RESULTS_CSV)
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            _log.info(
                f"{RESULTS_PNG} needs matplotlib ({RESULTS_CSV} is written): "
                f"{install_command('autotimm-trainer[plot]')}."
            )
            return
        plot_results(self.rows, folder / RESULTS_PNG)


def write_csv(rows: list[dict[str, float]], path: Path) -> Path:
    """Write ``rows`` as CSV: the lead columns, then every other key in first-seen order
    (an epoch without a value leaves its cell empty)."""
    columns = [c for c in LEAD_COLUMNS if any(c in r for r in rows)]
    for row in rows:
        columns += [k for k in row if k not in columns]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (int(v) if k in ("epoch", "step") else v) for k, v in row.items()})
    return path


def _panels(columns: list[str]) -> dict[str, list[str]]:
    # One panel per quantity, train and val curves together: "train/loss" and "val/loss" in
    # "loss", "val/accuracy" in "accuracy"; per-class values ("val/recall/cat") stay in the CSV.
    panels: dict[str, list[str]] = {}
    for col in columns:
        if col in LEAD_COLUMNS:
            continue
        parts = col.split("/")
        if col.startswith("lr"):
            key = "learning rate"
        elif len(parts) == 2:
            key = parts[1]
        elif len(parts) == 1:
            key = col
        else:
            continue
        panels.setdefault(key, []).append(col)
    # Losses first, the learning rate last.
    order = sorted(panels, key=lambda k: 0 if "loss" in k else 2 if k == "learning rate" else 1)
    return {k: panels[k] for k in order[:12]}


def plot_results(rows: list[dict[str, float]], path: Path) -> Path:
    """Draw the curves of ``rows`` (one panel per loss, metric and the learning rate, epochs
    on the x axis) into ``path`` with matplotlib."""
    import matplotlib

    matplotlib.use("Agg")  # files only, whatever backend the session has
    import matplotlib.pyplot as plt

    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    panels = _panels(columns)
    n = max(len(panels), 1)
    ncols = min(n, 4)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4 * ncols, 3 * nrows), squeeze=False)
    for ax, (title, cols) in zip(axes.flat, panels.items()):
        for col in cols:
            points = [(r["epoch"], r[col]) for r in rows if col in r and math.isfinite(r[col])]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, marker="o", markersize=3, label=col)
        ax.set_title(title)
        ax.set_xlabel("epoch")
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def print_results_table(row: dict[str, float], best_checkpoint: str | None = None) -> None:
    """Print the last epoch's values (and the best checkpoint) as a Rich table."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"AutoTrainer: epoch {int(row.get('epoch', 0))}")
    table.add_column("value")
    table.add_column("", justify="right")
    for key, value in row.items():
        if key != "epoch":
            table.add_row(key, f"{value:.4g}")
    if best_checkpoint:
        table.add_row("best checkpoint", best_checkpoint)
    Console().print(table)
