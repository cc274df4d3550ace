"""Points, box coding, target assignment, losses and post-processing as separate functions."""

import pytest
import torch

from autotimm_detection.assign import assign_targets, pad_targets, points_in_boxes
from autotimm_detection.loss import centerness_targets, fcos_loss
from autotimm_detection.points import decode_ltrb, encode_ltrb, level_size_ranges, make_points
from autotimm_detection.postprocess import postprocess_detections, rescale_detections


def test_make_points_are_cell_centres_per_level():
    points, strides, counts = make_points([(2, 3), (1, 1)], [8, 16])
    assert counts == [6, 1]
    assert points[:3].tolist() == [[4.0, 4.0], [12.0, 4.0], [20.0, 4.0]]
    assert points[3].tolist() == [4.0, 12.0]
    assert points[-1].tolist() == [8.0, 8.0]
    assert strides.tolist() == [8.0] * 6 + [16.0]


def test_make_points_at_cell_corners_with_offset_zero():
    # torchvision's FCOS placement: cell (i, j) at (j * stride, i * stride).
    points, _, _ = make_points([(2, 3), (1, 1)], [8, 16], offset=0.0)
    assert points[:4].tolist() == [[0.0, 0.0], [8.0, 0.0], [16.0, 0.0], [0.0, 8.0]]
    assert points[-1].tolist() == [0.0, 0.0]


def test_level_size_ranges_open_first_and_last_level():
    ranges = level_size_ranges([2, 1, 1], ((10.0, 64.0), (64.0, 128.0), (128.0, 256.0)))
    assert ranges[0].tolist() == [0.0, 64.0]
    assert ranges[2].tolist() == [64.0, 128.0]
    assert ranges[3, 1] == float("inf")


def test_encode_decode_roundtrip():
    pts = torch.tensor([[10.0, 20.0], [50.0, 50.0]])
    boxes = torch.tensor([[0.0, 4.0, 30.0, 36.0], [40.0, 30.0, 90.0, 60.0]])
    strides = torch.tensor([8.0, 16.0])
    enc = encode_ltrb(pts, boxes, strides)
    assert enc[0].tolist() == [10 / 8, 16 / 8, 20 / 8, 16 / 8]
    assert torch.allclose(decode_ltrb(pts, enc, strides), boxes)


def _grid(size=64):
    points, strides, counts = make_points(
        [(size // 8, size // 8), (size // 16, size // 16)], [8, 16]
    )
    return points, strides, level_size_ranges(counts, ((0, 32), (32, float("inf"))))


def test_assign_center_sampling_size_range_and_smallest_box():
    points, strides, ranges = _grid()
    targets = [
        # box 0: 20 px (level 0 range); box 1: 60 px (level 1); box 2 contains box 0 but is larger
        {
            "boxes": torch.tensor(
                [[0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 60.0, 60.0], [0.0, 0.0, 24.0, 24.0]]
            ),
            "labels": torch.tensor([0, 1, 2]),
        },
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)},
    ]
    gt = pad_targets(targets, torch.device("cpu"))
    matched = assign_targets(points, strides, ranges, gt["boxes"], gt["valid"], 1.5)
    assert matched.shape == (2, points.shape[0])
    assert (matched[1] == -1).all()  # image without boxes: all background
    # The point at (4, 4) lies in boxes 0 and 2 (both level 0 sized): the smaller (0) wins.
    assert matched[0, 0] == 0
    # The point at (12, 12): still inside box 0 and near its centre (10, 10).
    assert matched[0, 9] == 0
    # Level-1 points (stride 16) near the centre of box 1 (30, 30) get box 1; box 0 is too small.
    lvl1 = matched[0, 64:]
    assert set(lvl1[lvl1 >= 0].tolist()) == {1}
    # Far from every centre: background. The point (60, 60) is outside box 1's centre region.
    assert matched[0, 63] == -1


