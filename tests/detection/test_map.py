"""COCO mAP of the detector equals pycocotools' COCOeval on the same predictions and ground truth."""

import contextlib
import importlib.util
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from autotimm_core import MetricConfig
from autotimm_detection import ObjectDetector
from autotimm_detection.data import build_detection_transform, load_coco
from autotimm_detection.data.coco import CocoDetection
from autotimm_detection.metrics import COCO_IOU_THRESHOLDS, COCOMeanAveragePrecision

STAT_KEYS = [
    "map",
    "map_50",
    "map_75",
    "map_small",
    "map_medium",
    "map_large",
    "mar_1",
    "mar_10",
    "mar_100",
    "mar_small",
    "mar_medium",
    "mar_large",
]


def _coco_case(tmp_path, num_images=30, seed=0):
    """A COCO file with crowd boxes, images without objects and all three area ranges, plus
    noisy predictions (category ids) for it."""
    rng = np.random.default_rng(seed)
    (tmp_path / "img").mkdir()
    cats = [{"id": 2, "name": "a"}, {"id": 5, "name": "b"}, {"id": 9, "name": "c"}]
    images, anns, dets = [], [], []
    for i in range(1, num_images + 1):
        w, h = 400, 300
        images.append({"id": i, "file_name": f"{i}.png", "width": w, "height": h})
        (tmp_path / "img" / f"{i}.png").write_bytes(b"")  # existence is all load_coco checks
        n = 0 if i % 6 == 0 else int(rng.integers(1, 6))
        for _ in range(n):
            side = float(rng.choice([12, 50, 130])) * rng.uniform(0.8, 1.2)
            bw, bh = side, side * rng.uniform(0.6, 1.4)
            x, y = rng.uniform(0, w - bw), rng.uniform(0, h - min(bh, h - 1) - 1)
            bh = min(bh, h - y)
            cat = int(rng.choice([2, 5, 9]))
            crowd = int(rng.random() < 0.12)
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": cat,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh * rng.uniform(0.7, 1.0),
                    "iscrowd": crowd,
                }
            )
            for _ in range(int(rng.integers(0, 3))):
                jit = rng.normal(0, side * 0.08, 4)
                dc = cat if rng.random() < 0.85 else int(rng.choice([2, 5, 9]))
                dets.append(
                    {
                        "image_id": i,
                        "category_id": dc,
                        "bbox": [x + jit[0], y + jit[1], bw + jit[2], bh + jit[3]],
                        "score": float(rng.random()),
                    }
                )
        for _ in range(int(rng.integers(0, 4))):  # false positives, also on empty images
            dets.append(
                {
                    "image_id": i,
                    "category_id": int(rng.choice([2, 5, 9])),
                    "bbox": [
                        rng.uniform(0, 300),
                        rng.uniform(0, 200),
                        rng.uniform(5, 90),
                        rng.uniform(5, 90),
                    ],
                    "score": float(rng.random()),
                }
            )
    ann_file = tmp_path / "instances.json"
    ann_file.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return ann_file, dets


def _pycocotools_stats(ann_file, dets):
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def _our_inputs(ann_file, dets):
    """Targets exactly as the data module builds them for evaluation, and predictions in the
    detector's output format (xyxy, contiguous labels)."""
    coco = load_coco(ann_file, ann_file.parent / "img")
    cat_to_label = {c["id"]: i for i, c in enumerate(coco.categories)}
    ds = CocoDetection(coco, build_detection_transform(64, train=False), cat_to_label, 64)
    preds, targets = [], []
    for rec in ds.records:
        # _item without reading the (empty) file: the targets' original fields don't depend on it.
        _, t = ds._item(rec, torch.zeros(3, rec.height, rec.width, dtype=torch.uint8))
        targets.append(t)
        mine = [d for d in dets if d["image_id"] == rec.image_id]
        boxes = torch.tensor([d["bbox"] for d in mine], dtype=torch.float64).reshape(-1, 4)
        boxes[:, 2:] += boxes[:, :2]
        preds.append(
            {
                "boxes": boxes.float(),
                "scores": torch.tensor([d["score"] for d in mine]),
                "labels": torch.tensor(
                    [cat_to_label[d["category_id"]] for d in mine], dtype=torch.long
                ),
            }
        )
    return preds, ObjectDetector.metric_targets(targets)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    ann_file, dets = _coco_case(tmp_path_factory.mktemp("map"))
    data = json.loads(ann_file.read_text())
    assert any(a["iscrowd"] for a in data["annotations"])
    assert len({a["image_id"] for a in data["annotations"]}) < len(data["images"])
    return ann_file, dets, _pycocotools_stats(ann_file, dets)


def _compare(result, reference):
    ours = np.array([float(result[k]) for k in STAT_KEYS])
    np.testing.assert_allclose(ours, reference, atol=1e-4, rtol=0)
    return np.abs(ours - reference).max()


def test_default_detector_map_equals_pycocotools(case):
    ann_file, dets, reference = case
    model = ObjectDetector(
        "test_resnet", num_classes=3, pretrained=False, fpn_channels=32, head_num_convs=1
    )
    preds, targets = _our_inputs(ann_file, dets)
    model.metric_manager.update("val", preds, targets)
    logged = model.metric_manager.compute("val")
    assert set(logged) == {f"val/{k}" for k in STAT_KEYS}
    result = {k.split("/")[1]: v for k, (v, _) in logged.items()}
    assert _compare(result, reference) < 1e-6
    assert 0.1 < reference[0] < 0.9  # a non-trivial case


