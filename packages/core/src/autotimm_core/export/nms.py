"""Class-wise non-maximum suppression as one operator that exports to ONNX ``NonMaxSuppression``.

torch.onnx's exporter has no translation of ``torchvision.ops.nms`` that keeps it batched and
class-wise, and ONNX's own ``NonMaxSuppression`` does both in one node. So the op is declared
here with ``torch.library.custom_op`` (its eager result computed with torchvision's ``nms``, with
ONNX's semantics) and translated to that node through ``torch.onnx.export``'s
``custom_translation_table`` (an onnxscript function), torch.onnx's documented mechanism.
"""

from __future__ import annotations

import torch
import torchvision
from torch import Tensor


@torch.library.custom_op("autotimm::class_nms", mutates_args=())
def class_nms(
    boxes: Tensor,
    scores: Tensor,
    max_per_class: int,
    iou_threshold: float,
    score_threshold: float,
) -> Tensor:
    """Indices kept by NMS per image and class, as ONNX ``NonMaxSuppression`` returns them.

    Args:
        boxes: ``(B, N, 4)`` xyxy boxes.
        scores: ``(B, C, N)`` score of each box for each class.
        max_per_class: boxes kept per image and class at most.
        iou_threshold: a box overlapping a higher-scored one of its class by more is removed.
        score_threshold: boxes scoring this or less are never kept.

    Returns:
        ``(S, 3)`` int64 rows ``(image, class, box)``.
    """
    rows = []
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            s = scores[b, c]
            idx = torch.nonzero(s > score_threshold).flatten()
            keep = torchvision.ops.nms(boxes[b, idx].float(), s[idx].float(), iou_threshold)
            sel = idx[keep[:max_per_class]]
            rows.append(torch.stack([torch.full_like(sel, b), torch.full_like(sel, c), sel], 1))
    if not rows:
        return torch.zeros(0, 3, dtype=torch.int64, device=boxes.device)
    return torch.cat(rows)


@class_nms.register_fake
def _class_nms_fake(
    boxes: Tensor, scores: Tensor, max_per_class: int, iou_threshold: float, score_threshold: float
) -> Tensor:
    # The number of kept boxes depends on the data: a size unknown when tracing.
    count = torch.library.get_ctx().new_dynamic_size()
    return boxes.new_empty((count, 3), dtype=torch.int64)


def _onnx_class_nms(
    boxes: object,
    scores: object,
    max_per_class: int,
    iou_threshold: float,
    score_threshold: float,
) -> object:
    from onnxscript import opset18 as op

    return op.NonMaxSuppression(
        boxes,
        scores,
        op.Constant(value_ints=[int(max_per_class)]),
        op.Constant(value_floats=[float(iou_threshold)]),
        op.Constant(value_floats=[float(score_threshold)]),
        center_point_box=0,  # corners; ONNX accepts either corner order
    )


#: The translations ``torch.onnx.export`` needs for AutoTimm's custom ops.
ONNX_TRANSLATIONS = {torch.ops.autotimm.class_nms.default: _onnx_class_nms}
