"""Inference and training-step speed: ObjectDetector vs torchvision's FCOS, same backbone and size.

Both are the same ResNet (timm's in ours, torchvision's there: the same network) + FPN P3-P7 +
a 4-conv FCOS head, random weights, in one process, CPU by default.

    OMP_NUM_THREADS=1 python benchmarks/detection_speed.py --image-size 320 --batch-size 2 --iters 3
    OMP_NUM_THREADS=1 python benchmarks/detection_speed.py --backbone resnet18 --image-size 256 \
        --batch-size 8 --iters 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torchvision
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.fcos import FCOSHead
from torchvision.ops.feature_pyramid_network import LastLevelP6P7

from autotimm_detection import ObjectDetector


def random_targets(
    batch: int, size: int, num_classes: int, boxes_per_image: int = 5
) -> list[dict[str, torch.Tensor]]:
    """Seeded random xyxy boxes of 16 px and up inside a ``size`` square, with labels."""
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(batch):
        xy = torch.rand(boxes_per_image, 2, generator=g) * size * 0.6
        wh = 16 + torch.rand(boxes_per_image, 2, generator=g) * size * 0.35
        out.append(
            {
                "boxes": torch.cat([xy, xy + wh], 1),
                "labels": torch.randint(0, num_classes, (boxes_per_image,), generator=g),
            }
        )
    return out


def torchvision_fcos(
    backbone: str,
    num_classes: int,
    image_size: int,
    fpn_channels: int = 256,
    head_num_convs: int = 4,
    reserve_label_zero: bool = True,
) -> FCOS:
    """torchvision's FCOS on a torchvision ResNet with FPN P3-P7, random weights, built as
    ``fcos_resnet50_fpn`` builds it (trainable BatchNorm without pretrained weights, P6/P7
    from P5) but for any ResNet and width. It resizes inside: ``min_size = max_size =
    image_size`` keeps square inputs as they are. With ``reserve_label_zero`` (the default,
    torchvision's convention) it has ``num_classes + 1`` classes and label 0 is never used;
    without, ``num_classes`` and labels ``0..num_classes-1``, as AutoTimm's."""
    net = getattr(torchvision.models, backbone)(weights=None)
    c = net.inplanes // 4  # layer2's output channels (torchvision's _resnet_fpn_extractor rule)
    body = BackboneWithFPN(
        net,
        {"layer2": "0", "layer3": "1", "layer4": "2"},
        [c, c * 2, c * 4],
        fpn_channels,
        extra_blocks=LastLevelP6P7(fpn_channels, fpn_channels),
    )
    anchors = AnchorGenerator(((8,), (16,), (32,), (64,), (128,)), ((1.0,),) * 5)
    classes = num_classes + 1 if reserve_label_zero else num_classes
    head = FCOSHead(fpn_channels, 1, classes, num_convs=head_num_convs)
    return FCOS(
        body,
        classes,
        min_size=image_size,
        max_size=image_size,
        anchor_generator=anchors,
        head=head,
    )


def copy_initial_weights(tv: FCOS, ours: ObjectDetector) -> None:
    """Give torchvision's FCOS exactly the initial weights of ``ours`` (ResNet, FPN and head), so
    that a comparison measures the detectors' training and decoding, not two random draws.

    timm's and torchvision's ResNets share their parameter names, and both FPNs are torchvision's
    ``FeaturePyramidNetwork``. Where torchvision's classifier has one more row (label 0,
    reserved and never a positive), that row keeps its own initialisation.
    """
    tv.backbone.body.load_state_dict(ours.backbone.state_dict(), strict=True)
    tv.backbone.fpn.load_state_dict(ours.fpn.fpn.state_dict(), strict=True)
    head = tv.head
    head.classification_head.conv.load_state_dict(ours.head.cls_tower.state_dict())
    head.regression_head.conv.load_state_dict(ours.head.reg_tower.state_dict())
    head.regression_head.bbox_reg.load_state_dict(ours.head.bbox_pred.state_dict())
    head.regression_head.bbox_ctrness.load_state_dict(ours.head.bbox_ctrness.state_dict())
    extra = head.classification_head.num_classes - ours.head.num_classes
    with torch.no_grad():
        head.classification_head.cls_logits.weight[extra:] = ours.head.cls_logits.weight
        head.classification_head.cls_logits.bias[extra:] = ours.head.cls_logits.bias


def _time(fn, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet50", choices=["resnet18", "resnet50"])
    ap.add_argument("--image-size", type=int, default=640)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--num-classes", type=int, default=80)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument(
        "--ours",
        default="{}",
        help="ObjectDetector options as JSON, e.g. '{\"fpn_levels\": [3, 4, 5]}'",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    s, b = args.image_size, args.batch_size
    images_u8 = torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, device=dev)
    images_f = images_u8.float() / 255
    targets = [{k: v.to(dev) for k, v in t.items()} for t in random_targets(b, s, args.num_classes)]

    ours = ObjectDetector(
        args.backbone,
        num_classes=args.num_classes,
        pretrained=False,
        image_size=s,
        **json.loads(args.ours),
    ).to(dev)
    # torchvision resizes inside the model: pin min/max size so that both see s x s inputs.
    # num_classes + 1 keeps its classifier the same width as ours (it reserves label 0).
    tv = torchvision_fcos(args.backbone, args.num_classes, s).to(dev)
    tv.score_thresh, tv.nms_thresh = ours.hparams.score_thresh, ours.hparams.nms_thresh
    tv_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
    tv_images = list(images_f)

    def ours_infer():
        with torch.no_grad():
            ours.postprocess(ours(images_u8))

    def tv_infer():
        with torch.no_grad():
            tv(tv_images)

    opt_ours = torch.optim.SGD(ours.parameters(), lr=1e-4)
    opt_tv = torch.optim.SGD(tv.parameters(), lr=1e-4)

    def ours_train():
        opt_ours.zero_grad()
        ours.loss(ours(images_u8), targets)["loss"].backward()
        opt_ours.step()

    def tv_train():
        opt_tv.zero_grad()
        sum(tv(tv_images, tv_targets).values()).backward()
        opt_tv.step()

    results = {}
    ours.eval(), tv.eval()
    results["inference images/s"] = (
        b / _time(ours_infer, args.warmup, args.iters),
        b / _time(tv_infer, args.warmup, args.iters),
    )
    ours.train(), tv.train()
    results["training step s"] = (
        _time(ours_train, args.warmup, args.iters),
        _time(tv_train, args.warmup, args.iters),
    )
    print(
        f"device={args.device} threads={args.threads} backbone={args.backbone} image_size={s} "
        f"batch={b} iters={args.iters} (median) ours={args.ours}"
    )
    print(f"{'measure':<22}{'ours':>10}{'torchvision':>13}{'ratio':>8}")
    for k, (o, t) in results.items():
        ratio = o / t if "images/s" in k else t / o
        print(f"{k:<22}{o:>10.3f}{t:>13.3f}{ratio:>7.2f}x")


if __name__ == "__main__":
    main()
