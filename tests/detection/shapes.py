"""A generated COCO-format data set of coloured rectangles, for tests and benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

#: Category ids with gaps, as in COCO.
CATEGORIES = [{"id": 1, "name": "red"}, {"id": 3, "name": "green"}, {"id": 7, "name": "blue"}]
COLOURS = {1: (220, 30, 30), 3: (30, 200, 30), 7: (30, 30, 220)}


def make_split(
    root: Path,
    split: str,
    num_images: int,
    size: tuple[int, int] = (128, 96),
    max_objects: int = 3,
    seed: int = 0,
    empty_every: int = 0,
    year: str = "2017",
) -> Path:
    """Write ``{split}{year}/*.png`` and ``annotations/instances_{split}{year}.json``; returns the JSON path.

    Images are ``size`` = (width, height) grey noise with 1..max_objects filled rectangles whose
    colour is the class; every ``empty_every``-th image has no objects.
    """
    rng = np.random.default_rng(seed)
    img_dir = root / f"{split}{year}"
    img_dir.mkdir(parents=True, exist_ok=True)
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    w, h = size
    images, anns = [], []
    for i in range(num_images):
        pixels = rng.integers(90, 140, size=(h, w, 3), dtype=np.uint8)
        n = 0 if empty_every and i % empty_every == 0 else int(rng.integers(1, max_objects + 1))
        for _ in range(n):
            bw, bh = (int(v) for v in rng.integers(16, min(w, h) // 2, size=2))
            x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
            cat = int(rng.choice([c["id"] for c in CATEGORIES]))
            pixels[y : y + bh, x : x + bw] = COLOURS[cat]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": cat,
                    "bbox": [x, y, bw, bh],
                    "area": bw * bh,
                    "iscrowd": 0,
                }
            )
        name = f"{i:05d}.png"
        Image.fromarray(pixels).save(img_dir / name)
        images.append({"id": i + 1, "file_name": name, "width": w, "height": h})
    path = root / "annotations" / f"instances_{split}{year}.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": CATEGORIES}))
    return path


def make_dataset(
    root: Path, num_train: int = 24, num_val: int = 8, num_test: int = 0, **kw
) -> Path:
    """A COCO 2017 layout under ``root`` with train/val(/test) splits."""
    make_split(root, "train", num_train, seed=1, **kw)
    make_split(root, "val", num_val, seed=2, **kw)
    if num_test:
        make_split(root, "test", num_test, seed=3, **kw)
    return root
