"""The built-in offline detection set: generated once, atomically, deterministically, and read
through the same COCO reader as user data."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from autotimm_detection import DetectionDataModule
from autotimm_detection.data import builtin

SMALL = {"train": (12, 0), "val": (6, 1), "test": (4, 2)}


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fewer images per split (the same generator and seeds): the full set takes seconds."""
    monkeypatch.setattr(builtin, "PHOTO_OBJECTS_SPLITS", SMALL)


def test_the_set_is_a_coco_layout_read_like_user_data(tmp_path, small):
    dm = DetectionDataModule(data_dir=tmp_path, dataset_name="Photo-Objects", image_size=64)
    assert dm.data_dir == tmp_path / "photo_objects_v1"
    assert dm.format == "coco"
    assert dm.class_names == ["cat", "coffee", "astronaut"] and dm.num_classes == 3
    dm.setup()
    assert {s: len(d) for s, d in dm.datasets.items()} == {"train": 12, "val": 6, "test": 4}
    ann = json.loads((dm.data_dir / "annotations" / "instances_val.json").read_text())
    assert [c["name"] for c in ann["categories"]] == ["cat", "coffee", "astronaut"]
    per_image = [sum(a["image_id"] == im["id"] for a in ann["annotations"]) for im in ann["images"]]
    assert all(1 <= n <= 4 for n in per_image)
    for a in ann["annotations"]:
        x, y, w, h = a["bbox"]
        assert min(x, y) >= 0 and max(x + w, y + h) <= 128 and min(w, h) >= 4
    images, targets = next(iter(dm.val_dataloader()))
    assert images.shape == (6, 3, 64, 64) and images.dtype == torch.uint8
    assert all(int(t["labels"].max()) < 3 for t in targets)


def test_generation_is_deterministic_and_the_files_hold_the_rendered_scenes(tmp_path, small):
    folder = builtin.builtin_dir("photoobjects", tmp_path)
    images, targets = builtin.render_scenes(3, builtin.PHOTO_OBJECTS_SIZE, seed=1)
    ann = json.loads((folder / "annotations" / "instances_val.json").read_text())
    for i in range(3):
        on_disk = np.asarray(Image.open(folder / "val" / f"{i}.png"))
        assert np.array_equal(on_disk, images[i].permute(1, 2, 0).numpy())
    first = [a for a in ann["annotations"] if a["image_id"] == 1]
    assert [a["category_id"] - 1 for a in first] == targets[0]["labels"].tolist()
    boxes = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in first)]
    assert boxes == targets[0]["boxes"].tolist()
    # Crops of real photos: textured, not flat colour.
    assert float(images.float().std(dim=(2, 3)).mean()) > 20


def test_an_existing_set_is_reused_and_a_stopped_generation_leaves_nothing(
    tmp_path, small, monkeypatch
):
    folder = builtin.builtin_dir("photoobjects", tmp_path)
    stamp = (folder / "annotations" / "instances_train.json").stat().st_mtime_ns

    def fail(_folder):
        raise AssertionError("generated again")

    monkeypatch.setattr(builtin, "_write", fail)
    assert builtin.builtin_dir("photoobjects", tmp_path) == folder
    assert (folder / "annotations" / "instances_train.json").stat().st_mtime_ns == stamp

    other = tmp_path / "other"

    def stopped(target):
        (target / "annotations").mkdir(parents=True)
        raise KeyboardInterrupt

    monkeypatch.setattr(builtin, "_write", stopped)
    with pytest.raises(KeyboardInterrupt):
        builtin.builtin_dir("photoobjects", other)
    assert list(other.iterdir()) == []  # no half set, no temporary folder


def test_the_cache_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(builtin.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert builtin.default_root() == tmp_path / "xdg" / "autotimm"
    monkeypatch.setenv(builtin.CACHE_ENV, str(tmp_path / "mine"))
    assert builtin.default_root() == tmp_path / "mine"


def test_bad_names_and_mixed_sources_are_refused(tmp_path):
    with pytest.raises(
        ValueError, match=r"Unknown dataset_name .coco.\. Valid names: photo_objects"
    ):
        DetectionDataModule(dataset_name="coco")
    with pytest.raises(ValueError, match="leave out train_ann, format"):
        DetectionDataModule(dataset_name="photo_objects", train_ann="a.json", format="yolo")


def test_missing_photo_packages_name_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage", None)
    with pytest.raises(ImportError, match=r"autotimm-detection\[builtin\]"):
        DetectionDataModule(data_dir=tmp_path, dataset_name="photo_objects")
    assert list(tmp_path.iterdir()) == []
