import shutil
import warnings

import pytest
import pytorch_lightning as pl
import torch
from helpers import COLOURS, make_image_folder
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from autotimm_classification import ImageClassifier, ImageDataModule
from autotimm_core.data import DataConfig


def dm(root, **kwargs) -> ImageDataModule:
    kwargs = {"image_size": 32, "batch_size": 4, "num_workers": 0, **kwargs}
    return ImageDataModule(root, **kwargs)


def test_folders_give_sorted_classes_and_a_seeded_stratified_val_split(colour_folder):
    data = dm(colour_folder, val_split=0.25)
    data.setup("fit")
    assert data.class_names == sorted(COLOURS) and data.num_classes == 3
    assert len(data.train_dataset) == 27 and len(data.val_dataset) == 9
    assert sorted(data.val_dataset.targets) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    train_files = {p for p, _ in data.train_dataset.samples}
    val_files = {p for p, _ in data.val_dataset.samples}
    assert not train_files & val_files and len(train_files | val_files) == 36
    again = dm(colour_folder, val_split=0.25)
    again.setup("fit")
    assert [p for p, _ in again.val_dataset.samples] == sorted(val_files)
    other_seed = dm(colour_folder, val_split=0.25, seed=7)
    other_seed.setup("fit")
    assert {p for p, _ in other_seed.val_dataset.samples} != val_files
    # The test folder keeps the training split's mapping.
    for path, label in data.test_dataset.samples:
        assert f"/{data.class_names[label]}/" in path


def test_loaders_give_uint8_batches_normalized_on_the_device(tmp_path):
    root = make_image_folder(tmp_path, {"train": 5, "val": 2})
    data = dm(root, batch_size=4, mean=(0.5,) * 3, std=(0.25,) * 3)
    data.setup("fit")
    assert len(data.val_dataset) == 6 and len(data.train_dataset) == 15
    batch = next(iter(data.train_dataloader()))
    images, labels = batch
    # a quarter of the bytes between the workers and to the GPU
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    out = data.on_after_batch_transfer(batch, 0)
    assert out[0].dtype == torch.float32 and out[1] is labels
    assert torch.allclose(out[0], (images.float() / 255 - 0.5) / 0.25, atol=1e-5)
    assert len(data.train_dataloader()) == 3  # 15 images, batch 4, last partial batch dropped
    assert sum(len(b[1]) for b in data.val_dataloader()) == 6
    # the same numbers as normalizing in the workers (evaluation: no randomness)
    eager = dm(root, batch_size=4, mean=(0.5,) * 3, std=(0.25,) * 3, normalize_on_device=False)
    eager.setup("fit")
    floats, _ = next(iter(eager.val_dataloader()))
    raw, _ = next(iter(data.val_dataloader()))
    assert floats.dtype == torch.float32
    assert torch.allclose(data.normalize(raw), floats, atol=1e-5)
    assert eager.on_after_batch_transfer([floats, labels], 0)[0] is floats


