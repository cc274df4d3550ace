"""Per-class results of a classification stage: the confusion matrix as a PNG and a CSV table.

:class:`~autotimm_core.BaseTask` calls :func:`report_confusion_matrix` at the end of each
validation and test (``LoggingConfig(log_confusion_matrix=True)``, the default for single-label
classification). The image needs matplotlib (the trainer's ``[plot]`` extra); without it only the
CSV is written.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.utilities import rank_zero_warn

from autotimm_core._imports import install_command, is_available

#: The CSV's columns, in order.
CSV_COLUMNS = ("class", "precision", "recall", "f1", "support")
# Above this many classes the cells carry no numbers (they would not be readable).
_MAX_ANNOTATED = 30
_warned_no_matplotlib = False


def per_class_table(
    confusion: torch.Tensor, class_names: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Precision, recall, F1 and support per class from a confusion matrix.

    Computed from the counts themselves (no second pass over the data, and the same numbers as
    torchmetrics' ``average=None`` precision/recall/F1 with ``zero_division=0``).

    Args:
        confusion: ``(C, C)`` counts, rows the true class and columns the predicted one
            (torchmetrics' ``ConfusionMatrix`` layout).
        class_names: names by class index; default (or past its end): the index.

    Returns:
        One dict per class, keys :data:`CSV_COLUMNS`; ``support`` is the number of samples of
        the class, and a ratio with nothing to divide by is 0.0.
    """
    cm = confusion.detach().to("cpu", torch.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion must be a square (C, C) matrix, got shape {tuple(cm.shape)}")
    tp = cm.diagonal()
    predicted, support = cm.sum(0), cm.sum(1)

    def ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        return torch.where(den > 0, num / den.clamp(min=1e-12), torch.zeros_like(num))

    precision, recall = ratio(tp, predicted), ratio(tp, support)
    f1 = ratio(2 * precision * recall, precision + recall)
    rows = []
    for i in range(cm.shape[0]):
        name = class_names[i] if class_names is not None and i < len(class_names) else i
        rows.append(
            {
                "class": str(name),
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
        )
    return rows


def per_class_values(
    scalars: dict[str, Any],
    stage: str,
    confusion: torch.Tensor | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, dict[str, float]]:
    """``{metric: {class name: value}}`` of one stage's results.

    From the per-class log names ``{stage}/{metric}/{class}`` (``MetricManager.compute_all``;
    class names never hold a "/" there), plus, from a confusion matrix, each class's
    ``"recall"`` (its accuracy) when no per-class metric of that name was logged.
    """
    out: dict[str, dict[str, float]] = {}
    prefix = f"{stage}/"
    for name, value in scalars.items():
        if not name.startswith(prefix):
            continue
        metric, sep, cls = name[len(prefix) :].rpartition("/")
        if not sep or not metric:
            continue
        v = value[0] if isinstance(value, tuple) else value
        out.setdefault(metric, {})[cls] = float(v)
    if confusion is not None and "recall" not in out:
        rows = per_class_table(confusion, class_names)
        out["recall"] = {str(r["class"]): r["recall"] for r in rows if r["support"] > 0}
    return out


def best_and_worst(values: dict[str, float], k: int = 3) -> str:
    """``"worst a 0.12, b 0.40; best c 0.98, d 0.95"`` (all classes, worst first, when there are
    at most ``2 * k``)."""
    ranked = sorted(values.items(), key=lambda kv: (kv[1], kv[0]))
    if len(ranked) <= 2 * k:
        return "from worst: " + ", ".join(f"{c} {v:.3g}" for c, v in ranked)
    worst = ", ".join(f"{c} {v:.3g}" for c, v in ranked[:k])
    best = ", ".join(f"{c} {v:.3g}" for c, v in reversed(ranked[-k:]))
    return f"worst {worst}; best {best}"


def write_per_class_csv(
    path: str | Path, confusion: torch.Tensor, class_names: Sequence[str] | None = None
) -> Path:
    """Write :func:`per_class_table` as a CSV file (header :data:`CSV_COLUMNS`); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        for row in per_class_table(confusion, class_names):
            writer.writerow({k: f"{v:.6f}" if isinstance(v, float) else v for k, v in row.items()})
    return path


def confusion_matrix_figure(
    confusion: torch.Tensor, class_names: Sequence[str] | None = None, title: str = ""
) -> Any:
    """A matplotlib ``Figure`` of the matrix (true class down, predicted class across).

    Cells are shaded by the share of their row (so rare classes read as well as common ones) and
    show the counts up to 30 classes. Raises ImportError naming the package if matplotlib is
    missing.
    """
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, safe off the main thread

    cm = confusion.detach().cpu()
    n = cm.shape[0]
    names = [
        str(class_names[i]) if class_names is not None and i < len(class_names) else str(i)
        for i in range(n)
    ]
    side = min(max(4.0, 0.45 * n + 2.0), 24.0)
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.subplots()
    counts = cm.to(torch.float64)
    shares = counts / counts.sum(1, keepdim=True).clamp(min=1)
    image = ax.imshow(shares.numpy(), cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), names, rotation=90 if n > 10 else 45, ha="right" if n <= 10 else None)
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    if n <= _MAX_ANNOTATED:
        integral = not cm.is_floating_point()
        for i in range(n):
            for j in range(n):
                v = float(counts[i, j])
                text = f"{int(v)}" if integral else f"{v:.2g}"
                colour = "white" if float(shares[i, j]) > 0.5 else "black"
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    return fig


def report_confusion_matrix(
    trainer: Any,
    stage: str,
    confusion: torch.Tensor,
    class_names: Sequence[str] | None = None,
    log_dir: str | Path | None = None,
    name: str = "confusion_matrix",
) -> dict[str, Path]:
    """Write ``{name}_<stage>.png`` and ``per_class_<stage>.csv`` and send the image to loggers.

    For a matrix of another ``name`` the table is ``{name}_per_class_<stage>.csv``.

    Call it on global rank 0 only. The CSV is written for counts (an integer matrix) only; the
    PNG needs matplotlib (a warning, once, names the package when it is missing). TensorBoard
    gets the figure (``add_figure``), W&B the image (``log_image``), MLflow both files as
    artifacts; other loggers get nothing.

    Args:
        trainer: the running Lightning Trainer (its loggers and ``global_step``).
        stage: ``"val"`` or ``"test"``: part of the file names and the logged tag.
        confusion: the ``(C, C)`` matrix (rows true, columns predicted).
        class_names: names by class index. Default: the indices.
        log_dir: the folder to write into. Default ``trainer.log_dir`` (which under DDP is a
            collective call: pass it when calling from rank 0 only).
        name: the matrix's name, the start of the PNG's file name and of the logged tag.
            Default ``"confusion_matrix"``.

    Returns:
        ``{"png": path, "csv": path}`` for the files written.
    """
    global _warned_no_matplotlib
    folder = Path(log_dir if log_dir is not None else trainer.log_dir or trainer.default_root_dir)
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    if not confusion.is_floating_point():
        # The default matrix's table is per_class_<stage>.csv; another one's carries its name.
        table = (
            f"per_class_{stage}.csv"
            if name == "confusion_matrix"
            else f"{name}_per_class_{stage}.csv"
        )
        written["csv"] = write_per_class_csv(folder / table, confusion, class_names)
    figure = None
    if not is_available("matplotlib"):
        if not _warned_no_matplotlib:
            _warned_no_matplotlib = True
            rank_zero_warn(
                "The confusion matrix image needs matplotlib, which is not installed, so only "
                "the per-class CSV is written. Install matplotlib (pip install matplotlib) or "
                f"the trainer's plot extra: {install_command('autotimm-trainer[plot]')}."
            )
    else:
        epoch = getattr(trainer, "current_epoch", None)
        title = f"{stage}" + (f", epoch {epoch}" if stage == "val" and epoch is not None else "")
        figure = confusion_matrix_figure(confusion, class_names, title=title)
        png = folder / f"{name}_{stage}.png"
        figure.savefig(png, dpi=100)
        written["png"] = png
    _send_to_loggers(trainer, f"{stage}/{name}", figure, written)
    return written


def _send_to_loggers(trainer: Any, tag: str, figure: Any, files: dict[str, Path]) -> None:
    from pytorch_lightning.loggers import MLFlowLogger, TensorBoardLogger, WandbLogger

    step = int(getattr(trainer, "global_step", 0))
    for logger in getattr(trainer, "loggers", []) or []:
        try:
            if isinstance(logger, TensorBoardLogger) and figure is not None:
                logger.experiment.add_figure(tag, figure, global_step=step, close=False)
            elif isinstance(logger, WandbLogger) and "png" in files:
                logger.log_image(key=tag, images=[str(files["png"])], step=step)
            elif isinstance(logger, MLFlowLogger):
                for path in files.values():
                    logger.experiment.log_artifact(logger.run_id, str(path))
        except Exception as err:  # a logger that cannot take the image must not stop the run
            rank_zero_warn(f"Could not send {tag} to {type(logger).__name__}: {err}")
