"""Detection quality: ObjectDetector vs torchvision's FCOS, same backbone, data and budget.

A COCO-format set is generated from real photographs (scikit-image's and scikit-learn's sample
images): backgrounds are random crops of some photos, objects are crops of others pasted onto
them (one class per source photo, 12-80 % of the image side, random aspect). Every model sees
the same batches in the same order (the same flips), with the same optimizer and schedule, and
is scored with pycocotools on the original validation images and the written JSON.

Rows: torchvision's FCOS (``torchvision_fcos`` in detection_speed.py: the same ResNet, FPN
P3-P7 and head, by default starting from exactly AutoTimm's initial weights: ``--init``),
ObjectDetector with its defaults, and ObjectDetector with each of its accuracy options
switched on (``--variants``), so that each option's effect is measured; ``--seeds N`` repeats
everything with N seeds and reports means. (``frozen_bn`` and ``trainable_layers`` are for
pretrained backbones, which this offline benchmark cannot download: not measured here.)

    pip install "./packages/detection[builtin]"   # the photos (scikit-image, scikit-learn)
    OMP_NUM_THREADS=1 python benchmarks/detection_quality.py --variants ours,qfl --seeds 3
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
from detection_speed import copy_initial_weights, torchvision_fcos  # benchmarks/, beside this
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from autotimm_detection import ObjectDetector
from autotimm_detection.data.builtin import coco_dict, render_scenes

#: ObjectDetector variants: name -> options (each switches one of the accuracy tricks off).
VARIANTS: dict[str, dict] = {
    "ours": {},  # ObjectDetector's defaults: torchvision's recipe, with cell-centre points
    "ctr-giou": {"centerness_weighted_giou": True},  # official FCOS / mmdetection GIoU weights
    "force": {"force_gt_positive": True},  # every box gets a positive point
    "p3-p5": {"fpn_levels": (3, 4, 5)},
    "scaled-ranges": {"scale_size_ranges": True},  # FCOS's 800-px ranges scaled to the input
    "qfl": {"cls_loss": "quality_focal"},  # IoU-aware classification targets (GFL)
    "vfl": {"cls_loss": "varifocal"},  # IoU-aware classification targets (VarifocalNet)
    "light-head": {"head_channels": 32},  # towers at half the FPN width
    "radius-2.5": {"center_sampling_radius": 2.5},  # more positives per box than FCOS's 1.5
    "corners": {"point_offset": 0.0},  # torchvision's point placement (cell corners)
    "corners-force": {"point_offset": 0.0, "force_gt_positive": True},
    "corners-ctr-giou": {"point_offset": 0.0, "centerness_weighted_giou": True},
    # Diagnostic: torchvision's head has no per-level learnable scale of the distances.
    "corners-fixed-scales": {"point_offset": 0.0, "_fixed_scales": True},
}


def make_dataset(num: int, size: int, seed: int) -> tuple[torch.Tensor, list[dict]]:
    """``num`` images (uint8, size x size) with pasted objects, and their xyxy boxes/labels: the
    generator of the built-in ``photo_objects`` set (``DetectionDataModule(dataset_name=...)``)."""
    return render_scenes(num, size, seed)


def write_coco(path: Path, targets: list[dict], size: int, num_classes: int) -> None:
    """The validation ground truth as COCO JSON (the built-in set's writer, classes 0..C-1)."""
    names = [str(c) for c in range(num_classes)]
    path.write_text(json.dumps(coco_dict(targets, size, names)))


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


def train_and_score(name, model, kind, data, args, ann_file, seed: int = 0) -> dict:
    train_x, train_t, val_x = data
    torch.manual_seed(seed)
    steps = _batches(len(train_x), args.batch_size, args.epochs, seed=1 + seed)
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
        if kind in ("tv", "tv-exact"):
            off = 1 if kind == "tv" else 0  # torchvision's convention reserves label 0
            tv_t = [{"boxes": t["boxes"], "labels": t["labels"] + off} for t in targets]
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
            if kind in ("tv", "tv-exact"):
                off = 1 if kind == "tv" else 0
                out = [{**o, "labels": o["labels"] - off} for o in model(list(x.float() / 255))]
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
        "seed": seed,
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
        "--init",
        default="same",
        choices=["same", "own"],
        help="same: torchvision's FCOS starts from AutoTimm's initial weights (default); own: "
        "each library initialises its own (timm's ResNet zero-initialises each block's last BN)",
    )
    ap.add_argument(
        "--variants", default="ours", help="comma-separated names of VARIANTS, or 'all'"
    )
    ap.add_argument(
        "--seeds",
        type=int,
        default=1,
        help="repeat every model with this many seeds (initial weights and batch order) and "
        "report the mean: a small set's mAP varies a lot from one seed to the next",
    )
    ap.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="the first seed (seeds first..first+N-1): to add seeds to an earlier run",
    )
    ap.add_argument(
        "--skip-torchvision",
        action="store_true",
        help="train only the AutoTimm variants (to add variants to an earlier run's seeds; "
        "the ratio column is then left empty)",
    )
    ap.add_argument(
        "--torchvision-exact-classes",
        action="store_true",
        help="also train torchvision's FCOS with exactly the data's classes (labels 0..C-1, no "
        "reserved label 0): the same model up to one always-negative class row, which shows "
        "how far two runs of one algorithm land apart at this budget",
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
            f"threads={args.threads} init={args.init} seeds={args.seeds} ({sum(len(t['boxes']) for t in val_t)} val boxes)"
        )
        data = (train_x, train_t, val_x)

        def ours(seed: int, **options) -> ObjectDetector:
            torch.manual_seed(seed)  # every variant of a seed starts from the same weights
            fixed_scales = options.pop("_fixed_scales", False)
            model = ObjectDetector(
                args.backbone,
                num_classes=num_classes,
                pretrained=False,
                image_size=args.image_size,
                fpn_channels=args.fpn_channels,
                head_num_convs=args.head_num_convs,
                **options,
            )
            if fixed_scales:
                model.head.scales.requires_grad_(False)
            return model

        rows = []
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            torch.manual_seed(seed)
            if args.skip_torchvision:
                for n in names:
                    model = ours(seed, **VARIANTS[n])
                    rows.append(train_and_score(n, model, "ours", data, args, ann_file, seed))
                continue
            tv = torchvision_fcos(
                args.backbone, num_classes, args.image_size, args.fpn_channels, args.head_num_convs
            )
            if args.init == "same":
                copy_initial_weights(tv, ours(seed))
            tv.score_thresh, tv.nms_thresh = 0.05, 0.6
            rows.append(train_and_score("torchvision FCOS", tv, "tv", data, args, ann_file, seed))
            if args.torchvision_exact_classes:
                tv = torchvision_fcos(
                    args.backbone,
                    num_classes,
                    args.image_size,
                    args.fpn_channels,
                    args.head_num_convs,
                    reserve_label_zero=False,
                )
                if args.init == "same":
                    copy_initial_weights(tv, ours(seed))
                tv.score_thresh, tv.nms_thresh = 0.05, 0.6
                name = "torchvision FCOS, labels 0..C-1"
                rows.append(train_and_score(name, tv, "tv-exact", data, args, ann_file, seed))
            for n in names:
                model = ours(seed, **VARIANTS[n])
                rows.append(train_and_score(n, model, "ours", data, args, ann_file, seed))
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(r["name"], []).append(r)
    tv_rows = by_name.get("torchvision FCOS")
    base = statistics.mean(r["map"] for r in tv_rows) if tv_rows else None
    print(f"\nmean over {args.seeds} seed(s); +- is the standard deviation over seeds")
    print("| model | mAP | mAP50 | mAP vs torchvision | train step s | infer images/s |")
    print("|---|---|---|---|---|---|")
    for name, rs in by_name.items():
        maps = [r["map"] for r in rs]
        sd = f" +- {statistics.stdev(maps):.3f}" if len(maps) > 1 else ""
        print(
            f"| {name} | {statistics.mean(maps):.3f}{sd} "
            f"| {statistics.mean(r['map_50'] for r in rs):.3f} "
            f"| {f'{statistics.mean(maps) / max(base, 1e-9):.2f}x' if base else ''} "
            f"| {statistics.median(r['train_step_s'] for r in rs):.3f} "
            f"| {statistics.median(r['infer_images_s'] for r in rs):.1f} |"
        )


if __name__ == "__main__":
    main()
