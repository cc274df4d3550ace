"""The data contract: DataConfig, resolve/merge, DataContract, BaseDataModule and read_image."""

import os
from types import SimpleNamespace

import numpy as np
import pytest
import pytorch_lightning as pl
import timm
import torch
import torch.nn as nn
from PIL import Image
from pytorch_lightning.loggers import CSVLogger
from timm.data import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch.utils.data import TensorDataset

from autotimm_core import BaseTask
from autotimm_core.data import (
    BaseDataModule,
    DataConfig,
    DataContract,
    coerce_data_config,
    interpolation_name,
    mean_fill,
    merge_data_configs,
    normalize_images,
    read_image,
    resolve_data_config,
)
from autotimm_core.data import datamodule as datamodule_module


# ----------------------------------------------------------------------------- DataConfig
def test_defaults_are_timms_imagenet_constants():
    cfg = DataConfig()
    assert cfg.image_size == 224 and cfg.interpolation == "bicubic" and cfg.resize_mode == "crop"
    assert cfg.mean == IMAGENET_DEFAULT_MEAN and cfg.std == IMAGENET_DEFAULT_STD
    assert cfg.crop_pct == DEFAULT_CROP_PCT and cfg.explicit == frozenset()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"image_size": 0}, "image_size must be a positive int, got 0"),
        ({"image_size": True}, "image_size must be a positive int, got True"),
        ({"image_size": 22.5}, "image_size must be a positive int, got 22.5"),
        ({"mean": (0.5, 0.5)}, r"mean needs 3 numbers \(R, G, B\), got \(0.5, 0.5\)"),
        ({"std": "abc"}, "std needs 3 numbers"),
        ({"std": (0.5, 0.0, 0.5)}, "std values must be > 0"),
        ({"interpolation": "lanczos"}, r"interpolation must be one of \['nearest', 'bilinear'"),
        ({"resize_mode": "pad"}, r"resize_mode must be one of \['crop', 'letterbox'\]"),
        ({"crop_pct": 1.5}, r"crop_pct must be in \(0, 1\], got 1.5"),
        ({"explicit": {"size"}}, r"unknown fields \['size'\]"),
    ],
)
def test_bad_values_name_the_field(values, message):
    with pytest.raises(ValueError, match=message):
        DataConfig(**values)


def test_to_dict_is_plain_data_and_from_dict_round_trips():
    cfg = DataConfig(
        image_size=96,
        mean=[0.1, 0.2, 0.3],
        interpolation="nearest",
        resize_mode="letterbox",
        crop_pct=1,
        explicit={"image_size", "mean"},
    )
    assert cfg.mean == (0.1, 0.2, 0.3) and isinstance(cfg.crop_pct, float)
    d = cfg.to_dict()
    assert d == {
        "image_size": 96,
        "mean": [0.1, 0.2, 0.3],
        "std": list(IMAGENET_DEFAULT_STD),
        "interpolation": "nearest",
        "resize_mode": "letterbox",
        "crop_pct": 1.0,
        "explicit": ["image_size", "mean"],
    }
    assert DataConfig.from_dict(d) == cfg
    torch.save(d, buffer := __import__("io").BytesIO())  # what a checkpoint holds...
    buffer.seek(0)
    assert DataConfig.from_dict(torch.load(buffer, weights_only=True)) == cfg  # ...and loads
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['size'\]; valid keys are"):
        DataConfig.from_dict({"size": 3})


def test_with_values_marks_what_it_sets_and_ignores_none():
    cfg = DataConfig().with_values(image_size=32, mean=None)
    assert cfg.image_size == 32 and cfg.explicit == {"image_size"}
    assert DataConfig().with_values(False, image_size=32).explicit == frozenset()


def test_interpolation_name_is_the_one_rule_for_timm_names():
    assert [interpolation_name(n) for n in ("nearest", "bilinear", "bicubic")] == [
        "nearest",
        "bilinear",
        "bicubic",
    ]
    assert {interpolation_name(n) for n in ("random", "lanczos", "box", "hamming", None)} == {
        "bicubic"
    }


def test_coerce_takes_a_config_its_dict_or_none():
    cfg = DataConfig(image_size=64)
    assert coerce_data_config(cfg) is cfg and coerce_data_config(None) is None
    assert coerce_data_config(cfg.to_dict()) == cfg
    with pytest.raises(TypeError, match="data_config must be a DataConfig, a dict or None"):
        coerce_data_config(64)


# ----------------------------------------------------------------------------- resolve
@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    # test_resnet's pretrained cfg: 160 px, mean/std 0.5, bilinear, crop_pct 0.95
    return timm.create_model("test_resnet", pretrained=False)


