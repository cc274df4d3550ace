"""ObjectDetector: backbones, freezing, predict/draw, checkpoints, the spec's snippets, training."""

import re
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from autotimm_core import MetricConfig
from autotimm_detection import DetectionDataModule, ObjectDetector, draw_detections

SMALL = {"pretrained": False, "fpn_channels": 32, "head_num_convs": 1}


def _trainer(**kw):
    kw.setdefault("logger", False)
    return pl.Trainer(
        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False, **kw
    )


@pytest.mark.parametrize(
    "name,size,strides_ok",
    [
        ("test_resnet", 64, True),
        ("test_convnext", 64, True),
        ("test_maxvit", 64, True),
        ("test_vit", 64, True),
        ("swin_tiny_patch4_window7_224", 224, True),
    ],
)
def test_backbones_give_five_levels(name, size, strides_ok):
    model = ObjectDetector(name, num_classes=2, image_size=size, **SMALL)
    out = model(torch.zeros(1, 3, size, size, dtype=torch.uint8))
    s = size // 8
    assert out["num_points_per_level"][:3] == [s * s, s * s // 4, s * s // 16]
    assert out["cls_logits"].shape == (1, sum(out["num_points_per_level"]), 2)
    assert model.backbone.feature_info is not None  # model.backbone is the timm model


def test_plain_vit_gets_a_simple_pyramid_and_fixed_size_models_follow_the_data(shapes_root):
    # A fixed-size backbone is built once, for the model's image_size (issue 13: the data no
    # longer rebuilds it); the data module then gets that size.
    model = ObjectDetector("test_vit", num_classes=3, image_size=64, **SMALL)
    assert model.adapter.simple is not None
    dm = DetectionDataModule(shapes_root, batch_size=4, num_workers=0)
    _trainer(fast_dev_run=1).fit(model, datamodule=dm)
    assert model.hparams.image_size == 64 and model.image_size == 64
    assert dm.image_size == 64 and dm.datasets["train"][0][0].shape == (3, 64, 64)


def test_fixed_size_backbone_and_data_of_another_size_is_an_error_naming_both(shapes_root):
    model = ObjectDetector("test_vit", num_classes=3, **SMALL)
    assert model.image_size == 640  # the detection default, not the backbone's 224
    dm = DetectionDataModule(shapes_root, image_size=64, batch_size=4, num_workers=0)
    with pytest.raises(
        ValueError,
        match=r"ObjectDetector has image_size=640 but DetectionDataModule has image_size=64",
    ):
        _trainer(fast_dev_run=1).fit(model, datamodule=dm)


def test_cnn_detector_follows_the_data_size_and_predict_uses_it(shapes_root, tmp_path):
    model = ObjectDetector("test_resnet", num_classes=3, score_thresh=0.0, **SMALL)
    assert model.image_size == 640 and model.data_config.resize_mode == "letterbox"
    dm = DetectionDataModule(shapes_root, image_size=96, batch_size=4, num_workers=0)
    trainer = _trainer(fast_dev_run=1, default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert model.image_size == 96 and model.hparams.data_config["image_size"] == 96
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    model.predict(str(shapes_root / "val2017" / "00001.png"))
    assert seen == [(1, 3, 96, 96)]
    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    assert ObjectDetector.load_from_checkpoint(ckpt).image_size == 96


def test_forward_takes_uint8_or_normalized_images():
    model = ObjectDetector("test_resnet", num_classes=2, image_size=64, **SMALL).eval()
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    normalized = model.prepare_images(images)
    assert normalized.dtype == torch.float32 and abs(float(normalized.mean())) < 1.0
    with torch.no_grad():
        a, b = model(images), model(normalized)
    torch.testing.assert_close(a["cls_logits"], b["cls_logits"])


def test_detector_lr_default_and_baseline_arguments_through_kwargs():
    model = ObjectDetector("test_resnet", num_classes=2, **SMALL)
    assert model.lr == 1e-4
    model = ObjectDetector(
        "test_resnet", num_classes=2, lr=3e-3, optimizer="sgd", weight_decay=0.0, **SMALL
    )
    assert model.lr == 3e-3 and model.hparams.lr == 3e-3 and model.optimizer_name == "sgd"


def test_data_config_with_another_resize_mode_is_refused():
    with pytest.raises(ValueError, match=r"resize_mode must be 'letterbox' for detection"):
        ObjectDetector("test_resnet", num_classes=2, data_config={"resize_mode": "crop"}, **SMALL)


def test_num_classes_none_takes_the_data_modules_classes_and_ids(shapes_root, tmp_path):
    model = ObjectDetector("test_resnet", image_size=64, **SMALL)
    assert model.num_classes is None and not hasattr(model, "head")
    with pytest.raises(ValueError, match=r"ObjectDetector was created with num_classes=None"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    dm = DetectionDataModule(shapes_root, image_size=64, batch_size=4, num_workers=0)
    trainer = _trainer(fast_dev_run=1)
    trainer.fit(model, datamodule=dm)
    assert model.num_classes == 3 and model.hparams["num_classes"] == 3
    assert model.head.cls_logits.out_channels == 3
    assert model.class_names == ["red", "green", "blue"] and model.category_ids == [1, 3, 7]
    ckpt = tmp_path / "detector.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = ObjectDetector.load_from_checkpoint(ckpt).eval()
    assert loaded.num_classes == 3 and loaded.category_ids == [1, 3, 7]
    image = next((shapes_root / "val2017").iterdir())
    (mine,), (theirs,) = model.eval().predict([image]), loaded.predict([image])
    assert torch.equal(mine["boxes"], theirs["boxes"]) and mine["labels"].tolist() == (
        theirs["labels"].tolist()
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"num_classes": 0},
            "ObjectDetector: num_classes must be a positive int .*, or None to take the data",
        ),
        (
            {"num_classes": 2, "class_names": ["a"]},
            "ObjectDetector: class_names has 1 entries but num_classes=2",
        ),
        ({"num_classes": 2, "point_offset": 1.5}, r"point_offset must be a number in \[0, 1\)"),
    ],
)
def test_bad_num_classes_is_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ObjectDetector("test_resnet", **kwargs, **SMALL)


