"""The package logger: messages for people (tuning results, run summaries), printed on rank 0."""

from __future__ import annotations

import logging

from pytorch_lightning.utilities.rank_zero import rank_zero_only

log = logging.getLogger("autotimm_trainer")
log.setLevel(logging.INFO)
if not logging.getLogger().hasHandlers():
    # Like Lightning's own logger: visible by default, without configuring the root logger.
    log.addHandler(logging.StreamHandler())
    log.propagate = False


@rank_zero_only
def info(message: str) -> None:
    """Log ``message`` at INFO level, once (global rank 0)."""
    log.info(message)


@rank_zero_only
def warn(message: str) -> None:
    """Log ``message`` at WARNING level, once (global rank 0)."""
    log.warning(message)
