"""Data makers for the classification tests: small image folders whose classes differ by colour."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

#: Class name -> RGB base colour. Classes are told apart by colour alone.
COLOURS = {"blue": (30, 40, 220), "green": (40, 200, 50), "red": (220, 30, 40)}


def coloured_image(
    colour: tuple[int, int, int], rng: np.random.Generator, size=(40, 48)
) -> Image.Image:
    """An RGB image of ``colour`` with pixel noise and a random grey square (so no two are equal)."""
    h, w = size
    base = np.array(colour, dtype=np.int16)[None, None, :]
    arr = base + rng.integers(-40, 41, size=(h, w, 3))
    y, x = rng.integers(0, h // 2), rng.integers(0, w // 2)
    arr[y : y + h // 3, x : x + w // 3] = rng.integers(60, 200)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def make_image_folder(
    root: Path,
    splits: dict[str, int],
    classes: dict[str, tuple[int, int, int]] = COLOURS,
    seed: int = 0,
    ext: str = ".jpg",
) -> Path:
    """Write ``root/<split>/<class>/<i><ext>`` with ``splits[split]`` images per class."""
    rng = np.random.default_rng(seed)
    for split, per_class in splits.items():
        for name, colour in classes.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                coloured_image(colour, rng).save(folder / f"{i:03d}{ext}")
    return root


def quiet_trainer(root: Path, **kw):
    """A CPU ``pl.Trainer`` that writes nothing but what a test asks for (no logger, no
    checkpoints, no progress bar or model summary)."""
    import pytorch_lightning as pl

    for key, value in {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
    }.items():
        kw.setdefault(key, value)
    return pl.Trainer(default_root_dir=root, **kw)
