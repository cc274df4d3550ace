"""Datasets behind the data modules: image files (folders, CSV lists), in-memory arrays."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from autotimm_core.data import is_image_file, read_image_rgb

Transform = Callable[[torch.Tensor], torch.Tensor]
#: A sample's target: a class index, or a multi-hot float vector (multi-label).
Target = int | torch.Tensor

#: Largest DataLoader worker count whose skipped-file counts are kept apart (more share a slot).
_COUNTER_SLOTS = 65


# ----------------------------------------------------------------------------- folders
def find_classes(split_dir: Path) -> list[str]:
    """Sorted names of the class folders in ``split_dir``.

    Raises:
        FileNotFoundError: ``split_dir`` does not exist.
        ValueError: it holds no class folders.
    """
    if not split_dir.is_dir():
        raise FileNotFoundError(
            f"Image folder '{split_dir}' not found. Expected the layout "
            f"{split_dir.parent}/train/<class_name>/<image files> (val/ and test/ alike, optional)."
        )
    classes = sorted(
        e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith(".")
    )
    if not classes:
        raise ValueError(
            f"Image folder '{split_dir}' has no class folders: put each class's images in "
            f"'{split_dir}/<class_name>/'."
        )
    return classes


def _walk_files(folder: Path) -> list[str]:
    """Paths of the files under ``folder``, following symlinked folders but entering each real
    folder once (a symlink loop would otherwise be walked until the path grows too long)."""
    seen: set[str] = set()
    out: list[str] = []
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []  # already walked under another name
            continue
        seen.add(real)
        out.extend(os.path.join(root, f) for f in names)
    return out


def scan_split(split_dir: Path, class_to_idx: dict[str, int]) -> list[tuple[str, int]]:
    """``(path, label)`` for every image file under ``split_dir/<class>/`` (recursively), sorted.

    Raises:
        ValueError: a class folder has no image files, or ``split_dir`` has a class folder that
            the training split lacks.
    """
    samples: list[tuple[str, int]] = []
    for name in find_classes(split_dir):
        if name not in class_to_idx:
            raise ValueError(
                f"Class folder '{split_dir / name}' has no counterpart in the training split; "
                f"known classes: {sorted(class_to_idx)}"
            )
        files = sorted(f for f in _walk_files(split_dir / name) if is_image_file(f))
        if not files:
            raise ValueError(
                f"Class folder '{split_dir / name}' contains no image files "
                "(.jpg, .jpeg, .png, .bmp, .gif, .webp, .tif, .tiff)"
            )
        samples.extend((f, class_to_idx[name]) for f in files)
    return samples


def stratified_split(
    targets: Sequence[int], fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Split indices into ``(keep, held_out)`` with about ``fraction`` of every class held out.

    Each class with at least two items gives at least one to each side; the draw is seeded.
    """
    rng = np.random.default_rng(seed)
    targets_arr = np.asarray(targets)
    keep: list[int] = []
    held: list[int] = []
    for label in np.unique(targets_arr):
        idx = rng.permutation(np.flatnonzero(targets_arr == label))
        n_held = round(len(idx) * fraction)
        if fraction > 0 and len(idx) >= 2:
            n_held = min(max(n_held, 1), len(idx) - 1)
        held.extend(idx[:n_held].tolist())
        keep.extend(idx[n_held:].tolist())
    return sorted(keep), sorted(held)


class _SkipCounter:
    """Counts unreadable files across DataLoader workers in shared memory (one slot per worker)."""

    def __init__(self) -> None:
        self.counts = torch.zeros(_COUNTER_SLOTS, dtype=torch.int64).share_memory_()

    def add(self) -> None:
        info = get_worker_info()
        slot = 0 if info is None else 1 + info.id % (_COUNTER_SLOTS - 1)
        self.counts[slot] += 1

    def total(self) -> int:
        return int(self.counts.sum())


class ImageFileDataset(Dataset):
    """Image files with their targets, decoded to uint8 tensors by ``read_image_rgb``.

    An unreadable file gives ``None`` (dropped by ``collate_skip_broken``) and a warning naming it,
    instead of an exception inside a DataLoader worker; ``skipped`` counts them.

    Args:
        samples: ``(path, target)`` pairs: a class index, or a multi-hot float tensor
            ``(num_classes,)`` for multi-label data.
        transform: applied to each ``(3, H, W)`` uint8 tensor. Default None (returned as is).
    """

    def __init__(self, samples: Sequence[tuple[str, Target]], transform: Transform | None = None):
        self.samples = list(samples)
        self.targets = [label for _, label in self.samples]
        self.transform = transform
        self.skipped = _SkipCounter()

    def __len__(self) -> int:
        return len(self.samples)

    def subset(self, indices: Sequence[int]) -> ImageFileDataset:
        """A new dataset of the items at ``indices`` (no transform set)."""
        return ImageFileDataset([self.samples[i] for i in indices])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, Target] | None:
        path, label = self.samples[index]
        try:
            image = read_image_rgb(path)
        except OSError as err:
            self.skipped.add()
            warnings.warn(f"Skipping unreadable image: {err}", RuntimeWarning, stacklevel=2)
            return None
        if self.transform is not None:
            image = self.transform(image)
        return image, label


class ArrayImageDataset(Dataset):
    """Images held in memory as a uint8 array, ``(N, H, W)`` grey or ``(N, H, W, C)``.

    Args:
        images: the images; grey ones are repeated to 3 channels, a 4th channel is dropped.
        targets: integer labels, one per image.
        transform: applied to each ``(3, H, W)`` uint8 tensor. Default None.
    """

    def __init__(
        self,
        images: np.ndarray | torch.Tensor,
        targets: Sequence[int],
        transform: Transform | None = None,
    ) -> None:
        images = torch.as_tensor(np.asarray(images))
        if images.dtype != torch.uint8 or images.ndim not in (3, 4):
            raise ValueError(
                f"images must be a uint8 array (N, H, W) or (N, H, W, C), got {images.dtype} "
                f"with shape {tuple(images.shape)}"
            )
        if len(images) != len(targets):
            raise ValueError(f"{len(images)} images but {len(targets)} targets")
        self.images = images
        self.targets = [int(t) for t in targets]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, indices: Sequence[int]) -> ArrayImageDataset:
        """A new dataset of the items at ``indices`` (no transform set)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return ArrayImageDataset(self.images[idx], [self.targets[i] for i in indices])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]
        image = image.unsqueeze(0) if image.ndim == 2 else image.permute(2, 0, 1)
        image = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
        image = image.contiguous()
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index]


def collate_skip_broken(batch: list[Any]) -> Any:
    """``default_collate`` after dropping the ``None`` items of unreadable files.

    Returns None when every item of the batch was unreadable; the task modules skip such batches.
    """
    batch = [item for item in batch if item is not None]
    if not batch:
        return None
    return default_collate(batch)
