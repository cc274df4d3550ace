"""Built-in offline detection data: real photographs with real objects pasted onto them.

``photo_objects`` is generated, the first time it is used, from the sample photographs that
ship inside scikit-image (``skimage.data``) and scikit-learn (``load_sample_images``), so it
needs no download. Backgrounds are random crops of five photos (a rocket launch, a cameraman in
grey, a microscope slide, a Chinese temple, a flower); the objects
are crops of three others, one class each, pasted at 12-80 % of the image side with a random
aspect ratio: ``cat`` (scikit-image's Chelsea), ``coffee`` (a cup of coffee) and ``astronaut``
(Eileen Collins). Each image holds one to four objects; a box mostly covered by a later paste
is dropped. Generation is seeded, so every machine gets the same images and boxes.

The set is written as a COCO layout (``annotations/instances_{train,val,test}.json`` with
``train/``, ``val/``, ``test/`` PNG folders) and read by the same COCO reader as your own data.
It is written into a temporary folder first and renamed into place when complete, so a stopped
generation never leaves a half-written set.

Needs the ``autotimm-detection[builtin]`` extra (scikit-image, scikit-learn).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

#: Names accepted by ``DetectionDataModule(dataset_name=...)`` (any case, ``-``/``_`` ignored),
#: to their display names.
BUILTIN_DATASETS = {"photoobjects": "photo_objects"}
#: Class names of ``photo_objects``, in label order (COCO category ids 1, 2, 3).
PHOTO_OBJECTS_CLASSES = ("cat", "coffee", "astronaut")
#: Images per split and their side in pixels; each split has its own seed.
PHOTO_OBJECTS_SPLITS = {"train": (480, 0), "val": (96, 1), "test": (96, 2)}
PHOTO_OBJECTS_SIZE = 128
#: Bumped whenever the generator's output changes, so an old cached copy is not reused.
PHOTO_OBJECTS_VERSION = 1
#: Environment variable naming the folder built-in data sets are generated into.
CACHE_ENV = "AUTOTIMM_DATA_DIR"


def resolve_dataset_name(name: str) -> str:
    """The key of a built-in data set; ValueError listing the valid names when unknown."""
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in BUILTIN_DATASETS:
        raise ValueError(
            f"Unknown dataset_name {name!r}. Valid names: {', '.join(BUILTIN_DATASETS.values())}; "
            "or leave dataset_name=None to read your own data from data_dir."
        )
    return key


def default_root() -> Path:
    """Where built-in data sets are generated when no ``data_dir`` is given.

    ``$AUTOTIMM_DATA_DIR`` when set, else ``$XDG_CACHE_HOME/autotimm``, else
    ``~/.cache/autotimm``.
    """
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "autotimm"


def _photos() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Background photos and one object photo per class (RGB uint8)."""
    try:
        from skimage import data
        from sklearn.datasets import load_sample_images
    except ImportError as err:
        raise ImportError(
            "dataset_name='photo_objects' is generated from scikit-image's and scikit-learn's "
            'sample photos: pip install "autotimm-detection[builtin]" '
            f'(or "autotimm[detection]"). ({err})'
        ) from err

    def rgb(a: np.ndarray) -> np.ndarray:
        return np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a[..., :3]

    backgrounds = [rgb(getattr(data, n)()) for n in ("rocket", "camera", "immunohistochemistry")]
    backgrounds += list(load_sample_images().images)
    objects = [rgb(getattr(data, n)()) for n in ("chelsea", "coffee", "astronaut")]
    return backgrounds, objects


def _crop(rng: np.random.Generator, photo: np.ndarray, h: int, w: int) -> torch.Tensor:
    """A random crop of ``photo`` (35-100 % of its short side, the aspect of h x w), resized."""
    ph, pw = photo.shape[:2]
    side = rng.uniform(0.35, 1.0) * min(ph, pw)
    ch, cw = int(side * min(1.0, h / w)), int(side * min(1.0, w / h))
    y, x = rng.integers(0, ph - ch + 1), rng.integers(0, pw - cw + 1)
    t = torch.from_numpy(np.ascontiguousarray(photo[y : y + ch, x : x + cw])).permute(2, 0, 1)
    out = F.interpolate(t[None].float(), size=(h, w), mode="bilinear", antialias=True)[0]
    return out.clamp(0, 255).byte()


