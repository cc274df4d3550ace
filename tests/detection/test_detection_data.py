"""COCO loading, layouts, bad input, transforms of both backends and the data module."""

import json
import shutil
import sys
import warnings

import albumentations as A
import numpy as np
import pytest
import torch
from PIL import Image
from shapes import make_split
from torchmetrics.detection import MeanAveragePrecision
from torchvision.transforms import v2

from autotimm_detection import DetectionDataModule
from autotimm_detection.data import build_detection_transform, letterbox_size, load_coco


def _write(tmp_path, data, name="ann.json"):
    (tmp_path / "img").mkdir(exist_ok=True)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _valid(tmp_path, anns=None, n_images=2):
    (tmp_path / "img").mkdir(exist_ok=True)
    images = []
    for i in range(1, n_images + 1):
        (tmp_path / "img" / f"{i}.png").write_bytes(b"x")
        images.append({"id": i, "file_name": f"{i}.png", "width": 100, "height": 50})
    anns = (
        anns
        if anns is not None
        else [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [10, 10, 20, 20]}]
    )
    return {"images": images, "annotations": anns, "categories": [{"id": 4, "name": "cat"}]}


def test_datamodule_finds_coco2017_layout_and_maps_category_ids(shapes_root):
    dm = DetectionDataModule(shapes_root, image_size=64, batch_size=4, num_workers=0)
    assert (
        dm.num_classes == 3
        and dm.class_names == ["red", "green", "blue"]
        and dm.category_ids == [1, 3, 7]
    )
    assert dm.paths["train"] == (
        shapes_root / "annotations/instances_train2017.json",
        shapes_root / "train2017",
    )
    dm.setup("fit")
    images, targets = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.uint8
    labels = torch.cat([t["labels"] for t in targets])
    assert labels.max() <= 2 and labels.min() >= 0
    # Validation keeps images without objects as negatives.
    val = dm.datasets["val"]
    assert len(val) == 8 and any(len(r.boxes) == 0 for r in val.records)


def test_plain_split_names_and_explicit_overrides(tmp_path):
    make_split(tmp_path, "train", 2, year="")
    make_split(tmp_path, "val", 2, year="")
    dm = DetectionDataModule(tmp_path, image_size=64, num_workers=0)
    assert dm.paths["val"] == (tmp_path / "annotations/instances_val.json", tmp_path / "val")
    other = tmp_path / "elsewhere"
    ann = make_split(other, "x", 3, year="")
    dm = DetectionDataModule(
        tmp_path, image_size=64, num_workers=0, val_ann=ann, val_images=other / "x"
    )
    dm.setup("validate")
    assert len(dm.datasets["val"]) == 3
    with pytest.raises(
        FileNotFoundError, match=r"no test annotations found .*instances_test2017.json"
    ):
        dm.test_dataloader()


