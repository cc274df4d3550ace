"""Whether a monitored metric is better higher or lower: one rule for checkpoints and schedulers."""

from __future__ import annotations

#: Words that mark a metric as better when lower (matched in the last part of ``val/loss``...).
LOWER_IS_BETTER = ("loss", "error", "err", "mse", "mae", "rmse", "nll", "perplexity", "wer", "cer")


def monitor_mode(name: str) -> str:
    """``"min"`` for a loss- or error-like metric name, else ``"max"``.

    The last ``/``-separated part of the name is split on ``_`` and ``-``: ``val/loss``,
    ``val/loss_bbox_regression``, ``test/error_rate`` and ``val/mse`` are ``"min"``;
    ``val/accuracy``, ``val/map_50`` and ``val/f1`` are ``"max"``.
    """
    last = str(name).rsplit("/", 1)[-1].lower()
    parts = last.replace("-", "_").split("_")
    return "min" if any(p in LOWER_IS_BETTER for p in parts) else "max"
