"""The training step without host syncs: padded targets, dense assignment and loss, compiled."""

import pytest
import torch
from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss

from autotimm_detection import ObjectDetector
from autotimm_detection.assign import assign_targets, bucket_size, pad_targets
from autotimm_detection.data import collate_detection
from autotimm_detection.loss import centerness_targets, detection_loss, fcos_loss
from autotimm_detection.points import (
    decode_ltrb,
    encode_ltrb,
    level_size_ranges,
    make_points,
    scaled_size_ranges,
)

SMALL = {"pretrained": False, "fpn_channels": 32, "head_num_convs": 1}


def _grid(size=64):
    points, strides, counts = make_points(
        [(size // 8, size // 8), (size // 16, size // 16)], [8, 16]
    )
    return points, strides, level_size_ranges(counts, ((0, 32), (32, float("inf"))))


def _batch(seed=0, b=2, m=8, c=3, size=64):
    g = torch.Generator().manual_seed(seed)
    points, strides, ranges = _grid(size)
    p = points.shape[0]
    xy = torch.rand(b, m, 2, generator=g) * size * 0.7
    wh = 2 + torch.rand(b, m, 2, generator=g) * size * 0.5
    boxes = torch.cat([xy, xy + wh], -1)
    labels = torch.randint(0, c, (b, m), generator=g)
    labels[0, 5:] = -1  # padding
    labels[1, 3:] = -1
    crowd = torch.zeros(b, m, dtype=torch.bool)
    crowd[1, 2] = True
    head = (
        torch.randn(b, p, c, generator=g),
        torch.rand(b, p, 4, generator=g) * 3,
        torch.randn(b, p, generator=g),
    )
    return head, (points, strides, ranges), (boxes, labels, crowd)


def test_loss_compiles_fullgraph_and_matches_eager():
    head, geo, gt = _batch()
    eager = detection_loss(*head, *geo, *gt)
    compiled = torch.compile(detection_loss, fullgraph=True, backend="aot_eager")(*head, *geo, *gt)
    for k, v in eager.items():
        assert torch.isfinite(v) and v > 0, k
        assert torch.allclose(compiled[k], v, atol=1e-5, rtol=1e-5), k


def test_a_box_with_no_point_inside_gets_a_positive():
    points, strides, ranges = _grid()
    # 3 px box between the stride-8 grid points (4, 12, ...): no point lies inside it.
    boxes = torch.tensor([[[5.0, 5.0, 8.0, 8.0], [0.0, 0.0, 40.0, 40.0]]])
    valid = torch.ones(1, 2, dtype=torch.bool)
    plain = assign_targets(points, strides, ranges, boxes, valid)
    assert not (plain == 0).any()  # plain FCOS never learns it
    forced = assign_targets(points, strides, ranges, boxes, valid, force_gt_positive=True)
    pos = (forced[0] == 0).nonzero().flatten().tolist()
    assert pos == [0]  # the level-0 point (4, 4), nearest the centre (6.5, 6.5)
    # The other box keeps every point it had.
    assert torch.equal(forced[0] == 1, plain[0] == 1)
    # Padding and crowd boxes get nothing forced.
    none = assign_targets(
        points, strides, ranges, boxes, torch.zeros(1, 2, dtype=torch.bool), 1.5, True
    )
    assert (none == -1).all()


def test_padding_boxes_change_nothing():
    head, geo, (boxes, labels, crowd) = _batch()
    terms = detection_loss(*head, *geo, boxes, labels, crowd)
    more = 16
    pad_boxes = torch.cat([boxes, torch.rand(2, more, 4) * 30], 1)  # junk boxes under label -1
    pad_labels = torch.cat([labels, torch.full((2, more), -1)], 1)
    pad_crowd = torch.cat([crowd, torch.ones(2, more, dtype=torch.bool)], 1)
    padded = detection_loss(*head, *geo, pad_boxes, pad_labels, pad_crowd)
    for k in terms:
        assert torch.allclose(terms[k], padded[k], atol=1e-6), k


def test_normalisers_are_positive_count_and_centerness_sum():
    points, strides, ranges = _grid()
    boxes = torch.tensor([[[0.0, 0.0, 20.0, 20.0]]])
    matched = assign_targets(points, strides, ranges, boxes, torch.ones(1, 1, dtype=torch.bool))
    pos = matched[0] >= 0
    p = points.shape[0]
    cls = torch.zeros(1, p, 2)
    reg = torch.zeros(1, p, 4)  # zero-size boxes: GIoU loss 1 at every positive
    ctr = torch.zeros(1, p)
    labels = torch.tensor([[1]])
    terms = fcos_loss(cls, reg, ctr, points, strides, matched, boxes, labels)
    target = torch.zeros(1, p, 2)
    target[0, pos, 1] = 1
    focal = sigmoid_focal_loss(cls, target, reduction="sum")
    assert torch.allclose(terms["classification"], focal / pos.sum(), rtol=1e-5)
    # Weighted by centerness and divided by its sum, a loss of 1 everywhere averages to 1.
    assert torch.allclose(terms["bbox_regression"], torch.tensor(1.0), atol=1e-5)
    # Perfect boxes on one point only: its weight over the centerness sum.
    perfect = encode_ltrb(points, boxes[0, 0].expand(p, 4), strides)[None].clone()
    worst = pos.nonzero()[0, 0]
    perfect[0, worst] = 0
    ctr_t = centerness_targets(encode_ltrb(points, boxes[0, 0].expand(p, 4), strides))[pos]
    mixed = fcos_loss(cls, perfect, ctr, points, strides, matched, boxes, labels)
    expected = centerness_targets(encode_ltrb(points[worst], boxes[0, 0], strides[worst]))
    assert torch.allclose(mixed["bbox_regression"], expected / ctr_t.sum(), atol=1e-5)


def _reference_loss(cls, reg, ctr, points, strides, matched, boxes, labels):
    """torchvision-style FCOS over the positives picked by boolean indexing (the old code)."""
    pos = matched >= 0
    num_pos = max(1.0, float(pos.sum()))
    idx = matched.clamp(min=0)
    mb = torch.gather(boxes, 1, idx[..., None].expand(-1, -1, 4))
    ml = torch.gather(labels, 1, idx)
    target = torch.zeros_like(cls)
    target[pos, ml[pos]] = 1.0
    loss_cls = sigmoid_focal_loss(cls, target, reduction="sum") / num_pos
    b, p = pos.nonzero(as_tuple=True)
    pred = decode_ltrb(points[p], reg[b, p], strides[p])
    loss_box = generalized_box_iou_loss(pred, mb[b, p], reduction="sum") / num_pos
    ctr_t = centerness_targets(encode_ltrb(points[p], mb[b, p], strides[p]))
    loss_ctr = (
        torch.nn.functional.binary_cross_entropy_with_logits(ctr[b, p], ctr_t, reduction="sum")
        / num_pos
    )
    return {"classification": loss_cls, "bbox_regression": loss_box, "bbox_ctrness": loss_ctr}


def test_with_the_tricks_off_the_dense_loss_is_torchvision_fcos():
    head, (points, strides, ranges), (boxes, labels, _) = _batch(seed=3)
    valid = labels >= 0
    matched = assign_targets(points, strides, ranges, boxes, valid)
    assert (matched >= 0).sum() > 5
    ours = fcos_loss(
        *head, points, strides, matched, boxes, labels.clamp(min=0), centerness_weighted_giou=False
    )
    ref = _reference_loss(*head, points, strides, matched, boxes, labels.clamp(min=0))
    for k in ref:
        assert torch.allclose(ours[k], ref[k], rtol=1e-5, atol=1e-6), k


def test_masked_entries_give_finite_gradients():
    head, geo, gt = _batch(seed=1)
    leaves = [h.clone().requires_grad_() for h in head]
    # Predictions far out of range at background points must not leak NaN through the masks.
    with torch.no_grad():
        leaves[1][:, ::3] = 1e6
    terms = detection_loss(*leaves, *geo, *gt)
    sum(terms.values()).backward()
    assert all(torch.isfinite(x.grad).all() for x in leaves)


def test_collate_pads_to_a_bucketed_count_and_the_model_uses_it():
    assert [bucket_size(n) for n in (0, 1, 4, 5, 9, 33)] == [4, 4, 4, 8, 16, 64]
    img = torch.zeros(3, 64, 64, dtype=torch.uint8)
    t0 = {
        "boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]] * 5),
        "labels": torch.tensor([0, 1, 0, 1, 0]),
    }
    t1 = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)}
    images, targets = collate_detection([(img, t0), (img, t1)])
    assert [t["padded_boxes"].shape for t in targets] == [(8, 4), (8, 4)]
    assert targets[0]["padded_labels"].tolist() == [0, 1, 0, 1, 0, -1, -1, -1]
    assert targets[1]["padded_labels"].tolist() == [-1] * 8
    assert torch.equal(targets[0]["boxes"], t0["boxes"])  # the per-image boxes stay as they were
    model = ObjectDetector("test_resnet", num_classes=2, image_size=64, **SMALL)
    out = model(images)
    from_collate = model.loss(out, targets)
    plain = model.loss(out, [t0, t1])  # a user's own loop: padded in the step
    gt = pad_targets([t0, t1], num_boxes=8)
    dense = model.loss(out, {"boxes": gt["boxes"], "labels": gt["labels"]})
    for k in plain:
        assert torch.allclose(from_collate[k], plain[k]) and torch.allclose(dense[k], plain[k]), k


