"""Turn head outputs into detections: scores, top-k per level, decode, batched NMS, rescale."""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import batched_nms, clip_boxes_to_image

from autotimm_detection.points import decode_ltrb


def postprocess_detections(
    cls_logits: Tensor,
    bbox_regression: Tensor,
    bbox_ctrness: Tensor,
    points: Tensor,
    point_strides: Tensor,
    num_points_per_level: list[int],
    image_size: tuple[int, int],
    score_thresh: float = 0.05,
    nms_thresh: float = 0.6,
    max_detections: int = 100,
    topk_candidates: int = 1000,
) -> list[dict[str, Tensor]]:
    """Detections per image, in the input image's pixel coordinates.

    The whole batch goes through one ``batched_nms`` call (boxes of different images or classes
    never suppress each other); only the final split into a list is per image.

    Args:
        cls_logits: (B, P, C); bbox_regression: (B, P, 4) ltrb in strides; bbox_ctrness: (B, P).
        points: (P, 2); point_strides: (P,); num_points_per_level: points of each level.
        image_size: ``(height, width)`` of the network input; boxes are clipped to it.
        score_thresh: minimum ``sqrt(class prob * centerness)``. Default 0.05.
        nms_thresh: IoU above which the lower-scored box of a class is removed. Default 0.6.
        max_detections: kept per image, highest scores first. Default 100.
        topk_candidates: best candidates per level and image before NMS. Default 1000.

    Returns:
        One dict per image: ``boxes`` (n, 4) xyxy, ``scores`` (n,), ``labels`` (n,) contiguous.
    """
    b, _, c = cls_logits.shape
    scores_all = torch.sqrt(torch.sigmoid(cls_logits) * torch.sigmoid(bbox_ctrness)[..., None])
    cand_scores, cand_points, cand_labels = [], [], []
    start = 0
    for n in num_points_per_level:  # a loop over 5 levels, each batched over images
        level = scores_all[:, start : start + n].reshape(b, n * c)
        k = min(topk_candidates, n * c)
        top, flat = level.topk(k, dim=1)
        cand_scores.append(top)
        cand_points.append(flat // c + start)
        cand_labels.append(flat % c)
        start += n
    scores = torch.cat(cand_scores, 1)
    point_idx = torch.cat(cand_points, 1)
    labels = torch.cat(cand_labels, 1)
    image_idx = torch.arange(b, device=scores.device)[:, None].expand_as(scores)

    keep = scores > score_thresh
    scores, point_idx, labels, image_idx = (
        scores[keep],
        point_idx[keep],
        labels[keep],
        image_idx[keep],
    )
    dists = bbox_regression[image_idx, point_idx]
    boxes = decode_ltrb(points[point_idx], dists, point_strides[point_idx])
    boxes = clip_boxes_to_image(boxes, tuple(image_size))
    keep = batched_nms(boxes, scores, image_idx * c + labels, nms_thresh)  # sorted by score
    # Stable sort by image keeps each image's detections in descending score order.
    order = torch.sort(image_idx[keep], stable=True).indices
    keep = keep[order]
    counts = torch.bincount(image_idx[keep], minlength=b)
    offsets = torch.cumsum(counts, 0) - counts
    rank = torch.arange(keep.numel(), device=keep.device) - offsets[image_idx[keep]]
    keep = keep[rank < max_detections]
    counts = counts.clamp(max=max_detections).tolist()
    return [
        {"boxes": bx, "scores": sc, "labels": lb}
        for bx, sc, lb in zip(
            boxes[keep].split(counts), scores[keep].split(counts), labels[keep].split(counts)
        )
    ]


def rescale_detections(
    detections: dict[str, Tensor], scale: Tensor, orig_size: Tensor | tuple[int, int]
) -> dict[str, Tensor]:
    """Map boxes from the letterboxed input back to the original image.

    Args:
        detections: one image's ``boxes``/``scores``/``labels``.
        scale: ``(sx, sy)``: input pixels per original pixel (letterbox pads bottom/right only,
            so there is no offset).
        orig_size: ``(height, width)`` of the original image; boxes are clipped to it.
    """
    sx, sy = (float(v) for v in scale)
    h, w = (int(v) for v in orig_size)
    boxes = detections["boxes"] / detections["boxes"].new_tensor([sx, sy, sx, sy])
    boxes = clip_boxes_to_image(boxes, (h, w))
    return {**detections, "boxes": boxes}
