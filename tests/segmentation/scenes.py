"""A generated segmentation data set: coloured shapes on noise, with ignore bands, in any layout.

Each image is grey noise (class 0, "background") with rectangles and disks whose colour is
their class (1 "red", 2 "green", 3 "blue"); a 2-pixel band around each shape is the ignore
value, as Pascal VOC marks object borders. Masks are palette PNGs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ["background", "red", "green", "blue"]
COLOURS = {1: (210, 40, 40), 2: (40, 190, 40), 3: (40, 40, 210)}
IGNORE = 255


def _palette() -> list[int]:
    pal = [0, 0, 0] + [c for k in sorted(COLOURS) for c in COLOURS[k]]
    pal += [0, 0, 0] * (256 - len(pal) // 3)
    pal[IGNORE * 3 : IGNORE * 3 + 3] = [255, 255, 255]
    return pal


def make_scene(
    rng: np.random.Generator, size: tuple[int, int] = (64, 48), noise: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """One ``(image HxWx3 uint8, mask HxW uint8)`` pair of ``size`` = (width, height); without
    ``noise`` the background is flat grey and the shapes flat colours."""
    w, h = size
    image = rng.integers(90, 150, size=(h, w, 3), dtype=np.uint8)
    if not noise:
        image[:] = 120
    mask = np.zeros((h, w), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, 4))
        if rng.random() < 0.5:
            bw, bh = (int(v) for v in rng.integers(10, min(w, h) // 2, size=2))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            inner = (xx >= x) & (xx < x + bw) & (yy >= y) & (yy < y + bh)
            outer = (xx >= x - 2) & (xx < x + bw + 2) & (yy >= y - 2) & (yy < y + bh + 2)
        else:
            r = int(rng.integers(6, min(w, h) // 4))
            cx, cy = int(rng.integers(r, w - r)), int(rng.integers(r, h - r))
            d2 = (xx - cx) ** 2 + (yy - cy) ** 2
            inner, outer = d2 <= r * r, d2 <= (r + 2) ** 2
        mask[outer] = IGNORE
        jitter = rng.integers(-15, 16, size=(int(inner.sum()), 3)) if noise else 0
        image[inner] = np.clip(np.array(COLOURS[cls]) + jitter, 0, 255).astype(np.uint8)
        mask[inner] = cls
    return image, mask


def save_mask(mask: np.ndarray, path: Path) -> None:
    im = Image.fromarray(mask, mode="P")
    im.putpalette(_palette())
    im.save(path)


def make_folder(root: Path, splits: dict[str, int], size=(64, 48), seed: int = 0) -> Path:
    """``{split}/images/*.jpg``-style folders (PNG images here) with ``{split}/masks/*.png``
    and ``classes.txt``; returns ``root``."""
    rng = np.random.default_rng(seed)
    for split, n in splits.items():
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, mask = make_scene(rng, size)
            Image.fromarray(image).save(root / split / "images" / f"{split}_{i:03d}.png")
            save_mask(mask, root / split / "masks" / f"{split}_{i:03d}.png")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


def folder_to_voc(src: Path, dst: Path) -> Path:
    """The same data as Pascal VOC: JPEGImages (PNG content kept lossless as .jpg is lossy, so
    images are re-saved at quality 100), SegmentationClass, ImageSets/Segmentation."""
    for d in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (dst / d).mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        stems = []
        for img in sorted((src / split / "images").iterdir()):
            Image.open(img).save(dst / "JPEGImages" / f"{img.stem}.jpg", quality=100)
            (dst / "SegmentationClass" / f"{img.stem}.png").write_bytes(
                (src / split / "masks" / img.name).read_bytes()
            )
            stems.append(img.stem)
        (dst / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(stems) + "\n")
    return dst


def folder_to_csv(src: Path) -> Path:
    """``{split}.csv`` files with ``image,mask`` rows next to the folders; returns ``src``."""
    for split in ("train", "val"):
        with open(src / f"{split}.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["image", "mask"])
            for img in sorted((src / split / "images").iterdir()):
                writer.writerow([f"{split}/images/{img.name}", f"{split}/masks/{img.name}"])
    return src


def folder_to_coco(src: Path, dst: Path) -> Path:
    """COCO instance JSON (one RLE-free polygon-less "segmentation" per class region, as an
    uncompressed RLE) with the same images: ``annotations/instances_{split}.json``, ``{split}/``."""
    from pycocotools import mask as mask_utils

    (dst / "annotations").mkdir(parents=True, exist_ok=True)
    for split in ("train", "val"):
        (dst / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for i, img in enumerate(sorted((src / split / "images").iterdir())):
            (dst / split / img.name).write_bytes(img.read_bytes())
            mask = np.asarray(Image.open(src / split / "masks" / img.name))
            h, w = mask.shape
            images.append({"id": i + 1, "file_name": img.name, "width": w, "height": h})
            for cls in range(1, len(CLASSES)):
                region = np.asfortranarray((mask == cls).astype(np.uint8))
                if not region.any():
                    continue
                rle = mask_utils.encode(region)
                rle["counts"] = rle["counts"].decode()
                anns.append(
                    {
                        "id": len(anns) + 1,
                        "image_id": i + 1,
                        "category_id": cls * 10,  # ids with gaps, as in COCO
                        "segmentation": rle,
                        "area": float(region.sum()),
                        "bbox": [0, 0, w, h],
                        "iscrowd": 0,
                    }
                )
        cats = [{"id": c * 10, "name": CLASSES[c]} for c in range(1, len(CLASSES))]
        (dst / "annotations" / f"instances_{split}.json").write_text(
            json.dumps({"images": images, "annotations": anns, "categories": cats})
        )
    return dst