def test_assign_center_sampling_radius_limits_positives():
    points, strides, ranges = _grid()
    gt = pad_targets(
        [{"boxes": torch.tensor([[0.0, 0.0, 30.0, 30.0]]), "labels": torch.tensor([0])}],
        torch.device("cpu"),
    )
    wide = assign_targets(points, strides, ranges, gt["boxes"], gt["valid"], 1.5)
    narrow = assign_targets(points, strides, ranges, gt["boxes"], gt["valid"], 0.5)
    assert int((narrow >= 0).sum()) == 1  # only (12, 12) lies within 4 px of the centre (15, 15)
    assert int((wide >= 0).sum()) == 9


def test_crowd_boxes_are_not_assigned_but_mark_ignored_points():
    points, strides, ranges = _grid()
    t = {
        "boxes": torch.tensor([[0.0, 0.0, 20.0, 20.0]]),
        "labels": torch.tensor([0]),
        "iscrowd": torch.tensor([True]),
    }
    gt = pad_targets([t], torch.device("cpu"))
    assert not gt["valid"].any() and gt["crowd"].all()
    matched = assign_targets(points, strides, ranges, gt["boxes"], gt["valid"])
    assert (matched == -1).all()
    ignore = points_in_boxes(points, gt["boxes"], gt["crowd"])
    assert (
        int(ignore.sum()) == 4 + 1
    )  # level-0 points (4,4),(12,4),(4,12),(12,12) and level-1 (8,8)


def test_centerness_targets():
    t = centerness_targets(torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 2.0, 3.0, 2.0]]))
    assert torch.allclose(t, torch.tensor([1.0, (1 / 3) ** 0.5]))


def test_fcos_loss_values():
    points, strides, ranges = _grid()
    boxes = torch.tensor([[[0.0, 0.0, 20.0, 20.0]]])
    gt_valid = torch.ones(1, 1, dtype=torch.bool)
    matched = assign_targets(points, strides, ranges, boxes, gt_valid)
    pos = matched >= 0
    p = points.shape[0]
    # Perfect boxes and centerness logits far from the target give a known GIoU loss of 0.
    perfect = encode_ltrb(points, boxes[0, 0].expand(p, 4), strides)[None]
    cls = torch.full((1, p, 2), -20.0)
    cls[pos] = torch.tensor([20.0, -20.0])
    ctr_logit = torch.zeros(1, p)
    terms = fcos_loss(cls, perfect, ctr_logit, points, strides, matched, boxes, torch.tensor([[0]]))
    assert terms["classification"] < 1e-6
    assert terms["bbox_regression"] < 1e-5
    # BCE with logit 0 is log(2) minus the target entropy term: check against a direct computation.
    ctr_t = centerness_targets(
        encode_ltrb(points[pos[0]], boxes[0, 0].expand(int(pos.sum()), 4), strides[pos[0]])
    )
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        torch.zeros_like(ctr_t), ctr_t, reduction="mean"
    )
    assert torch.allclose(terms["bbox_ctrness"], expected)
    # Zero-size predictions inside the box: IoU 0, enclosing box = the box, so GIoU loss 1 each.
    bad = fcos_loss(
        cls,
        torch.zeros_like(perfect),
        ctr_logit,
        points,
        strides,
        matched,
        boxes,
        torch.tensor([[0]]),
    )
    assert torch.allclose(bad["bbox_regression"], torch.tensor(1.0), atol=1e-5)


def test_fcos_loss_without_positives_is_classification_only_and_backpropagates():
    points, strides, _ = _grid()
    p = points.shape[0]
    cls = torch.zeros(1, p, 2, requires_grad=True)
    reg = torch.zeros(1, p, 4, requires_grad=True)
    ctr = torch.zeros(1, p, requires_grad=True)
    matched = torch.full((1, p), -1)
    terms = fcos_loss(
        cls,
        reg,
        ctr,
        points,
        strides,
        matched,
        torch.zeros(1, 1, 4),
        torch.zeros(1, 1, dtype=torch.long),
    )
    assert terms["bbox_regression"] == 0 and terms["bbox_ctrness"] == 0
    # Focal loss of logit 0 with target 0: 0.75 * 0.5**2 * log(2) per element, divided by max(1, 0).
    assert torch.allclose(
        terms["classification"], torch.tensor(0.75 * 0.25 * 0.6931472 * p * 2), rtol=1e-4
    )
    sum(terms.values()).backward()
    assert reg.grad is not None and ctr.grad is not None
    ignore = torch.ones(1, p, dtype=torch.bool)
    ignored = fcos_loss(
        cls,
        reg,
        ctr,
        points,
        strides,
        matched,
        torch.zeros(1, 1, 4),
        torch.zeros(1, 1, dtype=torch.long),
        ignore=ignore,
    )
    assert ignored["classification"] == 0