def test_label_out_of_range_is_an_error_naming_num_classes():
    model = ObjectDetector("test_resnet", num_classes=2, image_size=64, **SMALL)
    out = model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(ValueError, match="label 5 but num_classes=2"):
        model.loss(out, [{"boxes": torch.tensor([[0.0, 0, 9, 9]]), "labels": torch.tensor([5])}])


def test_size_ranges_follow_the_input_size_and_levels_are_a_parameter():
    assert scaled_size_ranges(800) == (
        (0.0, 64.0),
        (64.0, 128.0),
        (128.0, 256.0),
        (256.0, 512.0),
        (512.0, float("inf")),
    )
    assert scaled_size_ranges(400, (3, 4, 5)) == ((0.0, 32.0), (32.0, 64.0), (64.0, float("inf")))
    model = ObjectDetector(
        "test_resnet", num_classes=2, image_size=64, fpn_levels=(3, 4, 5), **SMALL
    )
    out = model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    assert out["num_points_per_level"] == [64, 16, 4] and model.head.scales.numel() == 3
    assert out["size_ranges"][0].tolist() == [0.0, 64.0]  # the 800-px ranges by default
    scaled = ObjectDetector(
        "test_resnet", num_classes=2, image_size=64, scale_size_ranges=True, **SMALL
    )
    out = scaled(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    assert out["size_ranges"][0].tolist() == pytest.approx([0.0, 64 * 64 / 800])
    with pytest.raises(ValueError, match=r"fpn_levels must be increasing .* got \(5, 3\)"):
        ObjectDetector("test_resnet", num_classes=2, fpn_levels=(5, 3), **SMALL)


def test_head_regression_is_float32_under_bf16_autocast():
    model = ObjectDetector("test_resnet", num_classes=2, image_size=64, **SMALL)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    assert out["bbox_regression"].dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_step_makes_no_host_sync_on_cuda():
    model = ObjectDetector("test_resnet", num_classes=2, image_size=64, **SMALL).cuda()
    img = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    t = {
        "boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0], [2.0, 2.0, 5.0, 5.0]]),
        "labels": torch.tensor([0, 1]),
    }
    images, targets = collate_detection([(img, t), (img, t)])
    images = images.cuda()
    targets = [{k: v.cuda() for k, v in x.items()} for x in targets]
    model.log_loss = lambda *a, **k: None  # logging is Lightning's, outside the step's own work
    model.training_step((images, targets), 0)  # warm-up: caches, cuDNN plans
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        loss = model.training_step((images, targets), 0)
    finally:
        torch.cuda.set_sync_debug_mode(0)
    loss.backward()
    assert torch.isfinite(loss)


@pytest.mark.parametrize("cls_loss", ["quality_focal", "varifocal"])
def test_iou_aware_losses_compile_fullgraph_and_match_eager(cls_loss):
    head, geo, gt = _batch(seed=2)
    eager = detection_loss(*head, *geo, *gt, cls_loss=cls_loss)
    fn = torch.compile(detection_loss, fullgraph=True, backend="aot_eager")
    compiled = fn(*head, *geo, *gt, cls_loss=cls_loss)
    for k, v in eager.items():
        assert torch.isfinite(v) and v > 0, k
        assert torch.allclose(compiled[k], v, atol=1e-5, rtol=1e-5), k
    # Only the classification term changes with the classification loss.
    focal = detection_loss(*head, *geo, *gt)
    assert not torch.allclose(eager["classification"], focal["classification"])
    assert torch.allclose(eager["bbox_regression"], focal["bbox_regression"])


def test_iou_aware_targets_are_the_predicted_boxes_iou():
    """A positive's soft target is the IoU of its predicted box with its ground truth: with a
    perfect box the target is 1, with a box of half the width 0.5 (the loss is then smallest at
    a probability of 0.5: raising or lowering the logit costs more)."""
    points, strides, ranges = _grid()
    boxes = torch.tensor([[[0.0, 0.0, 20.0, 20.0]]])
    labels = torch.tensor([[1]])
    matched = assign_targets(points, strides, ranges, boxes, torch.ones(1, 1, dtype=torch.bool))
    pos = matched[0] >= 0
    p = points.shape[0]
    ltrb = encode_ltrb(points, boxes[0, 0].expand(p, 4), strides)[None].clone()
    half = ltrb.clone()
    half[..., 2] -= (boxes[0, 0, 2] - boxes[0, 0, 0]) / 2 / strides  # right side moved in: IoU 0.5
    ctr = torch.zeros(1, p)

    def cls_loss(reg, logit, kind):
        cls = torch.full((1, p, 2), -20.0)  # background points and the wrong class: ~0 loss
        cls[0, pos, 1] = logit
        return fcos_loss(cls, reg, ctr, points, strides, matched, boxes, labels, cls_loss=kind)[
            "classification"
        ]

    for kind in ("quality_focal", "varifocal"):
        # Perfect box: target 1, so a confident logit is (near) free.
        assert cls_loss(ltrb, 10.0, kind) < 1e-3
        # Half box: target 0.5; logit 0 (p = 0.5) beats both +2 and -2.
        at_half = cls_loss(half, 0.0, kind)
        assert at_half < cls_loss(half, 2.0, kind) and at_half < cls_loss(half, -2.0, kind)
    # Quality focal loss is exactly 0 at the soft target; varifocal is the BCE weighted by it.
    assert cls_loss(half, 0.0, "quality_focal") < 1e-6
    bce = torch.nn.functional.binary_cross_entropy_with_logits(torch.tensor(0.0), torch.tensor(0.5))
    assert torch.allclose(cls_loss(half, 0.0, "varifocal"), 0.5 * bce, atol=1e-3)


def test_an_unknown_classification_loss_names_the_choices():
    with pytest.raises(ValueError, match=r"cls_loss.*focal.*quality_focal.*varifocal"):
        ObjectDetector("test_resnet", num_classes=2, image_size=64, cls_loss="qfl", **SMALL)
