"""COCO bbox mAP evaluation time: our metric (torchmetrics, exact settings) vs pycocotools COCOeval.

Synthetic COCO-like ground truth (crowd boxes, empty images, three size ranges) and noisy
detections; checks that all 12 statistics are identical (to 1e-6) and reports the speed-up.

    OMP_NUM_THREADS=1 python benchmarks/detection_map.py --images 5000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from autotimm_detection.metrics import (
    COCO_STAT_KEYS,
    COCOMeanAveragePrecision,
    default_map_backend,
)


def synthetic(num_images: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    cats = [{"id": i, "name": str(i)} for i in range(1, 81)]
    images, anns, dets = [], [], []
    for i in range(1, num_images + 1):
        w, h = 640, 480
        images.append({"id": i, "file_name": f"{i}.jpg", "width": w, "height": h})
        for _ in range(0 if i % 20 == 0 else int(rng.integers(1, 14))):
            side = float(rng.choice([15, 60, 180])) * rng.uniform(0.7, 1.3)
            bw, bh = side, min(side * rng.uniform(0.6, 1.5), h - 2)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
            cat = int(rng.integers(1, 81))
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cat,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh * 0.8,
                    "iscrowd": int(rng.random() < 0.006),
                }
            )
            for _ in range(int(rng.integers(1, 5))):
                j = rng.normal(0, side * 0.1, 4)
                dets.append(
                    {
                        "image_id": i,
                        "category_id": cat if rng.random() < 0.8 else int(rng.integers(1, 81)),
                        "bbox": [x + j[0], y + j[1], max(1.0, bw + j[2]), max(1.0, bh + j[3])],
                        "score": float(rng.random()),
                    }
                )
        for _ in range(int(rng.integers(5, 25))):
            dets.append(
                {
                    "image_id": i,
                    "category_id": int(rng.integers(1, 81)),
                    "bbox": [
                        rng.uniform(0, 560),
                        rng.uniform(0, 400),
                        rng.uniform(4, 80),
                        rng.uniform(4, 80),
                    ],
                    "score": float(rng.random() * 0.5),
                }
            )
    # Coordinates on a 1/8-pixel grid are exact in float32, so the float32 tensors of the metric
    # and the float64 JSON of pycocotools describe the very same boxes.
    for item in (*anns, *dets):
        item["bbox"] = [round(v * 8) / 8 for v in item["bbox"]]
    return {"images": images, "annotations": anns, "categories": cats}, dets


def to_tensors(gt, dets):
    by_img_gt = {im["id"]: [] for im in gt["images"]}
    for a in gt["annotations"]:
        by_img_gt[a["image_id"]].append(a)
    by_img_det = {im["id"]: [] for im in gt["images"]}
    for d in dets:
        by_img_det[d["image_id"]].append(d)

    def xyxy(items):
        b = torch.tensor([it["bbox"] for it in items], dtype=torch.float32).reshape(-1, 4)
        b[:, 2:] += b[:, :2]
        return b

    preds, targets = [], []
    for img_id in by_img_gt:
        g, d = by_img_gt[img_id], by_img_det[img_id]
        targets.append(
            {
                "boxes": xyxy(g),
                "labels": torch.tensor([a["category_id"] for a in g], dtype=torch.long),
                "iscrowd": torch.tensor([a["iscrowd"] for a in g], dtype=torch.long),
                "area": torch.tensor([a["area"] for a in g], dtype=torch.float32),
            }
        )
        preds.append(
            {
                "boxes": xyxy(d),
                "scores": torch.tensor([x["score"] for x in d]),
                "labels": torch.tensor([x["category_id"] for x in d], dtype=torch.long),
            }
        )
    return preds, targets


def run_pycocotools(ann_file: Path, dets):
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(ann_file))
        ev = COCOeval(coco, coco.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return time.perf_counter() - t, np.array(ev.stats)


def run_ours(preds, targets):
    t = time.perf_counter()
    metric = COCOMeanAveragePrecision()
    metric.update(preds, targets)
    with contextlib.redirect_stdout(io.StringIO()):
        res = metric.compute()
    return time.perf_counter() - t, np.array([float(res[k]) for k in COCO_STAT_KEYS])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    gt, dets = synthetic(args.images)
    preds, targets = to_tensors(gt, dets)
    with tempfile.TemporaryDirectory() as tmp:
        ann_file = Path(tmp) / "gt.json"
        ann_file.write_text(json.dumps(gt))
        ref_times, our_times = [], []
        for _ in range(args.repeats):
            t_ref, ref = run_pycocotools(ann_file, dets)
            t_our, ours = run_ours(preds, targets)
            ref_times.append(t_ref)
            our_times.append(t_our)
    diff = np.abs(ours - ref).max()
    n_crowd = sum(a["iscrowd"] for a in gt["annotations"])
    print(
        f"{args.images} images, {len(gt['annotations'])} GT boxes ({n_crowd} crowd), {len(dets)} detections"
    )
    print(f"pycocotools COCOeval:            {np.median(ref_times):.2f} s   mAP={ref[0]:.4f}")
    print(f"ours ({default_map_backend()}): {np.median(our_times):.2f} s   mAP={ours[0]:.4f}")
    print(
        f"speed-up {np.median(ref_times) / np.median(our_times):.2f}x, max |stat difference| {diff:.2e}"
    )
    if diff > 1e-6:
        raise SystemExit("statistics differ from pycocotools")


if __name__ == "__main__":
    main()