def test_the_model_gets_normalized_floats_under_a_trainer(tmp_path):
    root = make_image_folder(tmp_path, {"train": 4, "val": 2})
    data = dm(root)
    seen = []

    class Probe(pl.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            seen.append((batch[0].dtype, float(batch[0].min()), float(batch[0].max())))

    model = ImageClassifier("test_resnet", num_classes=3, pretrained=False)
    trainer = pl.Trainer(
        fast_dev_run=2, logger=False, enable_progress_bar=False, callbacks=[Probe()]
    )
    trainer.fit(model, datamodule=data)
    assert [dtype for dtype, _, _ in seen] == [torch.float32] * 2
    # test_resnet's mean/std are 0.5: uint8 0..255 normalizes into [-1, 1]
    assert all(lo >= -1.0 and hi <= 1.0 for _, lo, hi in seen)
    assert any(lo < 0 for _, lo, _ in seen)


def test_normalize_works_before_setup_with_the_modules_own_config(tmp_path):
    data = dm(tmp_path, mean=(0.5,) * 3, std=(0.25,) * 3)
    out = data.normalize(torch.zeros(1, 3, 2, 2, dtype=torch.uint8))
    assert out.dtype == torch.float32 and torch.allclose(out, torch.full_like(out, -2.0))
    plain = dm(tmp_path, image_size=None)
    assert plain.data_config == DataConfig()  # no model yet: 224 px, timm's ImageNet statistics
    assert plain.data_config.mean == IMAGENET_DEFAULT_MEAN and plain.image_size == 224


def test_mean_and_std_come_from_the_model_through_the_data_contract(colour_folder):
    data = dm(colour_folder)
    data.setup("fit")
    assert data.data_config.mean == IMAGENET_DEFAULT_MEAN  # no model: ImageNet's
    assert data.data_config.std == IMAGENET_DEFAULT_STD
    model = ImageClassifier("test_resnet", num_classes=3, pretrained=False)
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    pl.Trainer(limit_val_batches=1, enable_model_summary=False, **quiet).validate(
        model, datamodule=data
    )
    assert data.data_config.mean == (0.5, 0.5, 0.5)  # test_resnet's pretrained config
    assert data.data_config.crop_pct == 0.95
    assert data.data_config.image_size == 32  # set on the data module: it wins
    assert model.data_config == data.data_config  # both sides hold the merged config
    # the transforms were rebuilt with it: the loader normalizes with the model's mean/std
    raw, _ = next(iter(data.val_dataloader()))
    assert raw.shape[-1] == 32
    assert torch.allclose(data.normalize(raw), raw.float() / 127.5 - 1.0, atol=1e-5)
    # ... and the 0.95 crop: the eval Resize gives the short side 32 / 0.95 = 33 px
    assert data.val_dataset.transform.transforms[0].size == [33]


def test_image_size_none_follows_the_model_and_a_conflict_names_both(colour_folder):
    data = dm(colour_folder, image_size=None)
    model = ImageClassifier("test_resnet", num_classes=3, pretrained=False)
    quiet = {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False}
    pl.Trainer(limit_val_batches=1, enable_model_summary=False, **quiet).validate(
        model, datamodule=data
    )
    assert data.image_size == model.image_size == 160  # test_resnet's pretrained input size
    assert next(iter(data.val_dataloader()))[0].shape[-2:] == (160, 160)
    sized = ImageClassifier("test_resnet", num_classes=3, pretrained=False, image_size=64)
    with pytest.raises(
        ValueError,
        match=r"ImageClassifier has image_size=64 but ImageDataModule has image_size=32",
    ):
        pl.Trainer(limit_val_batches=1, enable_model_summary=False, **quiet).validate(
            sized, datamodule=dm(colour_folder)
        )


@pytest.mark.parametrize("name", ["digits", "DIGITS"])
def test_builtin_digits_runs_offline(tmp_path, name):
    data = dm(tmp_path, dataset_name=name, val_split=0.1)
    data.prepare_data()
    data.setup("fit")
    assert data.class_names == [str(i) for i in range(10)]
    sizes = len(data.train_dataset), len(data.val_dataset), len(data.test_dataset)
    assert sum(sizes) == 1797 and sizes[2] == 359
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and int(labels.max()) < 10


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: None, r"Image folder '.*train' not found"),
        (lambda root: (root / "train").mkdir(), "has no class folders"),
        (
            lambda root: (root / "train" / "cat").mkdir(parents=True),
            r"'.*train/cat' contains no image",
        ),
    ],
)
def test_missing_or_empty_folders_fail_at_setup_naming_the_path(tmp_path, make, message):
    make(tmp_path)
    data = dm(tmp_path)
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        data.setup("fit")