def test_missing_annotation_file_and_image_folder(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"no training annotations found under .*instances_train2017.json"
    ):
        DetectionDataModule(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"annotation file not found: .*nope.json"):
        load_coco(tmp_path / "nope.json", tmp_path)
    path = _write(tmp_path, _valid(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"image folder not found: .*missing_dir"):
        load_coco(path, tmp_path / "missing_dir")


@pytest.mark.parametrize("field", ["images", "annotations", "categories"])
def test_json_without_required_field(tmp_path, field):
    data = _valid(tmp_path)
    del data[field]
    path = _write(tmp_path, data)
    with pytest.raises(ValueError, match=rf"ann.json: missing field '{field}'"):
        load_coco(path, tmp_path / "img")


def test_unknown_image_and_category_ids(tmp_path):
    bad_img = _valid(tmp_path, [{"id": 1, "image_id": 99, "category_id": 4, "bbox": [0, 0, 5, 5]}])
    with pytest.raises(
        ValueError, match=r"ann.json: annotations\[0\].image_id 99 is not in 'images'"
    ):
        load_coco(_write(tmp_path, bad_img), tmp_path / "img")
    bad_cat = _valid(tmp_path, [{"id": 1, "image_id": 1, "category_id": 5, "bbox": [0, 0, 5, 5]}])
    with pytest.raises(
        ValueError, match=r"ann.json: annotations\[0\].category_id 5 is not in 'categories'"
    ):
        load_coco(_write(tmp_path, bad_cat), tmp_path / "img")
    bad_box = _valid(tmp_path, [{"id": 1, "image_id": 1, "category_id": 4, "bbox": [0, 0, 5]}])
    with pytest.raises(ValueError, match=r"annotations\[0\].bbox must be \[x, y, width, height\]"):
        load_coco(_write(tmp_path, bad_box), tmp_path / "img")


def test_degenerate_boxes_dropped_with_one_warning_and_outside_boxes_clipped(tmp_path):
    anns = [
        {"id": 1, "image_id": 1, "category_id": 4, "bbox": [10, 10, 0, 20]},
        {"id": 2, "image_id": 1, "category_id": 4, "bbox": [10, 10, 20, -3]},
        {
            "id": 3,
            "image_id": 1,
            "category_id": 4,
            "bbox": [-10, 40, 50, 30],
        },  # leaves the 100x50 image
        {"id": 4, "image_id": 2, "category_id": 4, "bbox": [200, 10, 5, 5]},  # entirely outside
    ]
    with pytest.warns(UserWarning, match=r"ann.json: dropped 3 annotations") as rec:
        coco = load_coco(_write(tmp_path, _valid(tmp_path, anns)), tmp_path / "img")
    assert len(rec) == 1
    assert coco.records[0].boxes.tolist() == [[0.0, 40.0, 40.0, 50.0]]
    assert len(coco.records[1].boxes) == 0


def test_images_missing_on_disk_are_listed(tmp_path):
    data = _valid(tmp_path, n_images=8)
    for i in range(2, 9):
        (tmp_path / "img" / f"{i}.png").unlink()
    with pytest.raises(
        FileNotFoundError,
        match=r"7 images listed in 'images' are missing on disk: .*2.png.*and 2 more",
    ):
        load_coco(_write(tmp_path, data), tmp_path / "img")


def test_unreadable_image_is_skipped_with_warning(tmp_path):
    make_split(tmp_path, "train", 3)
    (tmp_path / "train2017" / "00001.png").write_bytes(b"not a png")
    dm = DetectionDataModule(tmp_path, image_size=64, num_workers=0, augmentation_preset="none")
    dm.setup("fit")
    ds = dm.datasets["train"]
    with pytest.warns(UserWarning, match=r"skipping unreadable image .*00001.png"):
        _, target = ds[1]
    assert int(target["image_id"]) == 3  # the next readable image
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds[1]
    # Warned once per file (torchvision 0.29's decoder deprecation notice is not ours).
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == []


def test_num_classes_mismatch_is_a_clear_error(shapes_root):
    import pytorch_lightning as pl

    from autotimm_detection import ObjectDetector

    dm = DetectionDataModule(shapes_root, image_size=64, batch_size=4, num_workers=0)
    model = ObjectDetector(
        "test_resnet", num_classes=80, pretrained=False, fpn_channels=32, head_num_convs=1
    )
    trainer = pl.Trainer(
        fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    with pytest.raises(
        ValueError,
        match=r"num_classes=80 but the data module has 3 classes \(red, green, blue\)",
    ):
        trainer.fit(model, datamodule=dm)


def _sample():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.integers(0, 255, size=(60, 100, 3), dtype=np.uint8)).permute(
        2, 0, 1
    )
    boxes = np.array([[10, 5, 40, 30], [70, 20, 100, 60], [0, 0, 5, 5]], np.float32)
    return image, boxes, np.array([0, 1, 2]), np.array([False, True, False])


def test_letterbox_keeps_aspect_ratio_and_pads_bottom_right():
    image, boxes, labels, crowd = _sample()
    for backend in ("albumentations", "torchvision"):
        img, out, lab, cr = build_detection_transform(50, backend=backend, train=False)(
            image, boxes, labels, crowd
        )
        assert img.shape == (3, 50, 50) and img.dtype == torch.uint8
        assert letterbox_size(60, 100, 50) == (30, 50)
        assert (img[:, 30:] == 114).all()  # padding below the content
        np.testing.assert_allclose(out.numpy(), boxes * 0.5, atol=1e-4)
        assert lab.tolist() == [0, 1, 2] and cr.tolist() == [False, True, False]


@pytest.mark.parametrize(
    "albu,tv",
    [
        (A.HorizontalFlip(p=1.0), v2.RandomHorizontalFlip(p=1.0)),
        (A.Crop(x_min=20, y_min=10, x_max=90, y_max=50), v2.Lambda(lambda x: x)),
    ],
    ids=["hflip", "crop"],
)
def test_both_backends_give_the_same_boxes(albu, tv):
    image, boxes, labels, crowd = _sample()
    if isinstance(albu, A.Crop):
        from torchvision.transforms.v2 import functional as F

        tv = v2.Lambda(
            lambda x: F.crop(x, 10, 20, 40, 70) if hasattr(x, "canvas_size") or x.ndim == 3 else x
        )
    a = build_detection_transform(64, backend="albumentations", custom=albu, min_box_size=1.0)(
        image, boxes, labels, crowd
    )
    t = build_detection_transform(64, backend="torchvision", custom=tv, min_box_size=1.0)(
        image, boxes, labels, crowd
    )
    assert a[2].tolist() == t[2].tolist() and a[3].tolist() == t[3].tolist()
    np.testing.assert_allclose(a[1].numpy(), t[1].numpy(), atol=1e-3)
    assert a[1].shape[0] >= 2


def test_crop_clips_boxes_and_drops_hidden_ones():
    image, boxes, labels, crowd = _sample()
    crop = A.Crop(x_min=30, y_min=0, x_max=100, y_max=60)
    _, out, lab, _ = build_detection_transform(
        70, backend="albumentations", custom=crop, min_visibility=0.5
    )(image, boxes, labels, crowd)
    # Box 0 (10..40) keeps 10/30 of its width: dropped at min_visibility 0.5; box 2 leaves entirely.
    assert lab.tolist() == [1]
    assert out.tolist() == [[40.0, 20.0, 70.0, 60.0]]


@pytest.mark.parametrize("backend", ["albumentations", "torchvision"])
@pytest.mark.parametrize("preset", ["none", "light", "default", "strong"])
def test_presets_keep_boxes_valid(backend, preset):
    image, boxes, labels, crowd = _sample()
    transform = build_detection_transform(64, preset=preset, backend=backend, min_box_size=1.0)
    for _ in range(5):
        img, out, lab, cr = transform(image, boxes, labels, crowd)
        assert img.shape == (3, 64, 64)
        assert len(out) == len(lab) == len(cr)
        if len(out):
            assert (out >= 0).all() and (out <= 64).all()
            assert ((out[:, 2:] - out[:, :2]) >= 1.0).all()


def test_bad_preset_and_backend_names():
    with pytest.raises(ValueError, match="augmentation_preset must be one of"):
        build_detection_transform(64, preset="heavy")
    with pytest.raises(ValueError, match="transform_backend must be one of"):
        build_detection_transform(64, backend="kornia")


def test_torchvision_backend_datamodule_and_crowd_targets(tmp_path):
    root = tmp_path / "d"
    make_split(root, "train", 2)
    data = json.loads((root / "annotations/instances_train2017.json").read_text())
    data["annotations"][0]["iscrowd"] = 1
    (root / "annotations/instances_train2017.json").write_text(json.dumps(data))
    dm = DetectionDataModule(
        root, image_size=64, num_workers=0, transform_backend="torchvision", batch_size=2
    )
    dm.setup("fit")
    _, targets = next(iter(dm.train_dataloader()))
    crowd = torch.cat([t["orig_iscrowd"] for t in targets])
    assert int(crowd.sum()) == 1
    shutil.rmtree(root)


def _ddp_trainer(model, rank=0):
    from types import SimpleNamespace

    return SimpleNamespace(
        world_size=2,
        global_rank=rank,
        lightning_module=model,
        _accelerator_connector=SimpleNamespace(use_distributed_sampler=True),
    )


def test_ddp_evaluation_gives_each_image_to_one_rank(shapes_root):
    from autotimm_core.distributed import UnpaddedDistributedSampler
    from autotimm_detection import ObjectDetector

    model = ObjectDetector("test_resnet", num_classes=3, pretrained=False, fpn_channels=32)
    seen = []
    for rank in range(2):
        dm = DetectionDataModule(shapes_root, image_size=64, batch_size=4, num_workers=0)
        dm.setup("fit")
        dm.trainer = _ddp_trainer(model, rank)
        loader = dm.val_dataloader()
        assert isinstance(loader.sampler, UnpaddedDistributedSampler)
        seen += list(loader.sampler)
        assert not isinstance(dm.train_dataloader().sampler, UnpaddedDistributedSampler)
    assert sorted(seen) == list(range(8))


class MyMAP(MeanAveragePrecision):
    """A user's own mAP subclass, which keeps torchmetrics' one-entry-at-a-time sync."""


def test_ddp_evaluation_keeps_padding_for_a_map_that_cannot_sync_uneven_ranks(shapes_root):
    from types import SimpleNamespace

    from autotimm_core import DataContract, MetricConfig
    from autotimm_detection import ObjectDetector

    mine = MetricConfig(
        name="m", backend="custom", metric_class=f"{__name__}.MyMAP", stages=["val"]
    )
    model = ObjectDetector(
        "test_resnet", num_classes=3, pretrained=False, fpn_channels=32, metrics=[mine]
    )
    dm = DetectionDataModule(shapes_root, image_size=64, batch_size=4, num_workers=0)
    dm.setup("fit")
    dm.trainer = _ddp_trainer(model)
    assert list(model.unsyncable_eval_metrics()) == ["MyMAP"]
    DataContract().setup(SimpleNamespace(datamodule=dm), model, "validate")  # as a fit does
    assert list(dm.eval_sync_blockers) == ["MyMAP"]
    with pytest.warns(UserWarning, match=r"MyMAP cannot sync DDP ranks.*COCOMeanAveragePrecision"):
        loader = dm.val_dataloader()
    assert loader.sampler.__class__.__name__ == "SequentialSampler"  # Lightning pads it later


def test_datamodule_defaults_follow_the_common_arguments(shapes_root):
    dm = DetectionDataModule(shapes_root, num_workers=0)
    assert dm.image_size == 640 and dm.batch_size == 16
    assert dm.transform_backend == "torchvision" and dm.persistent_workers is False
    assert dm.data_config.resize_mode == "letterbox" and dm.data_config.explicit == frozenset()
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        DetectionDataModule(shapes_root, image_size=0)
    with pytest.raises(ValueError, match="interpolation must be one of"):
        DetectionDataModule(shapes_root, interpolation="lanczos")


def test_a_new_data_config_reaches_the_datasets_already_set_up(shapes_root):
    dm = DetectionDataModule(shapes_root, batch_size=2, num_workers=0)
    dm.setup("fit")
    assert dm.datasets["val"][0][0].shape == (3, 640, 640)
    dm.data_config = dm.data_config.with_values(image_size=96)  # what DataContract does
    for split in ("train", "val"):
        image, target = dm.datasets[split][1]
        assert image.shape == (3, 96, 96)
        # 128x96 images letterboxed to 96: 0.75 px per original pixel, boxes inside the canvas.
        assert target["scale"].tolist() == [0.75, 0.75]
        assert (target["boxes"] <= 96).all()
    images, _ = next(iter(dm.val_dataloader()))
    assert images.shape == (2, 3, 96, 96)


def test_mean_std_normalize_on_the_device_or_in_the_workers(shapes_root):
    kw = {"image_size": 64, "batch_size": 2, "num_workers": 0, "mean": (0.5,) * 3}
    dm = DetectionDataModule(shapes_root, std=(0.25,) * 3, **kw)
    dm.setup("validate")
    images, targets = next(iter(dm.val_dataloader()))
    assert images.dtype == torch.uint8
    out, same_targets = dm.on_after_batch_transfer((images, targets), 0)
    torch.testing.assert_close(out, (images.float() / 255 - 0.5) / 0.25)
    assert same_targets is targets
    in_workers = DetectionDataModule(shapes_root, std=(0.25,) * 3, normalize_on_device=False, **kw)
    in_workers.setup("validate")
    floats, _ = next(iter(in_workers.val_dataloader()))
    torch.testing.assert_close(floats, out)
    assert in_workers.on_after_batch_transfer((floats, targets), 0)[0] is floats


def test_interpolation_drives_the_letterbox_resize(shapes_root):
    dm = DetectionDataModule(shapes_root, image_size=200, interpolation="nearest", num_workers=0)
    dm.setup("validate")
    image = dm.datasets["val"][0][0]
    original = torch.from_numpy(np.array(Image.open(shapes_root / "val2017/00000.png")))
    colours = {tuple(p) for p in original.reshape(-1, 3).tolist()} | {(114, 114, 114)}
    # Nearest-neighbour upscaling copies pixels: no colour that the image does not have.
    assert {tuple(p) for p in image.permute(1, 2, 0).reshape(-1, 3).tolist()} <= colours
    bicubic = DetectionDataModule(shapes_root, image_size=200, num_workers=0)
    bicubic.setup("validate")
    smooth = bicubic.datasets["val"][0][0]
    assert not {tuple(p) for p in smooth.permute(1, 2, 0).reshape(-1, 3).tolist()} <= colours


def test_albumentations_backend_names_its_extra_and_predict_needs_none(shapes_root, monkeypatch):
    from autotimm_detection import ObjectDetector

    monkeypatch.setitem(sys.modules, "albumentations", None)  # as if not installed
    with pytest.raises(ImportError, match=r'pip install "\./packages/detection\[albumentations\]'):
        DetectionDataModule(shapes_root, transform_backend="albumentations")
    model = ObjectDetector(
        "test_resnet", num_classes=3, pretrained=False, image_size=64, fpn_channels=32
    )
    (pred,) = model.predict(str(shapes_root / "val2017/00000.png"))
    assert set(pred) == {"boxes", "scores", "labels", "label_names"}
