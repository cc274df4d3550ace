"""SegmentationDataModule: layouts, mask-aware augmentation kept aligned, bad input named."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image
from scenes import CLASSES, IGNORE, folder_to_coco, folder_to_csv, folder_to_voc, make_folder

from autotimm_segmentation import SegmentationDataModule, build_segmentation_transform, read_mask


def _batch(data: SegmentationDataModule, split: str = "val"):
    data.setup("fit")
    loader = data.val_dataloader() if split == "val" else data.train_dataloader()
    return next(iter(loader))


def test_folder_layout_gives_uint8_batches_with_ignore_padding(scenes_root):
    data = SegmentationDataModule(scenes_root, image_size=64, batch_size=4, num_workers=0)
    assert data.layout == "folder"
    assert data.class_names == CLASSES and data.num_classes == 4
    images, masks = _batch(data)
    assert images.shape == (4, 3, 64, 64) and images.dtype == torch.uint8
    assert masks.shape == (4, 64, 64) and masks.dtype == torch.uint8
    # 64x48 images letterboxed to 64x64: the 16 bottom rows are padding, ignored.
    assert (masks[:, 48:] == IGNORE).all()
    assert set(masks.unique().tolist()) <= {0, 1, 2, 3, IGNORE}


def test_class_names_are_counted_from_masks_without_classes_txt(tmp_path):
    root = make_folder(tmp_path, {"train": 4})
    (root / "classes.txt").unlink()
    data = SegmentationDataModule(root, num_workers=0)
    assert data.class_names == ["0", "1", "2", "3"][: data.num_classes]
    assert data.num_classes >= 2


def _class_of_pixels(image: torch.Tensor) -> torch.Tensor:
    """The class each pixel's colour says: dominant red/green/blue channel, grey background."""
    img = image.int()
    spread = img.max(0).values - img.min(0).values
    cls = img.argmax(0) + 1
    cls[spread < 25] = 0
    return cls


@pytest.mark.parametrize("backend", ["torchvision", "albumentations"])
@pytest.mark.parametrize("preset", ["light", "default", "strong"])
def test_augmentation_keeps_image_and_mask_aligned(backend, preset):
    from scenes import make_scene

    rng = np.random.default_rng(1)
    transform = build_segmentation_transform(64, preset=preset, backend=backend)
    moved = 0
    for seed in range(12):
        image, mask = make_scene(rng, (80, 60), noise=False)
        image_t = torch.from_numpy(image).permute(2, 0, 1).contiguous()
        mask_t = torch.from_numpy(mask)
        torch.manual_seed(seed)
        np.random.seed(seed)
        out_img, out_mask = transform(image_t, mask_t)
        assert out_img.shape == (3, 64, 64) and out_mask.shape == (64, 64)
        # Nearest-neighbour: no value the mask did not hold (or the ignore fill).
        assert set(out_mask.unique().tolist()) <= set(mask_t.unique().tolist()) | {IGNORE}
        valid = out_mask != IGNORE
        agree = (_class_of_pixels(out_img)[valid] == out_mask[valid].long()).float().mean()
        assert agree > 0.97, (backend, preset, seed, float(agree))
        plain = build_segmentation_transform(64, train=False)(image_t, mask_t)[1]
        moved += int(not torch.equal(plain, out_mask))
    assert moved >= 3  # the preset did change the geometry


def test_evaluation_letterbox_is_the_same_for_both_backends(scenes_root):
    image = torch.randint(0, 256, (3, 30, 50), dtype=torch.uint8)
    mask = torch.randint(0, 4, (30, 50), dtype=torch.uint8)
    a = build_segmentation_transform(64, backend="torchvision", train=False)(image, mask)
    b = build_segmentation_transform(64, backend="albumentations", train=False)(image, mask)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert (a[1][38:] == IGNORE).all()  # 50x30 -> 64x38, padded below


def test_voc_csv_and_coco_layouts_give_the_folder_masks(scenes_root, tmp_path):
    folder = SegmentationDataModule(scenes_root, num_workers=0, image_size=64)
    voc = SegmentationDataModule(folder_to_voc(scenes_root, tmp_path / "voc"), num_workers=0)
    assert voc.layout == "voc" and voc.num_classes == 21  # VOC's classes by default
    csv_root = folder_to_csv(make_folder(tmp_path / "csv", {"train": 24, "val": 8}))
    for d in ("train", "val"):  # only the CSV files name the data now
        (csv_root / d / "images").rename(csv_root / d / "imgs")
        (csv_root / d / "masks").rename(csv_root / d / "msks")
    for split in ("train", "val"):
        text = (csv_root / f"{split}.csv").read_text()
        (csv_root / f"{split}.csv").write_text(
            text.replace("/images/", "/imgs/").replace("/masks/", "/msks/")
        )
    csv = SegmentationDataModule(csv_root, num_workers=0)
    coco = SegmentationDataModule(folder_to_coco(scenes_root, tmp_path / "coco"), num_workers=0)
    assert (csv.layout, coco.layout) == ("csv", "coco")
    assert coco.class_names == CLASSES
    folder.setup("fit"), voc.setup("fit"), csv.setup("fit"), coco.setup("fit")
    for i in (0, 5):
        _, expected = folder.datasets["val"].read(i)
        for other in (voc, csv, coco):
            _, got = other.datasets["val"].read(i)
            if other is coco:  # COCO has no ignore band: the rest must match
                keep = expected != IGNORE
                assert torch.equal(got[keep], expected[keep])
                assert set(got[~keep].unique().tolist()) <= {0}
            else:
                assert torch.equal(got, expected), other.layout


