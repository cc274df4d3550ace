"""SemanticSegmentor: heads and backbones, losses, metrics, training to a useful mIoU, predict."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from autotimm_core import FeatureAdapter
from autotimm_segmentation import (
    SegmentationDataModule,
    SemanticSegmentor,
    build_loss,
    draw_segmentation,
)


def _model(**kwargs):
    kwargs.setdefault("num_classes", 4)
    return SemanticSegmentor(
        kwargs.pop("backbone", "resnet18"), pretrained=False, image_size=64, **kwargs
    )


def _fit(model, data, **kw) -> pl.Trainer:
    """Fit on a quiet CPU Trainer (no logger, checkpoints, bar or summary); returns it."""
    trainer = pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kw,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=data)
    return trainer


@pytest.mark.parametrize("head", ["fpn", "unet", "deeplabv3plus"])
def test_heads_give_logits_at_the_input_size(head):
    model = _model(head=head).eval()
    images = torch.randint(0, 256, (2, 3, 64, 48), dtype=torch.uint8)
    assert model(images).shape == (2, 4, 64, 48)


def test_plain_vit_goes_through_the_simple_pyramid():
    model = _model(backbone="test_vit", head="unet").eval()
    assert model.adapter.simple is not None
    maps = model.adapter(model.backbone(torch.zeros(1, 3, 64, 64)))
    assert [m.shape[-1] for m in maps] == [16, 8, 4, 2]  # strides 4, 8, 16, 32
    assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 4, 64, 64)


def test_feature_adapter_names_the_strides_it_needs():
    with pytest.raises(ValueError, match=r"strides \[2\]; segmentation needs strides 4, 8, 16, 32"):
        FeatureAdapter([8], [2], "tiny", strides=(4, 8, 16, 32), task="segmentation")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"head": "pspnet"}, r"head must be one of \['fpn', 'unet', 'deeplabv3plus'\]"),
        ({"loss": "bce"}, r"loss must be one of \['ce', 'dice', 'ce\+dice', 'focal', 'lovasz'\]"),
        ({"ignore_index": -100}, r"ignore_index must be in \[0, 255\]"),
        ({"class_weights": [1.0, 2.0]}, r"class_weights must be 4 non-negative numbers"),
        ({"loss": "lovasz", "class_weights": [1, 1, 1, 1]}, "loss='lovasz'.*takes none"),
        (
            {"num_classes": 0},
            "SemanticSegmentor: num_classes must be a positive int .*, or None to take the data",
        ),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        _model(**kwargs)


@pytest.mark.parametrize("name", ["ce", "dice", "ce+dice", "focal", "lovasz"])
def test_losses_leave_ignored_pixels_out(name):
    torch.manual_seed(0)
    loss = build_loss(name, ignore_index=255)
    target = torch.randint(0, 3, (2, 8, 8))
    target[:, :3] = 255
    logits = torch.randn(2, 3, 8, 8)
    changed = logits.clone()
    changed[:, :, :3] = torch.randn(2, 3, 3, 8) * 10  # only the ignored rows differ
    assert torch.allclose(loss(logits, target), loss(changed, target), atol=1e-6)
    # And the loss does see the other pixels.
    other = logits.clone()
    other[:, :, 5:] += torch.randn(2, 3, 3, 8) * 5
    assert not torch.allclose(loss(logits, target), loss(other, target))


def test_class_weights_change_the_cross_entropy():
    torch.manual_seed(0)
    logits, target = torch.randn(1, 3, 8, 8), torch.randint(0, 3, (1, 8, 8))
    plain = build_loss("ce")(logits, target)
    weighted = build_loss("ce", class_weights=[1.0, 0.0, 0.0])(logits, target)
    expected = torch.nn.functional.cross_entropy(
        logits, target, weight=torch.tensor([1.0, 0.0, 0.0])
    )
    assert torch.allclose(weighted, expected) and not torch.allclose(weighted, plain)


def test_default_metrics_leave_ignore_out_and_log_per_class():
    model = _model(num_classes=3, class_names=["sky", "road", "car/truck"])
    target = torch.randint(0, 3, (2, 16, 16))
    target[:, :4] = 255
    preds = target.clone()
    preds[:, :4] = 0  # wrong where ignored: must not count
    model.metric_manager.update("val", preds, target)
    scalars = model.metric_manager.compute("val", model.class_names)
    assert float(scalars["val/miou"][0]) == pytest.approx(1.0)
    assert float(scalars["val/dice"][0]) == pytest.approx(1.0)
    assert {"val/iou/sky", "val/iou/road", "val/iou/car_truck"} <= set(scalars)
    assert scalars["val/miou"][1] is True  # on the progress bar


def test_user_metrics_get_task_and_ignore_index():
    model = _model(
        ignore_index=7,
        metrics=[{"name": "acc", "metric_class": "Accuracy", "stages": ["val"]}],
    )
    metric = model.metric_manager.metrics("val")["acc"]
    assert metric.ignore_index == 7 and metric.num_classes == 4
    assert model.hparams["metrics"][0]["params"] == {}  # stored as given


def test_trains_to_a_useful_miou_and_predicts_at_the_original_size(scenes_root, tmp_path):
    pl.seed_everything(0)
    data = SegmentationDataModule(
        scenes_root, image_size=64, batch_size=8, num_workers=0, augmentation_preset="light"
    )
    model = SemanticSegmentor(
        "resnet18", num_classes=data.num_classes, pretrained=False, lr=3e-3, scheduler=None
    )
    # val/miou with seed 0: 0.80 after 5 epochs (0.74 after 2, 0.85 after 8).
    trainer = _fit(model, data, max_epochs=5)
    metrics = trainer.callback_metrics
    # Chance (uniform guesses over 4 classes) is about 0.1 mIoU; always "background" 0.2.
    assert float(metrics["val/miou"]) > 0.6
    assert {"val/iou/background", "val/iou/red", "val/iou/green", "val/iou/blue"} <= set(metrics)
    assert model.class_names == ["background", "red", "green", "blue"]  # from the data

    image_file = sorted((scenes_root / "val" / "images").iterdir())[0]
    truth = np.asarray(Image.open(scenes_root / "val" / "masks" / image_file.name))
    pred = model.predict(str(image_file), return_probabilities=True)[0]
    assert pred["mask"].shape == truth.shape  # 48x64, not the 64x64 letterbox
    assert pred["probabilities"].shape == (4, *truth.shape)
    assert torch.allclose(pred["probabilities"].sum(0), torch.ones(truth.shape), atol=1e-4)
    valid = truth != 255
    assert (pred["mask"].numpy()[valid] == truth[valid]).mean() > 0.8

    trainer.save_checkpoint(tmp_path / "seg.ckpt")
    loaded = SemanticSegmentor.load_from_checkpoint(tmp_path / "seg.ckpt")
    assert loaded.class_names == model.class_names
    assert torch.equal(loaded.predict(str(image_file))[0]["mask"], pred["mask"])

    out = draw_segmentation(str(image_file), pred, tmp_path / "overlay" / "out.png")
    overlay = np.asarray(Image.open(out))
    assert overlay.shape == (*truth.shape, 3)
    assert not np.array_equal(overlay, np.asarray(Image.open(image_file).convert("RGB")))


def test_draw_segmentation_colours_only_classes(tmp_path):
    image = torch.full((3, 10, 10), 100, dtype=torch.uint8)
    mask = torch.zeros(10, 10, dtype=torch.long)
    mask[:5] = 255  # ignored: left as is
    mask[5:, 5:] = 1
    out = np.asarray(Image.open(draw_segmentation(image, {"mask": mask}, tmp_path / "o.png")))
    assert (out[:5] == 100).all()
    assert not (out[5:] == 100).all()
    assert not np.array_equal(out[9, 0], out[9, 9])  # classes 0 and 1 get different colours


def test_num_classes_none_takes_the_data_modules_classes(scenes_root, tmp_path):
    model = SemanticSegmentor(
        "resnet18", pretrained=False, image_size=64, class_weights=[1.0, 2.0, 2.0, 2.0]
    )
    assert model.num_classes is None and not hasattr(model, "head")
    with pytest.raises(ValueError, match=r"SemanticSegmentor was created with num_classes=None"):
        model(torch.zeros(1, 3, 64, 64, dtype=torch.uint8))
    data = SegmentationDataModule(scenes_root, image_size=64, batch_size=8, num_workers=0)
    trainer = _fit(model, data, fast_dev_run=1)
    assert model.num_classes == 4 and model.hparams["num_classes"] == 4
    assert model.head.classifier.out_channels == 4
    assert model.class_names == ["background", "red", "green", "blue"]
    assert "val/iou/red" in trainer.callback_metrics  # metrics built for the data's classes
    ckpt = tmp_path / "segmentor.ckpt"
    trainer.save_checkpoint(ckpt)
    loaded = SemanticSegmentor.load_from_checkpoint(ckpt).eval()
    images = torch.randint(0, 256, (1, 3, 64, 64), dtype=torch.uint8)
    assert torch.equal(loaded(images), model.eval()(images))

    wrong = SemanticSegmentor("resnet18", pretrained=False, image_size=64, class_weights=[1, 2])
    with pytest.raises(ValueError, match=r"class_weights must be 4 non-negative numbers"):
        _fit(wrong, data, fast_dev_run=1)