@pytest.mark.parametrize("backend", ["pycocotools", "faster_coco_eval"])
def test_both_backends_give_pycocotools_numbers(case, backend):
    # faster-coco-eval is the optional `fast-map` extra: the detection-only nox session runs
    # without it, the `tests_all` session with it.
    pytest.importorskip(backend)
    ann_file, dets, reference = case
    metric = COCOMeanAveragePrecision(backend=backend)
    preds, targets = _our_inputs(ann_file, dets)
    metric.update(preds, targets)
    assert _compare(metric.compute(), reference) < 1e-6


def test_without_crowd_and_area_the_numbers_differ(case):
    """The check above can fail: dropping iscrowd/area (what a naive setup does) moves the stats."""
    ann_file, dets, reference = case
    preds, targets = _our_inputs(ann_file, dets)
    metric = COCOMeanAveragePrecision()
    metric.update(preds, [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets])
    ours = np.array([float(metric.compute()[k]) for k in STAT_KEYS])
    assert np.abs(ours - reference).max() > 1e-3


def test_spec_metric_config_gets_exact_settings():
    spec = MetricConfig(
        name="mAP",
        backend="torchmetrics",
        metric_class="MeanAveragePrecision",
        params={"box_format": "xyxy", "iou_type": "bbox"},
        stages=["val", "test"],
        prog_bar=True,
    )
    model = ObjectDetector(
        "test_resnet",
        num_classes=3,
        pretrained=False,
        metrics=[spec],
        fpn_channels=32,
        head_num_convs=1,
    )
    metric = model.metric_manager.metrics("val")["mAP"]
    # torchmetrics' own class becomes ours: same numbers, and a sync that survives uneven DDP ranks
    assert type(metric) is COCOMeanAveragePrecision
    assert metric.iou_thresholds == COCO_IOU_THRESHOLDS
    fast = importlib.util.find_spec("faster_coco_eval") is not None
    assert metric._coco_backend.backend == ("faster_coco_eval" if fast else "pycocotools")
    assert model.hparams["metrics"][0]["params"]["rec_thresholds"][1] == 0.01
    # The user's explicit choices win.
    mine = MetricConfig(
        name="m",
        metric_class="MeanAveragePrecision",
        params={"backend": "pycocotools"},
        stages=["val"],
    )
    model = ObjectDetector(
        "test_resnet",
        num_classes=3,
        pretrained=False,
        metrics=[mine],
        fpn_channels=32,
        head_num_convs=1,
    )
    assert model.metric_manager.metrics("val")["m"]._coco_backend.backend == "pycocotools"


def test_val_map_equals_pycocotools_with_small_and_out_of_image_boxes(tmp_path):
    """Evaluation ground truth is the file's: boxes smaller than min_box_size and boxes past the
    image border count as they are (training drops or clips them)."""
    ann_file, dets = _coco_case(tmp_path, num_images=12, seed=3)
    data = json.loads(ann_file.read_text())
    extra = [
        (1, [100.0, 100.0, 0.5, 0.6]),  # below min_box_size: dropped from training only
        (2, [-30.0, 40.0, 90.0, 60.0]),  # past the left border: clipped in training only
        (3, [350.0, 250.0, 120.0, 90.0]),  # past the right and bottom borders
        (4, [420.0, 10.0, 30.0, 30.0]),  # wholly outside the 400x300 image
    ]
    for image_id, bbox in extra:
        data["annotations"].append(
            {
                "id": len(data["annotations"]) + 1,
                "image_id": image_id,
                "category_id": 5,
                "bbox": bbox,
                "area": bbox[2] * bbox[3],
                "iscrowd": 0,
            }
        )
        dets.append({"image_id": image_id, "category_id": 5, "bbox": bbox, "score": 0.99})
    ann_file.write_text(json.dumps(data))
    reference = _pycocotools_stats(ann_file, dets)
    with pytest.warns(UserWarning, match="dropped 2 annotations .* evaluation keeps them"):
        preds, targets = _our_inputs(ann_file, dets)
    metric = COCOMeanAveragePrecision()
    metric.update(preds, targets)
    assert _compare(metric.compute(), reference) < 1e-6
    # The training targets are still clipped and filtered.
    coco = load_coco(ann_file, ann_file.parent / "img")
    rec = next(r for r in coco.records if r.image_id == 2)
    assert rec.boxes.min() >= 0 and rec.eval["boxes"].min() == -30.0


def test_an_unreadable_val_image_is_left_out_of_predictions_and_ground_truth(tmp_path):
    from autotimm_detection.data import collate_detection

    ann_file, _ = _coco_case(tmp_path, num_images=3)
    coco = load_coco(ann_file, ann_file.parent / "img")  # the files are empty: unreadable
    ds = CocoDetection(
        coco,
        build_detection_transform(64, train=False),
        {2: 0, 5: 1, 9: 2},
        64,
        skip_unreadable=True,
    )
    with pytest.warns(UserWarning, match=r"left out of evaluation .* unreadable image .*1\.png"):
        item = ds[0]
    assert item is None
    good = ds._item(coco.records[1], torch.zeros(3, 300, 400, dtype=torch.uint8))
    images, targets = collate_detection([item, good])
    assert images.shape[0] == 1 and [int(t["image_id"]) for t in targets] == [2]
    empty_images, empty_targets = collate_detection([None])
    assert empty_images.shape[0] == 0 and empty_targets == []
