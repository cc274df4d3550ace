"""FCOS target assignment, batched over images and ground-truth boxes.

Ground truths of a batch are padded to one box count (:func:`pad_targets`; the data module's
collate step pads to a bucketed count, :func:`bucket_size`, so that target tensors take few
distinct shapes). Assignment then runs as dense tensor operations on (batch, points, boxes):
no Python loop over images or boxes, no data-dependent shapes and no host synchronisation, so
it compiles with ``torch.compile(fullgraph=True)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Label of a padding box (not an object).
PAD_LABEL = -1


def bucket_size(num_boxes: int, minimum: int = 4) -> int:
    """The padded box count for ``num_boxes`` boxes: the next power of two, at least ``minimum``.

    Args:
        num_boxes: the largest box count of a batch.
        minimum: the smallest padded count. Default 4.
    """
    n = max(num_boxes, minimum, 1)
    return 1 << (n - 1).bit_length()


def pad_targets(
    targets: list[dict[str, Tensor]],
    device: torch.device | None = None,
    num_boxes: int | None = None,
) -> dict[str, Tensor]:
    """Stack per-image ``boxes`` (n, 4), ``labels`` (n,) and optional ``iscrowd`` (n,) into padded tensors.

    Args:
        targets: one dict per image.
        device: device of the result. Default: the targets' own.
        num_boxes: padded box count (at least the largest n). Default: the largest n (at least 1).

    Returns:
        ``boxes`` (B, M, 4), ``labels`` (B, M) with :data:`PAD_LABEL` (-1) for padding,
        ``valid`` (B, M) for real non-crowd boxes and ``crowd`` (B, M) for real crowd boxes.
    """
    num = [int(t["boxes"].shape[0]) for t in targets]  # shapes only: no device sync
    m = max([1, *num]) if num_boxes is None else num_boxes
    if m < max([0, *num]):
        raise ValueError(f"num_boxes={m} is less than the {max(num)} boxes of one image")
    if device is None:
        device = targets[0]["boxes"].device if targets else torch.device("cpu")
    b = len(targets)
    boxes = torch.zeros(b, m, 4, device=device)
    labels = torch.full((b, m), PAD_LABEL, dtype=torch.long, device=device)
    crowd = torch.zeros(b, m, dtype=torch.bool, device=device)
    for i, (t, n) in enumerate(zip(targets, num)):  # copying only: assignment itself is batched
        if n == 0:
            continue
        boxes[i, :n] = t["boxes"].to(device=device, dtype=torch.float32).reshape(n, 4)
        labels[i, :n] = t["labels"].to(device)
        if "iscrowd" in t:
            crowd[i, :n] = t["iscrowd"].to(device).bool()
    return padded_masks(boxes, labels, crowd)


def padded_masks(boxes: Tensor, labels: Tensor, crowd: Tensor) -> dict[str, Tensor]:
    """``boxes``, ``labels``, and the ``valid`` and ``crowd`` masks of padded targets whose
    padding has label -1."""
    present = labels >= 0
    return {"boxes": boxes, "labels": labels, "valid": present & ~crowd, "crowd": present & crowd}


def assign_targets(
    points: Tensor,
    point_strides: Tensor,
    size_ranges: Tensor,
    gt_boxes: Tensor,
    gt_valid: Tensor,
    center_sampling_radius: float = 1.5,
    force_gt_positive: bool = False,
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
        force_gt_positive: give every valid box that no point matched (a box smaller than the
            point spacing, or one whose points all went to smaller boxes) the point nearest its
            centre on the level whose size range fits the box, preferring a background point.
            Default False (plain FCOS: such a box is never learned).

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
    stride = point_strides[None, :, None]
    radius = center_sampling_radius * stride
    near_center = ((px - cx).abs() < radius) & ((py - cy).abs() < radius)

    rmin, rmax = size_ranges[None, :, None, 0], size_ranges[None, :, None, 1]
    extent = ltrb.amax(dim=-1)
    in_range = (extent > rmin) & (extent <= rmax)

    match = inside & near_center & in_range & gt_valid[:, None, :]
    area = ((x1 - x0) * (y1 - y0)).expand_as(match)  # (B, P, M)
    inf = torch.full_like(area, float("inf"))
    # Smallest matching box wins; non-matches get +inf so that they never do.
    min_cost, idx = torch.where(match, area, inf).min(dim=-1)
    matched = torch.where(torch.isfinite(min_cost), idx, torch.full_like(idx, -1))
    if not force_gt_positive:
        return matched

    num_gt = gt_boxes.shape[1]
    gt_ids = torch.arange(num_gt, device=gt_boxes.device)
    has_point = (matched[:, :, None] == gt_ids).any(dim=1)  # (B, M)
    needy = gt_valid & ~has_point
    # The level whose range holds the box's extent seen from its centre (half its longest side).
    half = torch.maximum(x1 - x0, y1 - y0) / 2
    level_fits = (half > rmin) & (half <= rmax)
    dist = torch.maximum((px - cx).abs(), (py - cy).abs()) / stride
    # Hand-written because no library offers it: the nearest fitting point, a free one first.
    # The penalties order (fits, free) lexicographically before distance.
    taken = (matched >= 0)[:, :, None]
    cost = dist + 1e8 * (~level_fits) + 1e4 * taken
    nearest = cost.argmin(dim=1)  # (B, M)
    forced = torch.zeros_like(match).scatter_(1, nearest[:, None, :], needy[:, None, :])
    # A point forced by several boxes takes the smallest of them.
    f_cost, f_idx = torch.where(forced, area, inf).min(dim=-1)
    return torch.where(torch.isfinite(f_cost), f_idx, matched)


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
