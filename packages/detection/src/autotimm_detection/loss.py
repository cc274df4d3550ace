"""FCOS losses from torchvision.ops: focal, GIoU and centerness BCE, as dense masked tensor ops.

Every term is computed for every point and masked (no ``nonzero``, no boolean indexing, no
``.item()``), and the normalisers stay on the device, so a training step never waits for the
accelerator and the whole loss compiles with ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from autotimm_detection.assign import assign_targets, points_in_boxes
from autotimm_detection.points import decode_ltrb, encode_ltrb


def centerness_targets(ltrb: Tensor) -> Tensor:
    """FCOS centerness ``sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b))`` of (..., 4) distances."""
    lr, tb = ltrb[..., [0, 2]], ltrb[..., [1, 3]]
    ratio = (lr.amin(-1) / lr.amax(-1).clamp(min=1e-6)) * (
        tb.amin(-1) / tb.amax(-1).clamp(min=1e-6)
    )
    return ratio.clamp(min=0).sqrt()


#: Classification losses of :func:`fcos_loss`.
CLS_LOSSES = ("focal", "quality_focal", "varifocal")


def paired_box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of each box in ``a`` (..., 4) with the box at the same place in ``b`` (xyxy).

    Hand-written: ``torchvision.ops.box_iou`` is pairwise (N x M), and the diagonal of that
    matrix over all points would cost P^2 memory."""
    lt = torch.maximum(a[..., :2], b[..., :2])
    rb = torch.minimum(a[..., 2:], b[..., 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_a = (a[..., 2:] - a[..., :2]).clamp(min=0).prod(-1)
    area_b = (b[..., 2:] - b[..., :2]).clamp(min=0).prod(-1)
    return inter / (area_a + area_b - inter).clamp(min=1e-6)


def iou_aware_cls_loss(
    logits: Tensor, quality: Tensor, kind: str, alpha: float = 0.75, gamma: float = 2.0
) -> Tensor:
    """Per-element classification loss with soft IoU targets (``quality`` (B, P, C): the IoU of
    the predicted box with its ground truth at the true class, 0 elsewhere).

    ``"quality_focal"``: GFL's quality focal loss, BCE to the soft target scaled by
    ``|sigmoid - target|^gamma``. ``"varifocal"``: VarifocalNet's, BCE weighted by the target on
    positives and by ``alpha * sigmoid^gamma`` on negatives. Hand-written: torchvision.ops has
    only the binary focal loss, and mmdetection's versions come with its whole framework.
    """
    bce = F.binary_cross_entropy_with_logits(logits, quality, reduction="none")
    prob = logits.sigmoid()
    if kind == "quality_focal":
        return bce * (prob - quality).abs().pow(gamma)
    positive = (quality > 0).to(logits.dtype)
    # The negatives' weight keeps its gradient, as in VarifocalNet's and mmdetection's code.
    weight = quality * positive + alpha * prob.pow(gamma) * (1 - positive)
    return bce * weight


def reduce_mean(value: Tensor) -> Tensor:
    """``value`` averaged over the DDP ranks when a process group is running, else itself.

    The loss normalisers (positive count, centerness sum) are averaged this way, as in the
    official FCOS and mmdetection, so that every rank divides by the same number.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    value = value.clone()
    dist.all_reduce(value.div_(dist.get_world_size()))
    return value


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
    centerness_weighted_giou: bool = True,
    reduce_over_ranks: bool = True,
    cls_loss: str = "focal",
) -> dict[str, Tensor]:
    """The three FCOS loss terms for assigned points.

    Classification (focal) and centerness (BCE) are summed and divided by the number of
    positives; the GIoU loss is weighted by each positive's centerness target and divided by
    their sum (the official FCOS and mmdetection; torchvision divides by the positives instead:
    ``centerness_weighted_giou=False``). Both normalisers are at least 1 (positives) or 1e-6
    (centerness) and averaged over DDP ranks (:func:`reduce_mean`).

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
        centerness_weighted_giou: weight GIoU by the centerness target. Default True.
        reduce_over_ranks: average the normalisers over DDP ranks (a collective call: only
            where every rank computes the loss equally often, i.e. in training; evaluation
            ranks may run different numbers of batches). Default True.
        cls_loss: ``"focal"`` (binary targets, FCOS), or IoU-aware soft targets (the IoU of
            each positive's predicted box with its ground truth, detached):
            ``"quality_focal"`` (GFL) or ``"varifocal"`` (VarifocalNet), see
            :func:`iou_aware_cls_loss`. Default ``"focal"``.

    Returns:
        ``{"classification", "bbox_regression", "bbox_ctrness"}`` scalar tensors.
    """
    pos = matched_idx >= 0
    posf = pos.to(cls_logits.dtype)
    reduce = reduce_mean if reduce_over_ranks else (lambda v: v)
    num_pos = reduce(posf.sum()).clamp(min=1.0)
    safe_idx = matched_idx.clamp(min=0)
    matched_boxes = torch.gather(gt_boxes, 1, safe_idx[..., None].expand(-1, -1, 4))  # (B, P, 4)
    matched_labels = torch.gather(gt_labels, 1, safe_idx).clamp(min=0)

    num_classes = cls_logits.shape[-1]
    cls_target = F.one_hot(matched_labels, num_classes).to(cls_logits.dtype) * posf[..., None]
    # Background points get a dummy target (the stride-sized box around the point) so that
    # every entry is finite before masking: 0 * NaN would poison the gradients.
    strides = point_strides[None, :].expand_as(matched_idx)
    pts = points[None].expand(matched_idx.shape[0], -1, -1)
    half = strides[..., None]
    dummy = torch.cat([pts - half, pts + half], dim=-1)
    target_boxes = torch.where(pos[..., None], matched_boxes, dummy)
    pred_boxes = decode_ltrb(pts, bbox_regression, strides)

    if cls_loss == "focal":
        per_elem = sigmoid_focal_loss(
            cls_logits, cls_target, alpha=focal_alpha, gamma=focal_gamma, reduction="none"
        )
    elif cls_loss in CLS_LOSSES:
        iou = paired_box_iou(pred_boxes.detach(), target_boxes) * posf
        per_elem = iou_aware_cls_loss(cls_logits, cls_target * iou[..., None], cls_loss)
    else:
        raise ValueError(f"cls_loss must be one of {', '.join(CLS_LOSSES)}, got {cls_loss!r}")
    if ignore is not None:
        per_elem = per_elem * (~(ignore & ~pos))[..., None]
    loss_cls = per_elem.sum() / num_pos

    giou = generalized_box_iou_loss(pred_boxes, target_boxes, reduction="none")  # (B, P)
    ctr_target = centerness_targets(encode_ltrb(pts, target_boxes, strides)) * posf
    if centerness_weighted_giou:
        weight = ctr_target
        norm = reduce(weight.sum()).clamp(min=1e-6)
    else:
        weight, norm = posf, num_pos
    loss_box = (giou * weight).sum() / norm
    bce = F.binary_cross_entropy_with_logits(bbox_ctrness, ctr_target, reduction="none")
    loss_ctr = (bce * posf).sum() / num_pos
    return {"classification": loss_cls, "bbox_regression": loss_box, "bbox_ctrness": loss_ctr}


def detection_loss(
    cls_logits: Tensor,
    bbox_regression: Tensor,
    bbox_ctrness: Tensor,
    points: Tensor,
    point_strides: Tensor,
    size_ranges: Tensor,
    gt_boxes: Tensor,
    gt_labels: Tensor,
    gt_crowd: Tensor,
    center_sampling_radius: float = 1.5,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
    force_gt_positive: bool = True,
    centerness_weighted_giou: bool = True,
    reduce_over_ranks: bool = True,
    cls_loss: str = "focal",
) -> dict[str, Tensor]:
    """Assignment and the FCOS loss terms of a batch of padded targets, in one pure function.

    ``ObjectDetector.loss`` calls it; it has no host synchronisation and no data-dependent shape,
    so ``torch.compile(detection_loss, fullgraph=True)`` captures it whole.

    Args:
        cls_logits, bbox_regression, bbox_ctrness: head outputs (B, P, C), (B, P, 4), (B, P).
        points, point_strides, size_ranges: (P, 2), (P,), (P, 2) from the model's forward.
        gt_boxes: (B, M, 4) xyxy boxes in input pixels.
        gt_labels: (B, M) contiguous labels, -1 for padding.
        gt_crowd: (B, M) crowd boxes (never positives; background inside them is ignored).
        center_sampling_radius: in strides. Default 1.5.
        focal_alpha, focal_gamma: focal loss parameters. Default 0.25, 2.0.
        force_gt_positive: every box gets at least one positive point (see
            :func:`~autotimm_detection.assign.assign_targets`). Default True.
        centerness_weighted_giou: see :func:`fcos_loss`. Default True.
        reduce_over_ranks: see :func:`fcos_loss`. Default True.
        cls_loss: see :func:`fcos_loss`. Default ``"focal"``.

    Returns:
        The terms of :func:`fcos_loss`.
    """
    present = gt_labels >= 0
    valid = present & ~gt_crowd
    matched = assign_targets(
        points,
        point_strides,
        size_ranges,
        gt_boxes,
        valid,
        center_sampling_radius,
        force_gt_positive=force_gt_positive,
    )
    ignore = points_in_boxes(points, gt_boxes, present & gt_crowd)
    return fcos_loss(
        cls_logits,
        bbox_regression,
        bbox_ctrness,
        points,
        point_strides,
        matched,
        gt_boxes,
        gt_labels,
        ignore=ignore,
        focal_alpha=focal_alpha,
        focal_gamma=focal_gamma,
        centerness_weighted_giou=centerness_weighted_giou,
        reduce_over_ranks=reduce_over_ranks,
        cls_loss=cls_loss,
    )