def test_auto_prefers_png_masks_to_a_coco_file(scenes_root, tmp_path):
    root = make_folder(tmp_path / "both", {"train": 3})
    folder_to_coco(make_folder(tmp_path / "src", {"train": 3, "val": 1}), root)
    assert SegmentationDataModule(root, num_workers=0).layout == "folder"
    assert SegmentationDataModule(root, layout="coco", num_workers=0).layout == "coco"


def test_no_data_names_what_was_tried(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train/images.*SegmentationClass|Segmentation"):
        SegmentationDataModule(tmp_path)
    with pytest.raises(ValueError, match=r"layout must be one of \['auto', 'folder'"):
        SegmentationDataModule(tmp_path, layout="ade")


def _broken(tmp_path, name):
    root = make_folder(tmp_path / name, {"train": 3})
    return root, sorted((root / "train" / "masks").iterdir())[1]


def test_missing_mask_is_named(tmp_path):
    root, mask = _broken(tmp_path, "missing")
    mask.unlink()
    data = SegmentationDataModule(root, num_workers=0)
    with pytest.raises(FileNotFoundError, match=rf"image .*{mask.stem}.png has no mask: expected"):
        data.setup("fit")


def test_mask_of_another_size_is_named(tmp_path):
    root, mask = _broken(tmp_path, "size")
    Image.open(mask).resize((32, 24), Image.NEAREST).save(mask)
    data = SegmentationDataModule(root, num_workers=0)
    data.setup("fit")
    with pytest.raises(
        ValueError, match=rf"mask .*{mask.name} is 32x24 \(WxH\) but its image .* is 64x48"
    ):
        data.datasets["train"].read(1)


def test_values_outside_the_classes_are_named(tmp_path):
    root, mask = _broken(tmp_path, "values")
    arr = np.asarray(Image.open(mask)).copy()
    arr[0, :3] = [9, 9, 17]
    Image.fromarray(arr, mode="L").save(mask)
    data = SegmentationDataModule(root, num_workers=0)
    data.setup("fit")
    with pytest.raises(
        ValueError, match=rf"mask .*{mask.name} has values \[9, 17\] outside the 4 classes"
    ):
        data.datasets["train"].read(1)


def test_rgb_mask_without_palette_is_named(tmp_path):
    _, mask = _broken(tmp_path, "rgb")
    Image.open(mask).convert("RGB").save(mask)
    with pytest.raises(ValueError, match=rf"mask .*{mask.name} is an RGB image without a palette"):
        read_mask(mask)
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((4, 4, 3), 2, dtype=np.uint8)).save(grey)
    assert read_mask(grey).unique().tolist() == [2]  # equal channels: a greyscale map as RGB


def test_missing_albumentations_names_the_extra(monkeypatch, scenes_root):
    monkeypatch.setitem(sys.modules, "albumentations", None)
    with pytest.raises(
        ImportError, match=r'pip install "\./packages/segmentation\[albumentations\]"'
    ):
        SegmentationDataModule(scenes_root, transform_backend="albumentations")


def test_albumentations_augmentation_follows_torch_seed():
    """As the other tasks: the albumentations backend's draws follow torch's generator, so
    seed_everything and exact resume reproduce them."""
    from scenes import make_scene

    image, mask = make_scene(np.random.default_rng(0), (80, 60), noise=False)
    image_t, mask_t = torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.from_numpy(mask)
    tf = build_segmentation_transform(64, preset="strong", backend="albumentations")
    runs = []
    for _ in range(2):
        torch.manual_seed(3)
        runs.append([tf(image_t, mask_t) for _ in range(4)])
    for (a_img, a_mask), (b_img, b_mask) in zip(*runs):
        assert torch.equal(a_img, b_img) and torch.equal(a_mask, b_mask)
    assert not all(torch.equal(runs[0][0][1], m) for _, m in runs[0][1:])
