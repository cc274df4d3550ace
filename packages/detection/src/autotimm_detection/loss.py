"""FCOS losses from torchvision.ops: focal, GIoU and centerness BCE, each over the positives."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from autotimm_detection.points import decode_ltrb, encode_ltrb


def centerness_targets(ltrb: Tensor) -> Tensor:
    """FCOS centerness ``sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))`` of (..., 4) distances."""
    lr, tb = ltrb[..., [0, 2]], ltrb[..., [1, 3]]
    ratio = (lr.amin(-1) / lr.amax(-1).clamp(min=1e-6)) * (
        tb.amin(-1) / tb.amax(-1).clamp(min=1e-6)
    )
    return ratio.clamp(min=0).sqrt()


def fcos_loss(
    cls_logits: Tensor,
    bbox_regression: Tensor,
    bbox_ctrness: Tensor,
    points: Tensor,
    point_strides: Tensor,
    matched_idx: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    ignore: Tensor | None = None,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> dict[str, Tensor]:
    """The three FCOS loss terms, each summed and divided by ``max(1, number of positives)``.

    Args:
        cls_logits: (B, P, C) class logits.
        bbox_regression: (B, P, 4) predicted ltrb distances in strides.
        bbox_ctrness: (B, P) centerness logits.
        points: (P, 2) point locations; point_strides: (P,) their strides.
        matched_idx: (B, P) from :func:`~autotimm_detection.assign.assign_targets`, -1 background.
        gt_boxes: (B, M, 4) padded boxes; gt_labels: (B, M) padded contiguous labels.
        ignore: (B, P) points left out of the classification loss (background inside crowd
            boxes). Default: none.
        focal_alpha: focal loss alpha. Default 0.25.
        focal_gamma: focal loss gamma. Default 2.0.

    Returns:
        ``{"classification", "bbox_regression", "bbox_ctrness"}`` scalar tensors.
    """
    pos = matched_idx >= 0
    num_pos = max(1.0, float(pos.sum()))
    safe_idx = matched_idx.clamp(min=0)
    matched_boxes = torch.gather(gt_boxes, 1, safe_idx[..., None].expand(-1, -1, 4))  # (B, P, 4)
    matched_labels = torch.gather(gt_labels, 1, safe_idx)

    cls_target = torch.zeros_like(cls_logits)
    cls_target[pos, matched_labels[pos]] = 1.0
    focal = sigmoid_focal_loss(
        cls_logits, cls_target, alpha=focal_alpha, gamma=focal_gamma, reduction="none"
    )
    if ignore is not None:
        focal = focal * (~(ignore & ~pos))[..., None]
    loss_cls = focal.sum() / num_pos

    if pos.any():
        b_idx, p_idx = pos.nonzero(as_tuple=True)
        pts, strides = points[p_idx], point_strides[p_idx]
        pred_boxes = decode_ltrb(pts, bbox_regression[b_idx, p_idx], strides)
        target_boxes = matched_boxes[b_idx, p_idx]
        loss_box = generalized_box_iou_loss(pred_boxes, target_boxes, reduction="sum") / num_pos
        ctr_target = centerness_targets(encode_ltrb(pts, target_boxes, strides))
        loss_ctr = (
            F.binary_cross_entropy_with_logits(
                bbox_ctrness[b_idx, p_idx], ctr_target, reduction="sum"
            )
            / num_pos
        )
    else:
        # Keep the graph connected so that every parameter still gets a (zero) gradient.
        loss_box = bbox_regression.sum() * 0.0
        loss_ctr = bbox_ctrness.sum() * 0.0
    return {"classification": loss_cls, "bbox_regression": loss_box, "bbox_ctrness": loss_ctr}
