import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from autotimm_classification import ImageClassifier, ImageDataModule
from autotimm_core import MetricConfig
from autotimm_core.data import DataConfig


def tiny(**kwargs) -> ImageClassifier:
    kwargs = {"backbone": "test_resnet", "num_classes": 3, "pretrained": False, **kwargs}
    return ImageClassifier(**kwargs)


def quiet_trainer(**kwargs) -> pl.Trainer:
    kwargs = {
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        **kwargs,
    }
    return pl.Trainer(**kwargs)


@pytest.mark.parametrize(
    ("backbone", "kwargs"),
    [("test_resnet", {}), ("test_efficientnet", {}), ("test_vit", {"img_size": 32})],
)
def test_any_timm_model_gets_its_own_head_reset_to_num_classes(backbone, kwargs):
    model = tiny(backbone=backbone, num_classes=7, backbone_kwargs=kwargs)
    assert model.backbone.get_classifier().out_features == 7
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_default_metric_is_accuracy_on_val_and_test():
    model = tiny()
    assert model.metric_manager.has("val") and model.metric_manager.has("test")
    assert not model.metric_manager.has("train")
    metric = model.metric_manager.metrics("val")["accuracy"]
    assert type(metric).__name__ == "MulticlassAccuracy" and metric.num_classes == 3


def test_freeze_backbone_keeps_only_the_head_trainable():
    model = tiny(freeze_backbone=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"backbone.fc.weight", "backbone.fc.bias"}
    model.train()
    assert not model.backbone.bn1.training  # frozen BatchNorm keeps its statistics
    for p in model.backbone.parameters():  # the guide's phase 2
        p.requires_grad = True
    model.train()
    assert model.backbone.bn1.training


def test_head_dropout_and_label_smoothing_are_used():
    model = tiny(head_dropout=0.3, label_smoothing=0.1)
    assert model.backbone.drop_rate == 0.3
    logits = torch.tensor([[10.0, 0.0, 0.0]])
    plain = torch.nn.functional.cross_entropy(logits, torch.tensor([0]))
    assert model._loss(logits, torch.tensor([0])) > plain + 0.1


def test_multi_label_uses_bce_sigmoid_and_multilabel_metrics():
    model = tiny(multi_label=True, metrics=[MetricConfig("f1", "F1Score", stages=["val"])])
    metric = model.metric_manager.metrics("val")["f1"]
    assert type(metric).__name__ == "MultilabelF1Score" and metric.num_labels == 3
    logits = torch.tensor([[2.0, -2.0, 0.0]])
    target = torch.tensor([[1, 0, 1]])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, target.float())
    assert torch.isclose(model._loss(logits, target), expected)
    images = torch.randn(4, 3, 32, 32)
    out = model.predict_step((images, target.expand(4, 3)), 0)
    assert torch.allclose(out["probs"], torch.sigmoid(model(images)))
    assert out["labels"].shape == (4, 3)

    # Trains on multi-hot targets from a plain DataLoader and logs val/f1.
    x = torch.randn(16, 3, 32, 32)
    y = torch.randint(0, 2, (16, 3))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    trainer = quiet_trainer(max_epochs=1)
    trainer.fit(model, loader, loader)
    assert "val/f1" in trainer.callback_metrics and "val/loss" in trainer.callback_metrics


def test_num_classes_that_disagrees_with_the_data_names_both(colour_folder):
    data = ImageDataModule(colour_folder, image_size=32, batch_size=4, num_workers=0)
    with pytest.raises(
        ValueError,
        match=r"ImageClassifier has num_classes=5 but the data module has 3 classes "
        r"\(blue, green, red\); create the model with num_classes=3 .*ImageDataModule",
    ):
        quiet_trainer(max_epochs=1).fit(tiny(num_classes=5), datamodule=data)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"num_classes": 0},
            "ImageClassifier: num_classes must be a positive int .*, or None to take the data",
        ),
        ({"num_classes": True}, "num_classes must be a positive int"),
        (
            {"class_names": ["a", "b"]},
            "ImageClassifier: class_names has 2 entries but num_classes=3",
        ),
        ({"head_dropout": 1.5}, r"head_dropout must be in \[0, 1\)"),
        ({"label_smoothing": -0.1}, r"label_smoothing must be in \[0, 1\)"),
        ({"backbone": "resnet5O"}, "Unknown backbone 'resnet5O'"),
        ({"optimizer": "adamx"}, "adamx"),
    ],
)
def test_bad_arguments_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny(**kwargs)


def test_predict_gives_top_k_labels_from_paths_pil_and_tensors(tmp_path):
    model = tiny(class_names=["blue", "green", "red"], data_config={"image_size": 32})
    pil = Image.new("RGB", (40, 30), (200, 10, 10))
    path = tmp_path / "red.png"
    pil.save(path)
    uint8 = torch.full((3, 30, 40), 7, dtype=torch.uint8)
    results = model.predict([str(path), pil, uint8, uint8.float() / 255], top_k=2)
    assert len(results) == 4 and all(len(r) == 2 for r in results)
    for r in results:
        assert r[0]["score"] >= r[1]["score"]
        assert r[0]["label"] == ["blue", "green", "red"][r[0]["index"]]
    # The same picture as a file and as a PIL image gives the same scores.
    assert results[0][0]["score"] == pytest.approx(results[1][0]["score"], abs=1e-5)
    assert results[2][0]["score"] == pytest.approx(results[3][0]["score"], abs=1e-5)
    assert model.training  # predict restores the mode it found
    single = model.predict(pil, top_k=10)
    assert len(single) == 1 and len(single[0]) == 3  # top_k capped at num_classes
    with pytest.raises(TypeError, match="must be file paths, PIL images, numpy arrays or tensors"):
        model.predict([42])