def render_scenes(num: int, size: int, seed: int) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """``num`` square images (uint8 ``(num, 3, size, size)``) with pasted objects, and targets.

    Each target has ``boxes`` (float ``(n, 4)``, pixel ``x1, y1, x2, y2``) and ``labels``
    (int64 ``(n,)``, indices into :data:`PHOTO_OBJECTS_CLASSES`). The same arguments give the
    same images on every machine (a seeded NumPy generator drives every choice).
    """
    rng = np.random.default_rng(seed)
    backgrounds, objects = _photos()
    images, targets = [], []
    for _ in range(num):
        img = _crop(rng, backgrounds[rng.integers(len(backgrounds))], size, size).clone()
        boxes: list[list[int]] = []
        labels: list[int] = []
        for _ in range(int(rng.integers(1, 5))):
            side = rng.uniform(0.12, 0.8) * size
            aspect = rng.uniform(0.6, 1.6)
            h = max(4, min(size, int(side * math.sqrt(aspect))))
            w = max(4, min(size, int(side / math.sqrt(aspect))))
            y, x = int(rng.integers(0, size - h + 1)), int(rng.integers(0, size - w + 1))
            label = int(rng.integers(len(objects)))
            patch = _crop(rng, objects[label], h, w).float() * rng.uniform(0.75, 1.25)
            img[:, y : y + h, x : x + w] = patch.clamp(0, 255).byte()
            # Later pastes hide earlier boxes: drop the ones mostly covered.
            kept = []
            for b, lab in zip(boxes, labels):
                ix = max(0, min(b[2], x + w) - max(b[0], x))
                iy = max(0, min(b[3], y + h) - max(b[1], y))
                if ix * iy < 0.5 * (b[2] - b[0]) * (b[3] - b[1]):
                    kept.append((b, lab))
            boxes, labels = [b for b, _ in kept], [lab for _, lab in kept]
            boxes.append([x, y, x + w, y + h])
            labels.append(label)
        images.append(img)
        targets.append(
            {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels)}
        )
    return torch.stack(images), targets


def coco_dict(
    targets: list[dict[str, Any]], size: int, class_names: tuple[str, ...] | list[str]
) -> dict[str, Any]:
    """A COCO annotation dict for square images ``0.png, 1.png...`` and their targets."""
    images = [
        {"id": i + 1, "file_name": f"{i}.png", "width": size, "height": size}
        for i in range(len(targets))
    ]
    anns = []
    for i, t in enumerate(targets):
        for b, lab in zip(t["boxes"].tolist(), t["labels"].tolist()):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": int(lab) + 1,
                    "bbox": [b[0], b[1], w, h],
                    "area": w * h,
                    "iscrowd": 0,
                }
            )
    cats = [{"id": c + 1, "name": name} for c, name in enumerate(class_names)]
    return {"images": images, "annotations": anns, "categories": cats}


def _write(folder: Path) -> None:
    from PIL import Image

    (folder / "annotations").mkdir(parents=True)
    for split, (num, seed) in PHOTO_OBJECTS_SPLITS.items():
        images, targets = render_scenes(num, PHOTO_OBJECTS_SIZE, seed)
        (folder / split).mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / split / f"{i}.png")
        coco = coco_dict(targets, PHOTO_OBJECTS_SIZE, PHOTO_OBJECTS_CLASSES)
        (folder / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))


def builtin_dir(key: str, root: str | os.PathLike | None = None) -> Path:
    """The folder of a built-in data set under ``root`` (default :func:`default_root`),
    generated there first if it is not there yet.

    Raises:
        ImportError: scikit-image or scikit-learn is missing (names the extra to install).
    """
    root = default_root() if root is None else Path(root)
    name = BUILTIN_DATASETS[key]
    target = root / f"{name}_v{PHOTO_OBJECTS_VERSION}"
    if (target / "annotations").is_dir():
        return target
    root.mkdir(parents=True, exist_ok=True)
    # Write beside the target, then rename: the rename is atomic, so the target is either
    # absent or complete, also when several processes (DDP ranks) generate at once.
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=root))
    try:
        _write(tmp / "set")
        try:
            os.rename(tmp / "set", target)
        except OSError:
            if not (target / "annotations").is_dir():
                raise  # not another process's complete copy: a real error
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
