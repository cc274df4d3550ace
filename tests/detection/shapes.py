"""A generated COCO-format data set of coloured rectangles, for tests and benchmarks."""

from __future__ import annotations

import json
import shutil
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


# ----------------------------------------------------------------------------- other layouts
# The same generated images and boxes written in the YOLO, Pascal VOC and CSV layouts, so the
# readers can be compared with the COCO one.


def _coco_split(root: Path, split: str) -> tuple[dict, dict[int, str]]:
    data = json.loads((root / "annotations" / f"instances_{split}2017.json").read_text())
    return data, {c["id"]: c["name"] for c in data["categories"]}


def _boxes_of(data: dict, image_id: int) -> list[dict]:
    return [a for a in data["annotations"] if a["image_id"] == image_id]


def to_yolo(coco_root: Path, out: Path, splits: tuple[str, ...] = ("train", "val")) -> Path:
    """Ultralytics' layout (``images/{split}``, ``labels/{split}``, ``data.yaml``) of a COCO
    layout made by :func:`make_dataset`; class index ``i`` is the ``i``-th category."""
    names: list[str] = []
    for split in splits:
        data, _ = _coco_split(coco_root, split)
        names = [c["name"] for c in data["categories"]]
        index = {c["id"]: i for i, c in enumerate(data["categories"])}
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        for img in data["images"]:
            shutil.copy(coco_root / f"{split}2017" / img["file_name"], out / "images" / split)
            w, h = img["width"], img["height"]
            lines = [
                f"{index[a['category_id']]} {(x + bw / 2) / w:.6f} {(y + bh / 2) / h:.6f} "
                f"{bw / w:.6f} {bh / h:.6f}"
                for a in _boxes_of(data, img["id"])
                for x, y, bw, bh in [a["bbox"]]
            ]
            if lines:  # an image without objects has no label file, as Ultralytics writes it
                stem = Path(img["file_name"]).stem
                (out / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    entries = "\n".join(f"{s}: images/{s}" for s in splits)
    (out / "data.yaml").write_text(f"path: {out}\n{entries}\nnames: {json.dumps(names)}\n")
    return out


def to_voc(coco_root: Path, out: Path, splits: tuple[str, ...] = ("train", "val")) -> Path:
    """Pascal VOC's layout of a COCO layout (image ``{split}_{file_name}``); ``iscrowd`` boxes
    become ``difficult`` ones. VOC's
    corners are 1-based and inclusive: pixel box ``[x, x + w]`` is ``xmin = x + 1, xmax = x + w``."""
    (out / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    (out / "Annotations").mkdir(exist_ok=True)
    (out / "JPEGImages").mkdir(exist_ok=True)
    for split in splits:
        data, names = _coco_split(coco_root, split)
        ids = []
        for img in data["images"]:
            # VOC's ids are unique across splits (one JPEGImages/ folder): prefixed by the split.
            name = f"{split}_{img['file_name']}"
            stem = Path(name).stem
            ids.append(stem)
            shutil.copy(coco_root / f"{split}2017" / img["file_name"], out / "JPEGImages" / name)
            objects = "".join(
                f"<object><name>{names[a['category_id']]}</name>"
                f"<difficult>{int(a.get('iscrowd', 0))}</difficult><bndbox>"
                f"<xmin>{x + 1}</xmin><ymin>{y + 1}</ymin>"
                f"<xmax>{x + bw}</xmax><ymax>{y + bh}</ymax></bndbox></object>"
                for a in _boxes_of(data, img["id"])
                for x, y, bw, bh in [a["bbox"]]
            )
            (out / "Annotations" / f"{stem}.xml").write_text(
                f"<annotation><filename>{name}</filename><size><width>{img['width']}</width>"
                f"<height>{img['height']}</height><depth>3</depth></size>{objects}</annotation>"
            )
        (out / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return out


def to_csv(coco_root: Path, out: Path, splits: tuple[str, ...] = ("train", "val")) -> Path:
    """``{split}.csv`` files (``image_path,x_min,y_min,x_max,y_max,label``, paths relative to
    ``out``) of a COCO layout; an image without objects gets one row with empty box columns."""
    for split in splits:
        data, names = _coco_split(coco_root, split)
        (out / split).mkdir(parents=True, exist_ok=True)
        rows = ["image_path,x_min,y_min,x_max,y_max,label"]
        for img in data["images"]:
            shutil.copy(coco_root / f"{split}2017" / img["file_name"], out / split)
            path = f"{split}/{img['file_name']}"
            boxes = _boxes_of(data, img["id"])
            rows += [
                f"{path},{x},{y},{x + bw},{y + bh},{names[a['category_id']]}"
                for a in boxes
                for x, y, bw, bh in [a["bbox"]]
            ] or [f"{path},,,,,"]
        (out / f"{split}.csv").write_text("\n".join(rows) + "\n")
    return out


def assert_valid_records(loaded) -> None:
    """Every record of a loaded annotation set is usable: a positive image size, finite boxes
    inside the image with positive extent, one known category per box, finite areas."""
    import numpy as np

    known = {c["id"] for c in loaded.categories}
    for rec in loaded.records:
        assert rec.width > 0 and rec.height > 0
        b = rec.boxes
        assert b.shape == (len(rec.category_ids), 4) and np.isfinite(b).all()
        assert (b[:, 0] >= 0).all() and (b[:, 2] <= rec.width).all()
        assert (b[:, 1] >= 0).all() and (b[:, 3] <= rec.height).all()
        assert (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
        assert set(rec.category_ids.tolist()) <= known
        assert np.isfinite(rec.area).all()