def test_compile_keeps_parameter_names_and_outputs():
    plain = tiny()
    compiled = tiny(compile={"backend": "eager"})
    assert plain.state_dict().keys() == compiled.state_dict().keys()
    compiled.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 32, 32)
    plain.eval(), compiled.eval()
    assert torch.allclose(plain(x), compiled(x), atol=1e-6)


def test_data_config_comes_from_the_backbone_and_explicit_values_win():
    cfg = tiny().data_config  # test_resnet's pretrained config
    assert (cfg.image_size, cfg.mean, cfg.crop_pct, cfg.interpolation) == (
        160,
        (0.5, 0.5, 0.5),
        0.95,
        "bilinear",
    )
    assert cfg.explicit == frozenset() and tiny().image_size == 160
    sized = tiny(image_size=32, data_config={"mean": [0.1, 0.2, 0.3]})
    assert sized.image_size == 32 and sized.data_config.mean == (0.1, 0.2, 0.3)
    assert sized.data_config.std == (0.5, 0.5, 0.5)  # left unset: the backbone's
    assert sized.data_config.explicit == {"image_size", "mean"}
    # a DataConfig is stored as plain data, as checkpoints (weights_only) need
    given = DataConfig(image_size=48, explicit=frozenset({"image_size"}))
    model = tiny(data_config=given)
    assert model.image_size == 48 and model.hparams["data_config"] == given.to_dict()
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['size'\]"):
        tiny(data_config={"size": 32})


def test_forward_takes_uint8_and_normalized_floats_alike():
    model = tiny().eval()
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    normalized = (images.float() / 255 - 0.5) / 0.5  # test_resnet's mean and std
    assert torch.allclose(model(images), model(normalized), atol=1e-5)


def test_base_task_arguments_pass_through_kwargs_into_the_hyperparameters():
    model = tiny(lr=0.05, optimizer="sgd", scheduler="none", freeze_backbone=True)
    assert model.lr == 0.05 and model.optimizer_name == "sgd" and model.scheduler_name is None
    assert {"lr", "optimizer", "scheduler", "freeze_backbone"} <= set(model.hparams)
    assert model.hparams["lr"] == 0.05
    assert not model.backbone.bn1.weight.requires_grad and model.backbone.fc.weight.requires_grad
    assert tiny().lr == 1e-3  # ImageClassifier's default_lr
    with pytest.raises(TypeError, match="unexpected keyword argument 'lrr'"):
        tiny(lrr=0.1)


def test_a_fixed_size_vit_is_resized_to_image_size_and_holds_to_it(colour_folder):
    strict = {"dynamic_img_size": False}  # test_vit is dynamic by default
    vit = tiny(backbone="test_vit", backbone_kwargs=strict)
    assert vit.image_size == 160 and "image_size" in vit.data_config.explicit  # fixed
    small = tiny(backbone="test_vit", backbone_kwargs=strict, image_size=32)
    assert small.backbone.patch_embed.img_size == (32, 32)
    assert small(torch.randn(2, 3, 32, 32)).shape == (2, 3)
    built = tiny(backbone="test_vit", backbone_kwargs={**strict, "img_size": 48})
    assert built.image_size == 48  # the size it was built at, not the pretrained 160
    # a data module with another size is an error, not a silent mismatch
    data = ImageDataModule(colour_folder, image_size=64, batch_size=4, num_workers=0)
    with pytest.raises(
        ValueError,
        match=r"ImageClassifier has image_size=32 but ImageDataModule has image_size=64",
    ):
        quiet_trainer(limit_val_batches=1).validate(small, datamodule=data)
    # a dynamic ViT takes any size, so the data module's wins
    dynamic = tiny(backbone="test_vit")
    assert "image_size" not in dynamic.data_config.explicit
    quiet_trainer(limit_val_batches=1).validate(dynamic, datamodule=data)
    assert dynamic.image_size == 64


def test_labels_and_data_config_reach_a_loaded_checkpoint(colour_folder, tmp_path):
    data = ImageDataModule(colour_folder, image_size=32, batch_size=4, num_workers=0)
    model = tiny()
    trainer = quiet_trainer(max_steps=1, limit_val_batches=1)
    trainer.fit(model, datamodule=data)
    assert model.class_names == ["blue", "green", "red"] and model.image_size == 32
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.data_config == model.data_config and loaded.image_size == 32
    assert loaded.class_names == ["blue", "green", "red"]
    assert loaded.eval_transform()(torch.zeros(3, 50, 40, dtype=torch.uint8)).shape == (3, 32, 32)


def test_predict_reads_arrays_16_bit_and_alpha_images_like_their_rgb_form():
    import numpy as np

    model = tiny(data_config={"image_size": 32})
    rgb = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.full((30, 40, 1), 255, np.uint8)])
    as16 = rgb.astype(np.uint16) * 257  # the same picture in 16 bits
    (a,), (b,), (c,), (d,) = (
        model.predict(x, top_k=1)
        for x in (rgb, rgba, torch.from_numpy(as16).permute(2, 0, 1), Image.fromarray(rgb))
    )
    for other in (b, c, d):
        assert other[0]["index"] == a[0]["index"]
        assert other[0]["score"] == pytest.approx(a[0]["score"], abs=1e-5)
    with pytest.raises(ValueError, match=r"got \(2, 3, 30, 40\)"):
        model.predict(torch.zeros(2, 3, 30, 40))