def test_num_classes_follows_the_given_class_names():
    model = ObjectDetector("test_resnet", class_names=["cat", "dog"], image_size=64, **SMALL)
    assert model.num_classes == 2 and model.head.cls_logits.out_channels == 2


def test_freeze_backbone_keeps_weights_and_batchnorm_statistics(shapes_root):
    model = ObjectDetector("test_resnet", num_classes=3, freeze_backbone=True, lr=1e-2, **SMALL)
    bn = next(m for m in model.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head.cls_logits.weight.clone()
    dm = DetectionDataModule(shapes_root, image_size=64, batch_size=4, num_workers=0)
    _trainer(fast_dev_run=2).fit(model, datamodule=dm)
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # incl. running_mean/var
    assert not torch.equal(head_before, model.head.cls_logits.weight)
    assert not bn.training or not any(p.requires_grad for p in bn.parameters())
    # Phase 2 of the spec: unfreezing by hand trains the backbone (and its BatchNorm) again.
    for p in model.backbone.parameters():
        p.requires_grad = True
    model._lr = 1e-4
    _trainer(fast_dev_run=1).fit(model, datamodule=dm)
    first = next(iter(before))
    assert not torch.equal(before[first], model.backbone.state_dict()[first])


def test_predict_draw_and_checkpoint_roundtrip(shapes_root, tmp_path):
    dm = DetectionDataModule(shapes_root, image_size=64, batch_size=4, num_workers=0)
    model = ObjectDetector("test_resnet", num_classes=dm.num_classes, score_thresh=0.0, **SMALL)
    trainer = _trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=1, default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=dm)
    path = shapes_root / "val2017" / "00001.png"
    pil = Image.open(path).convert("RGB")
    tensor = torch.from_numpy(np.array(pil)).permute(2, 0, 1)
    preds = model.predict([str(path), pil, tensor, tensor.float() / 255])
    assert len(preds) == 4
    for p in preds:
        assert set(p) == {"boxes", "scores", "labels", "label_names"}
        assert 0 < len(p["boxes"]) <= 100
        # Original pixels (128x96) and category ids (1, 3, 7) with their names.
        assert p["boxes"][:, 2].max() <= 128 and p["boxes"][:, 3].max() <= 96
        assert set(p["labels"].tolist()) <= {1, 3, 7}
        assert all(n in {"red", "green", "blue"} for n in p["label_names"])
    torch.testing.assert_close(preds[0]["boxes"], preds[2]["boxes"])
    out = draw_detections(path, preds[0], tmp_path / "out" / "det.png", min_score=0.0)
    drawn = np.array(Image.open(out))
    assert drawn.shape == (96, 128, 3) and not np.array_equal(drawn, np.array(pil))

    ckpt = tmp_path / "m.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = ObjectDetector.load_from_checkpoint(ckpt)
    assert loaded.class_names == ["red", "green", "blue"] and loaded.category_ids == [1, 3, 7]
    again = loaded.predict(str(path))[0]
    torch.testing.assert_close(again["boxes"], preds[0]["boxes"])


