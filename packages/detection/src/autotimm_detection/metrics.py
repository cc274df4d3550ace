"""COCO mAP through torchmetrics' MeanAveragePrecision, set up to match pycocotools exactly."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torchmetrics.detection import MeanAveragePrecision

from autotimm_core import MetricConfig
from autotimm_core._imports import is_available

#: COCO's thresholds as float64 lists: torchmetrics' own defaults are float32 and move the
#: stats by up to 1e-4 against pycocotools.
COCO_IOU_THRESHOLDS: list[float] = np.linspace(0.5, 0.95, 10).tolist()
COCO_REC_THRESHOLDS: list[float] = np.linspace(0.0, 1.0, 101).tolist()
#: Entries of MeanAveragePrecision's result that are not summary statistics.
_NON_STATS = ("classes", "map_per_class", "mar_100_per_class")
#: The twelve COCO summary statistics, in the order of pycocotools' ``COCOeval.stats``.
COCO_STAT_KEYS = (
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
)


def default_map_backend() -> str:
    """``"faster_coco_eval"`` when installed (same numbers, several times faster), else pycocotools."""
    return "faster_coco_eval" if is_available("faster_coco_eval") else "pycocotools"


def exact_map_params(params: dict[str, Any]) -> dict[str, Any]:
    """MeanAveragePrecision params with COCO's exact thresholds and the fastest backend filled in
    where ``params`` leaves them out."""
    out = dict(params)
    out.setdefault("iou_thresholds", list(COCO_IOU_THRESHOLDS))
    out.setdefault("rec_thresholds", list(COCO_REC_THRESHOLDS))
    out.setdefault("backend", default_map_backend())
    return out


class COCOMeanAveragePrecision(MeanAveragePrecision):
    """MeanAveragePrecision with pycocotools-exact defaults, returning only the summary statistics.

    Args:
        box_format: ``"xyxy"`` (default), ``"xywh"`` or ``"cxcywh"``.
        iou_type: ``"bbox"`` (default).
        iou_thresholds: default COCO's 0.5:0.05:0.95 as float64.
        rec_thresholds: default COCO's 0:0.01:1 as float64.
        backend: default ``faster_coco_eval`` when installed, else ``pycocotools``.
        **kwargs: further MeanAveragePrecision arguments (``class_metrics``...).
    """

    def __init__(
        self,
        box_format: str = "xyxy",
        iou_type: str = "bbox",
        iou_thresholds: list[float] | None = None,
        rec_thresholds: list[float] | None = None,
        backend: str | None = None,
        **kwargs: Any,
    ) -> None:
        params = exact_map_params(
            {
                k: v
                for k, v in {
                    "iou_thresholds": iou_thresholds,
                    "rec_thresholds": rec_thresholds,
                    "backend": backend,
                }.items()
                if v is not None
            }
        )
        super().__init__(box_format=box_format, iou_type=iou_type, **params, **kwargs)

    def _sync_dist(self, dist_sync_fn: Any = None, process_group: Any | None = None) -> None:
        """Gather every rank's per-image states in one ``all_gather_object`` call.

        torchmetrics gathers these list states one list entry per collective call, so ranks that
        evaluated different numbers of images (as an unpadded evaluation sampler gives them) make
        different numbers of calls and hang. Here each rank sends all its states at once, whatever
        their length; the result is rank-major and the same on every rank. ``dist_sync_fn`` is
        not used.
        """
        group = process_group or self.process_group
        local = {
            attr: [t.cpu() if isinstance(t, torch.Tensor) else t for t in getattr(self, attr)]
            for attr in self._reductions
        }
        gathered: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, local, group=group)
        for attr in self._reductions:
            setattr(
                self,
                attr,
                [
                    t.to(self.device) if isinstance(t, torch.Tensor) else t
                    for states in gathered
                    for t in states[attr]
                ],
            )

    def compute(self) -> dict[str, torch.Tensor]:
        result = super().compute()
        keep_per_class = getattr(self, "class_metrics", False)
        return {k: v for k, v in result.items() if keep_per_class or k not in _NON_STATS}


def default_map_config() -> MetricConfig:
    """``map`` on val and test, logged as ``val/map``, ``val/map_50``... (progress bar: yes)."""
    return MetricConfig(
        name="map",
        backend="custom",
        metric_class="autotimm_detection.metrics.COCOMeanAveragePrecision",
        stages=["val", "test"],
        prog_bar=True,
    )


def with_exact_map_params(
    metrics: Sequence[MetricConfig | dict[str, Any]] | None,
) -> list[MetricConfig] | None:
    """Fill COCO-exact thresholds and the backend into every MeanAveragePrecision config.

    A config of torchmetrics' own ``MeanAveragePrecision`` becomes a
    :class:`COCOMeanAveragePrecision` with the same parameters: the same numbers, minus the
    non-scalar per-class entries unless ``class_metrics=True``, and a sync that works when DDP
    ranks evaluated different numbers of images.
    """
    if metrics is None:
        return None
    out = []
    for m in metrics:
        config = MetricConfig.coerce(m)
        cls = config.cls
        if issubclass(cls, MeanAveragePrecision) and not issubclass(cls, COCOMeanAveragePrecision):
            plain = cls is MeanAveragePrecision
            config = MetricConfig(
                name=config.name,
                metric_class=(
                    "autotimm_detection.metrics.COCOMeanAveragePrecision"
                    if plain
                    else config.metric_class
                ),
                backend="custom" if plain else config.backend,
                params=exact_map_params(config.params),
                stages=list(config.stages),
                prog_bar=config.prog_bar,
            )
        out.append(config)
    return out