def test_resolve_explicit_beats_the_backbone_which_beats_the_defaults(resnet):
    plain = resolve_data_config()
    assert plain == DataConfig()
    from_backbone = resolve_data_config(resnet)
    assert (from_backbone.image_size, from_backbone.mean, from_backbone.std) == (
        160,
        (0.5, 0.5, 0.5),
        (0.5, 0.5, 0.5),
    )
    assert from_backbone.interpolation == "bilinear" and from_backbone.crop_pct == 0.95
    assert from_backbone.explicit == frozenset()
    explicit = resolve_data_config(resnet, image_size=32, mean=(0.1, 0.2, 0.3), crop_pct=1.0)
    assert explicit.image_size == 32 and explicit.mean == (0.1, 0.2, 0.3)
    assert explicit.crop_pct == 1.0 and explicit.std == (0.5, 0.5, 0.5)  # unset: the backbone's
    assert explicit.explicit == {"image_size", "mean", "crop_pct"}
    # a task default (detection's 640) comes before the backbone's size, explicit before both
    assert resolve_data_config(resnet, default_image_size=640).image_size == 640
    assert resolve_data_config(resnet, image_size=48, default_image_size=640).image_size == 48
    assert resolve_data_config(default_resize_mode="letterbox").resize_mode == "letterbox"
    # not a timm model: the defaults apply
    assert resolve_data_config(nn.Linear(2, 2)) == DataConfig()


def test_resolve_maps_timm_interpolations_the_transforms_lack(resnet):
    vit = timm.create_model("test_vit", pretrained=False)
    assert vit.pretrained_cfg["interpolation"] == "bicubic"
    assert resolve_data_config(vit).interpolation == "bicubic"
    resnet.pretrained_cfg = {**resnet.pretrained_cfg, "interpolation": "random"}
    try:
        assert resolve_data_config(resnet).interpolation == "bicubic"
    finally:
        resnet.pretrained_cfg = {**resnet.pretrained_cfg, "interpolation": "bilinear"}


def test_resolve_overrides_from_a_dict_a_config_or_a_checkpoint(resnet):
    assert resolve_data_config(resnet, overrides={"image_size": 40}).explicit == {"image_size"}
    # keyword arguments win over overrides
    both = resolve_data_config(resnet, image_size=32, overrides={"image_size": 40, "std": [1] * 3})
    assert both.image_size == 32 and both.std == (1.0, 1.0, 1.0)
    # a DataConfig, or its stored form: only what was set counts; the rest is resolved again
    stored = DataConfig(image_size=40, mean=(0.9, 0.9, 0.9), explicit={"image_size"})
    for given in (stored, stored.to_dict()):
        cfg = resolve_data_config(resnet, overrides=given)
        assert cfg.image_size == 40 and cfg.mean == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError, match=r"data_config has unknown key\(s\) \['size'\]"):
        resolve_data_config(resnet, overrides={"size": 40})


def test_fixed_size_counts_the_size_as_set(resnet):
    cfg = resolve_data_config(resnet, fixed_size=True)
    assert cfg.image_size == 160 and cfg.explicit == {"image_size"}


# ----------------------------------------------------------------------------- merge
def test_merge_one_side_wins_and_neither_keeps_the_models():
    model = DataConfig(image_size=160, mean=(0.5, 0.5, 0.5), explicit={"mean"})
    data = DataConfig(image_size=32, interpolation="nearest", explicit={"image_size"})
    merged = merge_data_configs(model, data)
    assert merged.image_size == 32  # set on the data only
    assert merged.mean == (0.5, 0.5, 0.5)  # set on the model only
    assert merged.interpolation == "bicubic"  # set on neither: the model's
    assert merged.explicit == {"image_size", "mean"}
    same = DataConfig(image_size=32, explicit={"image_size"})
    assert merge_data_configs(same, data).image_size == 32  # set alike on both: no conflict


def test_merge_conflict_names_both_values_and_both_modules():
    model = DataConfig(image_size=64, mean=(0.5, 0.5, 0.5), explicit={"image_size", "mean"})
    data = DataConfig(image_size=32, mean=(0.1, 0.2, 0.3), explicit={"image_size", "mean"})
    with pytest.raises(
        ValueError,
        match=r"ImageClassifier has image_size=64 but ImageDataModule has image_size=32: "
        r"give both the same image_size, or set it on one of them only",
    ):
        merge_data_configs(model, data, "ImageClassifier", "ImageDataModule")
    model = model.with_values(False, image_size=32)
    with pytest.raises(
        ValueError, match=r"the model has mean=\[0.5, 0.5, 0.5\] but the data module has mean="
    ):
        merge_data_configs(model, data)