def test_spec_detection_snippet_with_plain_trainer(shapes_root, tmp_path):
    """The spec's "Standard COCO Training" snippet, small backbone and data, plain pl.Trainer."""
    data = DetectionDataModule(
        data_dir=shapes_root,
        image_size=64,
        batch_size=4,
        augmentation_preset="default",
        num_workers=0,
    )
    metrics = [
        MetricConfig(
            name="mAP",
            backend="torchmetrics",
            metric_class="MeanAveragePrecision",
            params={"box_format": "xyxy", "iou_type": "bbox"},
            stages=["val", "test"],
            prog_bar=True,
        )
    ]
    model = ObjectDetector(
        backbone="test_resnet",
        num_classes=3,
        metrics=metrics,
        lr=1e-4,
        scheduler="multistep",
        scheduler_kwargs={"milestones": [8, 11], "gamma": 0.1},
        **SMALL,
    )
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=tmp_path, monitor="val/map", mode="max")
    trainer = pl.Trainer(
        max_epochs=1,
        gradient_clip_val=1.0,
        callbacks=[ckpt],
        logger=False,
        enable_progress_bar=False,
        limit_train_batches=2,
        default_root_dir=tmp_path,
    )
    trainer.fit(model, datamodule=data)
    assert "val/map" in trainer.callback_metrics and "val/map_50" in trainer.callback_metrics
    assert Path(ckpt.best_model_path).is_file()


def test_detection_imports_no_sibling_package():
    src = Path(__file__).parents[2] / "packages/detection/src/autotimm_detection"
    pattern = re.compile(
        r"^\s*(from|import)\s+(autotimm_classification|autotimm_trainer|autotimm)\b", re.M
    )
    offenders = [p.name for p in src.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


@pytest.mark.slow
def test_training_on_shapes_reaches_clear_map(tmp_path_factory):
    from shapes import make_dataset

    root = make_dataset(tmp_path_factory.mktemp("train"), 48, 12, num_test=6)
    pl.seed_everything(0)
    dm = DetectionDataModule(
        root, image_size=128, batch_size=8, num_workers=0, augmentation_preset="light"
    )
    model = ObjectDetector(
        "test_resnet",
        num_classes=dm.num_classes,
        pretrained=False,
        fpn_channels=32,
        head_num_convs=2,
        lr=3e-3,
        scheduler=None,
    )
    trainer = _trainer(max_epochs=18, gradient_clip_val=1.0, check_val_every_n_epoch=18)
    trainer.fit(model, datamodule=dm)
    assert float(trainer.callback_metrics["val/map_50"]) > 0.3
    test = trainer.test(model, datamodule=dm, verbose=False)[0]
    assert test["test/map_50"] > 0.2
    pred = model.predict(str(root / "test2017" / "00001.png"))[0]
    assert len(pred["boxes"]) > 0 and pred["scores"][0] > 0.3


def test_training_after_predict_in_inference_mode():
    # predict runs under torch.inference_mode; the anchor points it caches must not leak into
    # a later training step (inference tensors cannot be saved for backward).
    model = ObjectDetector("test_resnet", num_classes=2, image_size=64, **SMALL)
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    model.predict([image])
    model.train()
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 30.0, 30.0]]), "labels": torch.tensor([1])}]
    loss = model.loss(model(image[None]), targets)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.head.parameters() if p.requires_grad)


def test_draw_prediction_draws_boxes_on_the_input():
    model = ObjectDetector("test_resnet", num_classes=2, **SMALL)
    image = torch.zeros(3, 64, 64, dtype=torch.uint8)
    record = {
        "boxes": [[8.0, 8.0, 40.0, 40.0]],
        "scores": [0.8],
        "labels": [1],
        "label_names": ["cat"],
    }
    drawn = model.draw_prediction(image, record)
    assert drawn.shape == image.shape and drawn.dtype == torch.uint8
    assert drawn[:, 8, 8:41].any() and not drawn[:, 50:, 50:].any()  # the box edge, not beyond
    assert torch.equal(model.draw_prediction(image, {**record, "scores": [], "boxes": []}), image)