def test_an_empty_class_folder_beside_full_ones_is_named(tmp_path):
    root = make_image_folder(tmp_path, {"train": 2})
    (root / "train" / "yellow").mkdir()
    (root / "train" / "yellow" / "notes.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"train/yellow' contains no image files"):
        dm(root).setup("fit")


def test_val_class_unknown_to_train_is_an_error(tmp_path):
    root = make_image_folder(tmp_path, {"train": 2, "val": 1})
    shutil.copytree(root / "val" / "red", root / "val" / "purple")
    with pytest.raises(
        ValueError, match=r"val/purple' has no counterpart.*\['blue', 'green', 'red'\]"
    ):
        dm(root).setup("fit")


def test_unknown_dataset_name_lists_the_valid_names(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"Unknown dataset_name 'CIFAR11'\. Valid names: CIFAR10, CIFAR100, MNIST, FashionMNIST, digits",
    ):
        dm(tmp_path, dataset_name="CIFAR11")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"augmentation_preset": "extreme"}, "augmentation_preset must be one of"),
        ({"transform_backend": "dali"}, "transform_backend must be one of"),
        ({"val_split": 1.0}, r"val_split must be in \[0, 1\)"),
        ({"batch_size": 0}, "batch_size must be a positive int"),
        ({"num_workers": -1}, "num_workers must be an int >= 0"),
        ({"interpolation": "lanczos"}, "interpolation must be one of"),
        ({"image_size": 0}, "image_size must be a positive int"),
    ],
)
def test_bad_settings_fail_at_construction(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        dm(tmp_path, **kwargs)


def test_verify_leaves_out_broken_files_with_one_warning(tmp_path):
    root = make_image_folder(tmp_path, {"train": 4})
    good = (root / "train" / "red" / "000.jpg").read_bytes()
    (root / "train" / "red" / "cut.jpg").write_bytes(good[: len(good) // 2])
    (root / "train" / "blue" / "empty.png").write_bytes(b"")
    data = dm(root, verify=True, val_split=0)
    with pytest.warns(
        UserWarning,
        match=r"left out 2 of 14 image files.*empty\.png \(empty file\).*cut\.jpg \(truncated JPEG",
    ):
        data.setup("fit")
    assert len(data.train_dataset) == 12


@pytest.mark.parametrize("num_workers", [0, 1])
def test_unreadable_file_is_skipped_at_load_with_a_warning_and_an_epoch_count(
    tmp_path, num_workers
):
    root = make_image_folder(tmp_path, {"train": 3})
    (root / "train" / "green" / "zzz.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    data = dm(root, val_split=0, batch_size=10, num_workers=num_workers)
    model = ImageClassifier("test_resnet", num_classes=3, pretrained=False)
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(model, datamodule=data)
    messages = [str(w.message) for w in caught]
    if num_workers == 0:  # a worker's own warnings go to its stderr
        assert any("Skipping unreadable image" in m and "green/zzz.jpg" in m for m in messages)
    assert any(
        "1 unreadable image file(s) skipped in the train data, epoch 0" in m for m in messages
    )
    assert trainer.global_step == 1  # the batch of 9 readable images still trained


def test_grey_builtin_arrays_become_three_channels():
    from autotimm_classification.datasets import ArrayImageDataset

    grey = torch.arange(2 * 4 * 5, dtype=torch.uint8).view(2, 4, 5)
    image, label = ArrayImageDataset(grey, [0, 1])[1]
    assert image.shape == (3, 4, 5) and torch.equal(image[2], grey[1]) and label == 1
    with pytest.raises(ValueError, match="2 images but 3 targets"):
        ArrayImageDataset(grey, [0, 1, 2])


def test_a_torchvision_set_not_yet_downloaded_says_how_to_get_it(tmp_path):
    data = dm(tmp_path, dataset_name="cifar10", download=False)
    data.prepare_data()  # download=False: nothing fetched
    with pytest.raises(RuntimeError, match=r"CIFAR10 not found under '.*': call prepare_data\(\)"):
        data.setup("fit")


def test_loader_workers_start_after_opencv_ran_in_the_main_process(tmp_path):
    """OpenCV's thread pool, started in the parent, must not deadlock forked loader workers.

    (Calling ``cv2.setNumThreads`` inside a forked worker hangs forever in that case.)
    """
    import threading

    import cv2
    import numpy as np

    big = np.random.default_rng(0).integers(0, 255, (2000, 2000, 3), np.uint8)
    for _ in range(3):  # starts OpenCV's worker threads in this process
        cv2.resize(big, (1000, 1000))
        cv2.GaussianBlur(big, (9, 9), 0)
    root = make_image_folder(tmp_path, {"train": 2})
    data = dm(root, val_split=0, batch_size=4, num_workers=1, transform_backend="albumentations")
    data.setup("fit")
    batches = []
    worker = threading.Thread(target=lambda: batches.append(next(iter(data.train_dataloader()))))
    worker.daemon = True
    worker.start()
    worker.join(timeout=120)
    assert not worker.is_alive(), "the loader worker hung"
    images, labels = batches[0]
    assert images.shape[0] == labels.shape[0] == 4