# ----------------------------------------------------------------------------- DataContract
class Task(BaseTask):
    def __init__(self, num_classes=3, class_names=None, image_size=None, data_config=None):
        super().__init__(num_classes=num_classes, scheduler="none")
        self.save_task_hyperparameters()
        self.num_classes = num_classes
        self.class_names = class_names
        self.backbone = timm.create_model("test_resnet", pretrained=False, num_classes=num_classes)
        self.init_data_config(image_size, data_config)

    def forward(self, x):
        return self.backbone(self.prepare_images(x))

    def validation_step(self, batch, batch_idx):
        self.seen = batch[0]


class Data(BaseDataModule):
    def __init__(self, image_size=None, names=("a", "b", "c"), **kwargs):
        super().__init__(image_size=image_size, num_workers=0, **kwargs)
        self.class_names = list(names)
        self.changes = 0

    @property
    def num_classes(self):
        return len(self.class_names)

    def on_data_config_change(self):
        self.changes += 1

    def val_dataloader(self):
        images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
        return self.make_loader(TensorDataset(images, torch.zeros(4).long()), train=False)


def _contract(task, data, stage="fit"):
    DataContract().setup(SimpleNamespace(datamodule=data), task, stage)


def test_contract_shares_labels_and_the_merged_config_with_both_sides():
    task, data = Task(), Data(image_size=32)
    _contract(task, data)
    assert task.class_names == ["a", "b", "c"] and task.hparams["class_names"] == ["a", "b", "c"]
    assert task.data_config == data.data_config
    assert data.image_size == task.image_size == 32  # the data set it
    assert data.data_config.mean == (0.5, 0.5, 0.5)  # the model's backbone
    assert data.changes == 1  # told once, so it rebuilt its transforms
    assert task.hparams["data_config"] == task.data_config.to_dict()  # checkpoints keep it
    _contract(task, data, "validate")
    assert data.changes == 1  # nothing changed: no rebuild
    named = Task(class_names=["x", "y", "z"])
    _contract(named, Data())
    assert named.class_names == ["x", "y", "z"]  # names given to the model stay


def test_contract_num_classes_mismatch_names_both_counts_and_the_classes():
    with pytest.raises(
        ValueError,
        match=r"Task has num_classes=5 but the data module has 3 classes \(a, b, c\); "
        r"create the model with num_classes=3 \(e.g. num_classes=data.num_classes\) .*Data",
    ):
        _contract(Task(num_classes=5), Data())


def test_contract_config_conflict_names_both():
    with pytest.raises(ValueError, match="Task has image_size=64 but Data has image_size=32"):
        _contract(Task(image_size=64), Data(image_size=32))


def test_contract_runs_under_a_plain_trainer_and_normalizes_on_the_device(tmp_path):
    task, data = Task(), Data(image_size=32)
    assert any(isinstance(c, DataContract) for c in task.configure_callbacks())
    trainer = pl.Trainer(
        logger=CSVLogger(tmp_path),  # logs both modules' hyperparameters together
        enable_checkpointing=False,
        enable_progress_bar=False,
        limit_val_batches=1,
    )
    trainer.validate(task, datamodule=data)
    assert data.changes == 1 and task.image_size == 32
    assert task.seen.dtype == torch.float32 and float(task.seen.min()) >= -1.0  # mean/std 0.5
    # image_size was None on the model and 32 on the data: both record the 32 they use, which
    # Lightning needs to log them together
    assert task.hparams["image_size"] == data.hparams["image_size"] == 32
    assert task.hparams_initial["image_size"] == 32


def test_contract_without_a_datamodule_does_nothing():
    task = Task()
    before = task.data_config
    DataContract().setup(SimpleNamespace(datamodule=None), task, "fit")
    assert task.data_config is before


def test_task_data_config_setter_and_missing_init():
    task = Task(data_config={"image_size": 48})
    assert task.image_size == 48
    with pytest.raises(TypeError, match="data_config must be a DataConfig, got dict"):
        task.data_config = {"image_size": 32}
    with pytest.raises(AttributeError):
        task.image_size = 32  # read-only: from data_config

    class Bare(BaseTask):
        pass

    # nn.Module turns a property's AttributeError into its own "has no attribute" message
    with pytest.raises(AttributeError, match="data_config"):
        _ = Bare().data_config
    assert getattr(Bare(), "data_config", None) is None  # what DataContract relies on


