"""FCOS target assignment, batched over images and ground-truth boxes.

Ground truths of a batch are padded to the same count (:func:`pad_targets`); assignment then runs
as tensor operations on (batch, points, boxes) without a Python loop over images or boxes.
"""

from __future__ import annotations

import torch
from torch import Tensor


def pad_targets(targets: list[dict[str, Tensor]], device: torch.device) -> dict[str, Tensor]:
    """Stack per-image ``boxes`` (n, 4), ``labels`` (n,) and optional ``iscrowd`` (n,) into padded tensors.

    Returns:
        ``boxes`` (B, M, 4), ``labels`` (B, M), ``valid`` (B, M) for real non-crowd boxes and
        ``crowd`` (B, M) for real crowd boxes; M is at least 1 so shapes stay non-empty.
    """
    num = [int(t["boxes"].shape[0]) for t in targets]
    m = max([1, *num])
    b = len(targets)
    boxes = torch.zeros(b, m, 4, device=device)
    labels = torch.zeros(b, m, dtype=torch.long, device=device)
    present = torch.zeros(b, m, dtype=torch.bool, device=device)
    crowd = torch.zeros(b, m, dtype=torch.bool, device=device)
    for i, (t, n) in enumerate(zip(targets, num)):  # copying only: assignment itself is batched
        if n == 0:
            continue
        boxes[i, :n] = t["boxes"].to(device=device, dtype=torch.float32).reshape(n, 4)
        labels[i, :n] = t["labels"].to(device)
        present[i, :n] = True
        if "iscrowd" in t:
            crowd[i, :n] = t["iscrowd"].to(device).bool()
    return {"boxes": boxes, "labels": labels, "valid": present & ~crowd, "crowd": present & crowd}


def assign_targets(
    points: Tensor,
    point_strides: Tensor,
    size_ranges: Tensor,
    gt_boxes: Tensor,
    gt_valid: Tensor,
    center_sampling_radius: float = 1.5,
) -> Tensor:
    """Match every point of every image to at most one ground-truth box.

    A point is a candidate for a box when it lies inside the box, within
    ``center_sampling_radius * stride`` of the box centre (in x and in y), and the box's largest
    ltrb distance from the point falls in the point's level size range. Among several candidates
    the smallest box wins.

    Args:
        points: (P, 2) point locations.
        point_strides: (P,) stride of each point's level.
        size_ranges: (P, 2) ``(min, max)`` object size per point.
        gt_boxes: (B, M, 4) padded xyxy boxes.
        gt_valid: (B, M) which boxes to assign (not padding, not crowd).
        center_sampling_radius: in strides. Default 1.5.

    Returns:
        (B, P) long tensor: matched box index, or -1 for background (all -1 for an image
        without boxes).
    """
    px = points[None, :, None, 0]  # (1, P, 1)
    py = points[None, :, None, 1]
    x0, y0, x1, y1 = (gt_boxes[:, None, :, k] for k in range(4))  # (B, 1, M) each
    ltrb = torch.stack([px - x0, py - y0, x1 - px, y1 - py], dim=-1)  # (B, P, M, 4)
    inside = ltrb.amin(dim=-1) > 0

    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    radius = (center_sampling_radius * point_strides)[None, :, None]
    near_center = ((px - cx).abs() < radius) & ((py - cy).abs() < radius)

    extent = ltrb.amax(dim=-1)
    in_range = (extent > size_ranges[None, :, None, 0]) & (extent <= size_ranges[None, :, None, 1])

    match = inside & near_center & in_range & gt_valid[:, None, :]
    area = (x1 - x0) * (y1 - y0)  # (B, 1, M)
    # Smallest matching box wins; non-matches get +inf so that they never do.
    cost = torch.where(match, area.expand_as(match), torch.full_like(area, float("inf")))
    min_cost, idx = cost.min(dim=-1)
    return torch.where(torch.isfinite(min_cost), idx, torch.full_like(idx, -1))


def points_in_boxes(points: Tensor, boxes: Tensor, mask: Tensor) -> Tensor:
    """(B, P) True where a point lies inside any box of its image selected by ``mask`` (B, M)."""
    px, py = points[None, :, None, 0], points[None, :, None, 1]
    inside = (
        (px > boxes[:, None, :, 0])
        & (py > boxes[:, None, :, 1])
        & (px < boxes[:, None, :, 2])
        & (py < boxes[:, None, :, 3])
    )
    return (inside & mask[:, None, :]).any(dim=-1)
