"""``num_classes=None``: the classifier takes its data module's number of classes (issue 17)."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from autotimm_classification import ImageClassifier, ImageDataModule


def _trainer(root, **kw) -> pl.Trainer:
    kw = {
        "max_epochs": 1,
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "default_root_dir": root,
        **kw,
    }
    return pl.Trainer(**kw)


def _data(root, **kw) -> ImageDataModule:
    return ImageDataModule(root, image_size=32, batch_size=6, num_workers=0, **kw)


def test_fit_builds_head_metrics_and_names_from_the_data_and_the_checkpoint_has_them(
    colour_folder, tmp_path
):
    pl.seed_everything(0)
    model = ImageClassifier("test_resnet", pretrained=False, image_size=32)
    assert model.num_classes is None and not model.metric_manager.has("val")
    trainer = _trainer(tmp_path, limit_train_batches=2)
    trainer.fit(model, datamodule=_data(colour_folder))

    assert model.num_classes == 3 and model.hparams["num_classes"] == 3
    assert model.backbone.get_classifier().out_features == 3
    assert model.class_names == ["blue", "green", "red"]
    assert 0.0 <= float(trainer.callback_metrics["val/accuracy"]) <= 1.0  # metrics built
    # A checkpoint rebuilds the whole model with no arguments and predicts the same.
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = ImageClassifier.load_from_checkpoint(path)
    assert loaded.num_classes == 3 and loaded.class_names == ["blue", "green", "red"]
    image = next(iter((colour_folder / "test" / "red").iterdir()))
    assert loaded.predict(image, top_k=3) == model.predict(image, top_k=3)


def test_a_model_waiting_for_num_classes_says_so_before_a_fit(tmp_path):
    model = ImageClassifier("test_resnet", pretrained=False, image_size=32)
    with pytest.raises(ValueError, match=r"created with num_classes=None: it takes the number"):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"pass ImageClassifier\(num_classes=N\)"):
        model.predict(torch.zeros(3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"num_classes=None"):
        model.export(tmp_path / "model.onnx")


def test_fit_without_a_data_module_is_a_clear_error(tmp_path):
    model = ImageClassifier("test_resnet", pretrained=False, image_size=32)
    loader = DataLoader(TensorDataset(torch.zeros(4, 3, 32, 32), torch.zeros(4).long()))
    with pytest.raises(ValueError, match=r"created with num_classes=None.*datamodule=dm"):
        _trainer(tmp_path, fast_dev_run=1).fit(model, train_dataloaders=loader)


def test_class_weights_and_mixup_are_built_for_the_data_count(colour_folder, tmp_path):
    model = ImageClassifier(
        "test_resnet", pretrained=False, image_size=32, class_weights="balanced", mixup_alpha=0.4
    )
    _trainer(tmp_path, fast_dev_run=1).fit(model, datamodule=_data(colour_folder))
    # 12 training images per class: balanced weights are n / (classes * count) = 1 each.
    assert torch.allclose(model.loss_class_weights, torch.ones(3))
    assert model.mixup is not None and model.mixup.num_classes == 3
    assert model.state_dict()["loss_class_weights"].shape == (3,)

    wrong = ImageClassifier("test_resnet", pretrained=False, image_size=32, class_weights=[1, 2])
    with pytest.raises(ValueError, match=r"class_weights has 2 values but num_classes=3"):
        _trainer(tmp_path, fast_dev_run=1).fit(wrong, datamodule=_data(colour_folder))


def test_a_given_num_classes_that_differs_from_the_data_is_still_an_error(colour_folder, tmp_path):
    model = ImageClassifier("test_resnet", num_classes=5, pretrained=False, image_size=32)
    with pytest.raises(ValueError, match=r"has num_classes=5 but the data module has 3 classes"):
        _trainer(tmp_path, fast_dev_run=1).fit(model, datamodule=_data(colour_folder))


def test_freeze_backbone_keeps_the_adopted_head_trainable(colour_folder, tmp_path):
    model = ImageClassifier("test_resnet", pretrained=False, image_size=32, freeze_backbone=True)
    _trainer(tmp_path, fast_dev_run=1).fit(model, datamodule=_data(colour_folder))
    head = model.backbone.get_classifier()
    assert all(p.requires_grad for p in head.parameters())
    others = [p for n, p in model.backbone.named_parameters() if not n.startswith("fc.")]
    assert others and not any(p.requires_grad for p in others)
