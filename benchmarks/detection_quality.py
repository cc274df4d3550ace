"""Detection quality: ObjectDetector vs torchvision's FCOS, same backbone, data and budget.

A COCO-format set is generated from real photographs (scikit-image's and scikit-learn's sample
images): backgrounds are random crops of some photos, objects are crops of others pasted onto
them (one class per source photo, 12-80 % of the image side, random aspect). Every model sees
the same batches in the same order (the same flips), with the same optimizer and schedule, and
is scored with pycocotools on the original validation images and the written JSON.

Rows: torchvision's FCOS (``torchvision_fcos`` in detection_speed.py: the same ResNet, FPN
P3-P7 and head), ObjectDetector with its defaults, and ObjectDetector with each of its
accuracy options switched off (``--variants``), so that each option's effect is measured.

    pip install "./packages/detection[builtin]"   # the photos (scikit-image, scikit-learn)
    OMP_NUM_THREADS=1 python benchmarks/detection_quality.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch
from detection_speed import torchvision_fcos  # benchmarks/, beside this script
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from autotimm_detection import ObjectDetector
from autotimm_detection.data.builtin import render_scenes

#: ObjectDetector variants: name -> options (each switches one of the accuracy tricks off).
VARIANTS: dict[str, dict] = {
    "ours": {},
    "no-ctr-weight": {"centerness_weighted_giou": False},  # GIoU over the positives
    "no-force": {"force_gt_positive": False},  # boxes without a point stay unlearned
    "p3-p5": {"fpn_levels": (3, 4, 5)},
    "scaled-ranges": {"scale_size_ranges": True},  # FCOS's 800-px ranges scaled to the input
    "tricks-off": {  # torchvision's FCOS losses and assignment
        "centerness_weighted_giou": False,
        "force_gt_positive": False,
    },
}


def make_dataset(num: int, size: int, seed: int) -> tuple[torch.Tensor, list[dict]]:
    """``num`` images (uint8, size x size) with pasted objects, and their xyxy boxes/labels: the
    generator of the built-in ``photo_objects`` set (``DetectionDataModule(dataset_name=...)``)."""
    return render_scenes(num, size, seed)


def write_coco(path: Path, targets: list[dict], size: int, num_classes: int) -> None:
    images = [
        {"id": i + 1, "file_name": f"{i}.png", "width": size, "height": size}
        for i in range(len(targets))
    ]
    anns = []
    for i, t in enumerate(targets):
        for b, lab in zip(t["boxes"].tolist(), t["labels"].tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": lab + 1,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    cats = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))


def pycocotools_map(ann_file: Path, dets: list[dict]) -> tuple[float, float]:
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        if not dets:
            return 0.0, 0.0
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def _batches(n: int, batch: int, epochs: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The (indices, flip flags) of every step: the same for every model."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for s in range(0, n - batch + 1, batch):
            out.append((perm[s : s + batch], torch.rand(batch, generator=g) < 0.5))
    return out


def _flip(images: torch.Tensor, targets: list[dict], flags: torch.Tensor, size: int):
    images = torch.where(flags[:, None, None, None], images.flip(-1), images)
    out = []
    for t, f in zip(targets, flags.tolist()):
        b = t["boxes"].clone()
        if f:
            b[:, [0, 2]] = size - t["boxes"][:, [2, 0]]
        out.append({"boxes": b, "labels": t["labels"]})
    return images, out


def train_and_score(name, model, kind, data, args, ann_file) -> dict:
    train_x, train_t, val_x = data
    torch.manual_seed(0)
    steps = _batches(len(train_x), args.batch_size, args.epochs, seed=1)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=len(steps), pct_start=0.1)
    model.train()
    times = []
    for idx, flags in steps:
        images, targets = _flip(
            train_x[idx], [train_t[i] for i in idx.tolist()], flags, args.image_size
        )
        t0 = time.perf_counter()
        opt.zero_grad()
        if kind == "tv":
            tv_t = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
            loss = sum(model(list(images.float() / 255), tv_t).values())
        else:
            loss = model.loss(model(images), targets)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        times.append(time.perf_counter() - t0)
    model.eval()
    dets, infer = [], []
    with torch.no_grad():
        for s in range(0, len(val_x), args.batch_size):
            x = val_x[s : s + args.batch_size]
            t0 = time.perf_counter()
            if kind == "tv":
                out = [{**o, "labels": o["labels"] - 1} for o in model(list(x.float() / 255))]
            else:
                out = model.postprocess(model(x))
            infer.append((time.perf_counter() - t0) / len(x))
            for i, o in enumerate(out):
                for b, sc, lab in zip(
                    o["boxes"].tolist(), o["scores"].tolist(), o["labels"].tolist()
                ):
                    dets.append(
                        {
                            "image_id": s + i + 1,
                            "category_id": lab + 1,
                            "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]],
                            "score": sc,
                        }
                    )
    m, m50 = pycocotools_map(ann_file, dets)
    row = {
        "name": name,
        "map": m,
        "map_50": m50,
        "train_step_s": statistics.median(times),
        "infer_images_s": 1 / statistics.median(infer),
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbone", default="resnet18", choices=["resnet18", "resnet50"])
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--train-images", type=int, default=160)
    ap.add_argument("--val-images", type=int, default=48)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--fpn-channels", type=int, default=64)
    ap.add_argument("--head-num-convs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--variants", default="ours", help="comma-separated names of VARIANTS, or 'all'"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    for n in names:
        if n not in VARIANTS:
            raise SystemExit(f"unknown variant {n!r}; choose from {list(VARIANTS)}")
    num_classes = 3
    train_x, train_t = make_dataset(args.train_images, args.image_size, seed=0)
    val_x, val_t = make_dataset(args.val_images, args.image_size, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = Path(tmp) / "instances_val.json"
        write_coco(ann_file, val_t, args.image_size, num_classes)
        print(
            f"backbone={args.backbone} image_size={args.image_size} train={args.train_images} "
            f"val={args.val_images} epochs={args.epochs} batch={args.batch_size} lr={args.lr} "
            f"fpn_channels={args.fpn_channels} head_num_convs={args.head_num_convs} "
            f"threads={args.threads} ({sum(len(t['boxes']) for t in val_t)} val boxes)"
        )
        data = (train_x, train_t, val_x)
        torch.manual_seed(0)
        tv = torchvision_fcos(
            args.backbone, num_classes, args.image_size, args.fpn_channels, args.head_num_convs
        )
        tv.score_thresh, tv.nms_thresh = 0.05, 0.6
        rows = [train_and_score("torchvision FCOS", tv, "tv", data, args, ann_file)]
        for n in names:
            torch.manual_seed(0)
            model = ObjectDetector(
                args.backbone,
                num_classes=num_classes,
                pretrained=False,
                image_size=args.image_size,
                fpn_channels=args.fpn_channels,
                head_num_convs=args.head_num_convs,
                **VARIANTS[n],
            )
            rows.append(train_and_score(n, model, "ours", data, args, ann_file))
    base = rows[0]
    print("\n| model | mAP | mAP50 | mAP vs torchvision | train step s | infer images/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['map']:.3f} | {r['map_50']:.3f} | {r['map'] / max(base['map'], 1e-9):.2f}x "
            f"| {r['train_step_s']:.3f} | {r['infer_images_s']:.1f} |"
        )


if __name__ == "__main__":
    main()
