"""Default metrics of semantic segmentation (torchmetrics), and ``ignore_index`` for any others.

mIoU, per-class IoU and Dice (pixel F1) over every pixel of a stage, from torchmetrics' confusion
statistics: tensor states that sum across DDP ranks, so each image counts once whatever the
split's size (the data module's unpadded evaluation sampler).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from autotimm_core import MetricConfig
from autotimm_core.metrics import _accepted_params


def default_segmentation_metrics(ignore_index: int) -> list[MetricConfig]:
    """``val/miou`` (progress bar), ``val/iou/<class>`` and ``val/dice`` (and ``test/...``)."""
    common = {"task": "multiclass", "ignore_index": ignore_index}
    stages = ["val", "test"]
    return [
        MetricConfig(
            name="miou",
            metric_class="JaccardIndex",
            params={**common, "average": "macro"},
            stages=stages,
            prog_bar=True,
        ),
        MetricConfig(
            name="iou",
            metric_class="JaccardIndex",
            params={**common, "average": "none"},
            stages=stages,
        ),
        MetricConfig(
            name="dice",
            metric_class="F1Score",
            params={**common, "average": "macro", "multidim_average": "global"},
            stages=stages,
        ),
    ]


def with_segmentation_params(
    metrics: Sequence[MetricConfig | dict[str, Any]], ignore_index: int
) -> list[MetricConfig]:
    """The configs with ``task="multiclass"`` and the model's ``ignore_index`` filled in where
    the metric class takes them and the config leaves them out."""
    out = []
    for m in metrics:
        config = MetricConfig.coerce(m)
        accepted = _accepted_params(config.cls)
        params = dict(config.params)
        if "task" in accepted:
            params.setdefault("task", "multiclass")
        if "ignore_index" in accepted:
            params.setdefault("ignore_index", ignore_index)
        out.append(
            MetricConfig(
                name=config.name,
                metric_class=config.metric_class,
                backend=config.backend,
                params=params,
                stages=list(config.stages),
                prog_bar=config.prog_bar,
            )
        )
    return out