# ----------------------------------------------------------------------------- BaseDataModule
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be a positive int, got 0"),
        ({"batch_size": True}, "batch_size must be a positive int, got True"),
        ({"num_workers": -1}, "num_workers must be an int >= 0, got -1"),
        ({"num_workers": 1.5}, "num_workers must be an int >= 0, got 1.5"),
        (
            {"augmentation_preset": "heavy"},
            r"augmentation_preset must be one of \['none', 'light', 'default', 'strong'\]",
        ),
        (
            {"transform_backend": "dali"},
            r"transform_backend must be one of \['torchvision', 'albumentations'\]",
        ),
        ({"interpolation": "lanczos"}, "interpolation must be one of"),
        ({"image_size": -3}, "image_size must be a positive int"),
        ({"mean": (0.5,)}, "mean needs 3 numbers"),
    ],
)
def test_base_datamodule_bad_arguments_name_the_parameter(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BaseDataModule(**kwargs)


def test_albumentations_missing_names_the_tasks_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "albumentations", None)

    class Classy(BaseDataModule):
        distribution = "autotimm-classification"

    with pytest.raises(
        ImportError, match=r'pip install "\./packages/classification\[albumentations\]"'
    ):
        Classy(transform_backend="albumentations")


def test_num_workers_is_capped_at_the_cpus(monkeypatch):
    monkeypatch.setattr(datamodule_module, "available_cpus", lambda: 2)
    data = BaseDataModule(num_workers=16)
    assert data.num_workers == 2 and data.persistent_workers
    assert BaseDataModule(num_workers=0).persistent_workers is False
    assert BaseDataModule(num_workers=1, persistent_workers=False).persistent_workers is False


def test_own_config_hparams_and_read_only_image_size():
    data = Data(image_size=48, mean=(0.1, 0.2, 0.3), interpolation="nearest", batch_size=8)
    cfg = data.data_config
    assert (cfg.image_size, cfg.mean, cfg.interpolation) == (48, (0.1, 0.2, 0.3), "nearest")
    assert cfg.explicit == {"image_size", "mean", "interpolation"}
    assert data.image_size == 48 and data.batch_size == 8
    # hyperparameters of the whole init chain: the subclass's and the base's
    assert data.hparams["names"] == ("a", "b", "c") and data.hparams["image_size"] == 48
    assert data.hparams["batch_size"] == 8
    with pytest.raises(AttributeError):
        data.image_size = 32
    with pytest.raises(TypeError, match="data_config must be a DataConfig, got dict"):
        data.data_config = {"image_size": 32}
    assert BaseDataModule().data_config == DataConfig()

    class Detect(BaseDataModule):
        resize_mode, default_image_size = "letterbox", 640

    assert Detect().data_config == DataConfig(image_size=640, resize_mode="letterbox")


def test_normalize_on_device_hook():
    data = Data(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    images = torch.randint(0, 256, (2, 3, 4, 4), dtype=torch.uint8)
    labels = torch.tensor([0, 1])
    out = data.on_after_batch_transfer([images, labels], 0)
    assert isinstance(out, list) and out[1] is labels
    assert torch.allclose(out[0], (images.float() / 255 - 0.5) / 0.25, atol=1e-5)
    assert isinstance(data.on_after_batch_transfer((images, labels), 0), tuple)
    floats = torch.randn(2, 3, 4, 4)
    assert data.on_after_batch_transfer([floats, labels], 0)[0] is floats
    off = Data(normalize_on_device=False)
    assert off.on_after_batch_transfer([images, labels], 0)[0] is images
    assert data.on_after_batch_transfer({"image": images}, 0)["image"] is images  # not a list


def test_make_loader_shuffles_and_drops_only_in_training():
    data = Data(batch_size=4)
    ds = TensorDataset(torch.arange(10))
    train, evaluation = data.make_loader(ds, True), data.make_loader(ds, False)
    assert train.drop_last and len(train) == 2
    assert not evaluation.drop_last and len(evaluation) == 3
    assert [int(x) for (b,) in evaluation for x in b] == list(range(10))  # in order, all
    assert not data.make_loader(TensorDataset(torch.arange(3)), True).drop_last  # one batch
    assert train.num_workers == 0 and train.pin_memory == torch.cuda.is_available()


def test_normalize_images_and_mean_fill():
    images = torch.tensor([0, 128, 255], dtype=torch.uint8).view(1, 3, 1, 1).expand(2, 3, 2, 2)
    mean, std = (0.5, 0.25, 0.1), (0.2, 0.3, 0.4)
    out = normalize_images(images, mean, std)
    expected = (torch.tensor([0, 128, 255]) / 255 - torch.tensor(mean)) / torch.tensor(std)
    assert out.dtype == torch.float32 and out.shape == images.shape
    assert torch.allclose(out[1, :, 0, 0], expected, atol=1e-5)
    assert torch.allclose(normalize_images(images[0], mean, std), out[0], atol=1e-6)  # (3, H, W)
    floats = torch.randn(1, 3, 2, 2)
    assert normalize_images(floats, mean, std) is floats
    fill = mean_fill(mean)
    assert fill == [128, 64, 26]
    assert (
        normalize_images(torch.tensor(fill, dtype=torch.uint8).view(3, 1, 1), mean, std).abs().max()
        < 0.01
    )


# ----------------------------------------------------------------------------- read_image
@pytest.fixture
def pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)