def test_predict_prepares_images_exactly_as_validation(shapes_root):
    """predict's input tensor is, pixel for pixel, the one validation scored (same letterbox,
    interpolation and padding), so ``predict`` on a file gives what ``val/map`` measured."""
    dm = DetectionDataModule(shapes_root, image_size=72, batch_size=2, num_workers=0)
    model = ObjectDetector("test_resnet", num_classes=3, image_size=72, **SMALL)
    _trainer(fast_dev_run=1).validate(model, datamodule=dm)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    files = sorted((shapes_root / "val2017").glob("*.png"))[:2]
    model.predict([str(f) for f in files])
    records = dm.datasets["val"].records
    val = {r.path.name: i for i, r in enumerate(records)}
    for file, image in zip(files, seen[0]):
        expected = dm.datasets["val"][val[file.name]][0]
        assert expected.dtype == torch.uint8
        torch.testing.assert_close(image, expected, rtol=0, atol=0)


def test_a_lighter_head_has_fewer_channels_and_still_predicts():
    full = ObjectDetector("test_resnet", num_classes=3, image_size=64, **SMALL)
    light = ObjectDetector("test_resnet", num_classes=3, image_size=64, head_channels=8, **SMALL)
    assert light.head.cls_logits.in_channels == 8 and full.head.cls_logits.in_channels == 32

    def count(m):
        return sum(p.numel() for p in m.head.parameters())

    assert count(light) < count(full) / 2
    out = light(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    assert out["cls_logits"].shape == full(torch.zeros(2, 3, 64, 64))["cls_logits"].shape
    with pytest.raises(ValueError, match="head channels must be a positive int"):
        ObjectDetector("test_resnet", num_classes=3, image_size=64, head_channels=0, **SMALL)


def test_trainable_layers_freezes_the_stem_and_early_stages_like_torchvision():
    model = ObjectDetector("test_resnet", num_classes=3, image_size=64, trainable_layers=2, **SMALL)
    trained = {n.split(".")[0] for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trained == {"layer3", "layer4"}
    # The frozen part's BatchNorms are frozen ones: a training step leaves their statistics.
    stem_bn = model.backbone.bn1
    assert type(stem_bn).__name__ == "FrozenBatchNorm2d"
    before = stem_bn.running_mean.clone()
    model.train()
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    targets = [{"boxes": torch.tensor([[4.0, 4.0, 40.0, 40.0]]), "labels": torch.tensor([1])}] * 2
    model.loss(model(images), targets)["loss"].backward()
    assert torch.equal(stem_bn.running_mean, before)
    assert model.backbone.layer1[0].conv1.weight.grad is None
    assert model.backbone.layer4[0].conv1.weight.grad is not None
    none = ObjectDetector("test_resnet", num_classes=3, image_size=64, trainable_layers=0, **SMALL)
    assert not any(p.requires_grad for p in none.backbone.parameters())
    with pytest.raises(ValueError, match=r"trainable_layers=6 .* 5 feature stages .* choose 0-5"):
        ObjectDetector("test_resnet", num_classes=3, image_size=64, trainable_layers=6, **SMALL)
    with pytest.raises(ValueError, match="trainable_layers must be None"):
        ObjectDetector("test_resnet", num_classes=3, image_size=64, trainable_layers=-1, **SMALL)


def test_frozen_bn_keeps_statistics_and_the_checkpoint_round_trips(tmp_path):
    model = ObjectDetector("test_resnet", num_classes=3, image_size=64, frozen_bn=True, **SMALL)
    kinds = {type(m).__name__ for m in model.backbone.modules() if "BatchNorm" in type(m).__name__}
    assert kinds == {"FrozenBatchNorm2d"}
    with torch.no_grad():
        model.backbone.bn1.running_mean.add_(0.5)  # as pretrained statistics would be
    model.train()
    model(torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8))
    assert torch.allclose(
        model.backbone.bn1.running_mean, torch.full_like(model.backbone.bn1.running_mean, 0.5)
    )
    trainer = _trainer(max_steps=0)
    trainer.strategy.connect(model)
    ckpt = tmp_path / "frozen.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = ObjectDetector.load_from_checkpoint(ckpt)
    torch.testing.assert_close(loaded.backbone.bn1.running_mean, model.backbone.bn1.running_mean)


def test_point_offset_places_the_points_and_is_a_hyperparameter():
    model = ObjectDetector("test_resnet", num_classes=2, image_size=64, point_offset=0.0, **SMALL)
    images = torch.zeros(1, 3, 64, 64, dtype=torch.uint8)
    assert model(images)["points"][:2].tolist() == [[0.0, 0.0], [8.0, 0.0]]  # P3 cell corners
    default = ObjectDetector("test_resnet", num_classes=2, image_size=64, **SMALL)
    assert default(images)["points"][0].tolist() == [4.0, 4.0]  # cell centres
    # What load_from_checkpoint rebuilds the model from.
    rebuilt = ObjectDetector(**model.hparams)
    assert rebuilt(images)["points"][1].tolist() == [8.0, 0.0]