def _outputs(cls_list, box_list, points, strides):
    p = points.shape[0]
    cls = torch.full((len(cls_list), p, 2), -10.0)
    reg = torch.zeros(len(cls_list), p, 4)
    for b, (entries, boxes) in enumerate(zip(cls_list, box_list)):
        for (pi, label, logit), box in zip(entries, boxes):
            cls[b, pi, label] = logit
            reg[b, pi] = encode_ltrb(points[pi], torch.tensor(box), strides[pi])
    return cls, reg, torch.full((len(cls_list), p), 10.0)


def test_postprocess_nms_threshold_and_per_image_split():
    points, strides, counts = make_points([(8, 8), (4, 4)], [8, 16])
    img0 = [(0, 0, 5.0), (1, 0, 4.0), (2, 1, 3.0), (70, 1, -5.0)]
    box0 = [[0, 0, 20, 20], [1, 1, 20, 20], [0, 0, 20, 20], [10, 10, 40, 40]]
    img1 = [(9, 1, 2.0)]
    box1 = [[5, 5, 30, 30]]
    cls, reg, ctr = _outputs([img0, img1], [box0, box1], points, strides)
    dets = postprocess_detections(
        cls, reg, ctr, points, strides, counts, (64, 64), score_thresh=0.5, nms_thresh=0.6
    )
    assert len(dets) == 2
    # Box 1 overlaps box 0 of the same class: suppressed; box 2 has another class: kept;
    # the low-scored one falls below score_thresh.
    assert dets[0]["labels"].tolist() == [0, 1]
    assert torch.allclose(dets[0]["boxes"], torch.tensor([[0.0, 0, 20, 20]] * 2), atol=1e-4)
    assert (dets[0]["scores"][:-1] >= dets[0]["scores"][1:]).all()
    assert dets[1]["labels"].tolist() == [1]
    capped = postprocess_detections(
        cls, reg, ctr, points, strides, counts, (64, 64), score_thresh=0.5, max_detections=1
    )
    assert [len(d["boxes"]) for d in capped] == [1, 1] and capped[0]["labels"].tolist() == [0]


def test_postprocess_clips_to_image_and_rescale_maps_back():
    points, strides, counts = make_points([(8, 8), (4, 4)], [8, 16])
    cls, reg, ctr = _outputs([[(0, 0, 5.0)]], [[[-10, -5, 30, 200]]], points, strides)
    det = postprocess_detections(cls, reg, ctr, points, strides, counts, (64, 64))[0]
    assert det["boxes"].tolist() == [[0.0, 0.0, 30.0, 64.0]]
    back = rescale_detections(det, torch.tensor([0.5, 0.5]), (100, 50))
    assert back["boxes"].tolist() == [[0.0, 0.0, 50.0, 100.0]]


@pytest.mark.parametrize("shape", [(3, 4), (0,)])
def test_pad_targets_shapes(shape):
    boxes = torch.zeros(*shape) if shape != (3, 4) else torch.tensor([[0.0, 0, 1, 1]] * 3)
    t = [
        {
            "boxes": boxes.reshape(-1, 4),
            "labels": torch.zeros(boxes.reshape(-1, 4).shape[0], dtype=torch.long),
        }
    ]
    gt = pad_targets(t, torch.device("cpu"))
    assert gt["boxes"].shape == (1, max(1, boxes.reshape(-1, 4).shape[0]), 4)
    assert int(gt["valid"].sum()) == boxes.reshape(-1, 4).shape[0]