def _chw(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a).permute(2, 0, 1)


def test_read_image_paths_and_pil_images(tmp_path, pixels):
    path = tmp_path / "rgb.png"
    Image.fromarray(pixels).save(path)
    for item in (path, str(path), Image.fromarray(pixels)):
        img = read_image(item)
        assert img.dtype == torch.uint8 and torch.equal(img, _chw(pixels))
    rgba = Image.fromarray(np.dstack([pixels, pixels[..., :1]]))
    assert torch.equal(read_image(rgba), _chw(pixels))  # alpha dropped
    grey = read_image(Image.fromarray(pixels[..., 0]))
    assert grey.shape == (3, 20, 30) and torch.equal(grey[2], torch.from_numpy(pixels[..., 0]))
    grey16 = Image.fromarray(pixels[..., 0].astype(np.uint16) * 257)
    assert grey16.mode.startswith("I")
    assert torch.equal(read_image(grey16)[0], torch.from_numpy(pixels[..., 0]))  # scaled
    assert read_image(Image.fromarray(pixels).convert("P")).shape == (3, 20, 30)
    with pytest.raises(FileNotFoundError, match=r"image not found: .*absent\.png"):
        read_image(tmp_path / "absent.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(OSError, match=r"junk\.png"):
        read_image(tmp_path / "junk.png")


def test_read_image_arrays_and_tensors_of_every_kind(pixels):
    expected = _chw(pixels)
    as16 = pixels.astype(np.uint16) * 257
    for item in (
        pixels,  # (H, W, 3) uint8
        np.dstack([pixels, np.zeros((20, 30, 1), np.uint8)]),  # RGBA
        pixels.astype(np.float32) / 255,  # float in [0, 1]
        as16,  # 16 bits: scaled, not clipped
        expected,  # (3, H, W) uint8 tensor
        expected.float() / 255,  # float tensor
        expected.double() / 255,
        expected.long(),  # int64 0..255
        torch.cat([expected, expected[:1]]),  # (4, H, W)
    ):
        img = read_image(item)
        assert img.shape == (3, 20, 30) and img.dtype == torch.uint8
        assert torch.equal(img, expected), type(item)
    grey = read_image(pixels[..., 0])  # (H, W) array
    assert torch.equal(grey, torch.from_numpy(pixels[..., 0]).expand(3, -1, -1))
    assert torch.equal(read_image(expected[0]), grey)  # (H, W) tensor
    assert torch.equal(read_image(pixels[..., :1]), grey)  # (H, W, 1)
    over = read_image(torch.full((3, 2, 2), 1.5))  # floats above 1 are clipped
    assert int(over.max()) == 255
    assert read_image(expected.cuda() if torch.cuda.is_available() else expected).device.type == (
        "cpu"
    )


@pytest.mark.parametrize(
    ("item", "error", "message"),
    [
        (
            np.zeros((20, 30, 2), np.uint8),
            ValueError,
            r"\(H, W, C\) with C in 1, 3, 4, got \(20, 30, 2\)",
        ),
        (np.zeros((2, 20, 30, 3), np.uint8), ValueError, r"got shape \(2, 20, 30, 3\)"),
        (torch.zeros(2, 20, 30), ValueError, r"\(C, H, W\) with C in 1, 3, 4, got \(2, 20, 30\)"),
        (torch.zeros(1, 3, 20, 30), ValueError, r"got \(1, 3, 20, 30\)"),
        (42, TypeError, "images must be file paths, PIL images, numpy arrays or tensors, got int"),
        (b"bytes", TypeError, "got bytes"),
    ],
)
def test_read_image_bad_inputs_say_what_is_wrong(item, error, message):
    with pytest.raises(error, match=message):
        read_image(item)


def test_read_image_path_like_objects(tmp_path, pixels):
    class Where(os.PathLike):
        def __fspath__(self):
            return str(tmp_path / "p.jpg")

    Image.fromarray(pixels).save(tmp_path / "p.jpg")
    assert read_image(Where()).shape == (3, 20, 30)
