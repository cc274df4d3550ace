"""Built-in data sets: torchvision's CIFAR/MNIST family, and scikit-learn's digits (offline).

``digits`` is the UCI optical-recognition set of handwritten digits that ships inside
scikit-learn (``sklearn.datasets.load_digits``): 1,797 real 8x8 greyscale scans of the digits 0-9,
about 180 per class. It needs no download, so examples and quick starts run on any machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from autotimm_classification.datasets import ArrayImageDataset, stratified_split

#: Names accepted by ``ImageDataModule(dataset_name=...)`` (any case), to their display names.
BUILTIN_DATASETS = {
    "cifar10": "CIFAR10",
    "cifar100": "CIFAR100",
    "mnist": "MNIST",
    "fashionmnist": "FashionMNIST",
    "digits": "digits",
}
#: Fraction of ``digits`` held out as its test split (it has no official one); seeded, stratified.
DIGITS_TEST_FRACTION = 0.2


def resolve_dataset_name(name: str) -> str:
    """The key of a built-in data set; ValueError listing the valid names when unknown."""
    key = str(name).lower().replace("-", "").replace("_", "")
    if key not in BUILTIN_DATASETS:
        raise ValueError(
            f"Unknown dataset_name {name!r}. Valid names: {', '.join(BUILTIN_DATASETS.values())}; "
            "or leave dataset_name=None to read image folders from data_dir/train, val, test."
        )
    return key


def _torchvision_class(key: str) -> type:
    from torchvision import datasets

    return getattr(datasets, BUILTIN_DATASETS[key])


def download_builtin(key: str, root: str | Path) -> None:
    """Download a torchvision data set into ``root`` (nothing to do for ``digits``)."""
    if key == "digits":
        return
    cls = _torchvision_class(key)
    for train in (True, False):
        cls(root=str(root), train=train, download=True)


def load_builtin(key: str, root: str | Path, split: str) -> tuple[ArrayImageDataset, list[str]]:
    """The ``"train"`` or ``"test"`` split of a built-in data set (uint8, in memory) and its class names.

    Raises:
        RuntimeError: a torchvision data set is not in ``root`` (run ``prepare_data()``, which
            downloads it); the message names the folder.
    """
    if key == "digits":
        from sklearn.datasets import load_digits

        bunch = load_digits()
        # Pixel values are 0..16 ink counts; spread them over 0..255.
        images = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)
        train_idx, test_idx = stratified_split(bunch.target, DIGITS_TEST_FRACTION, seed=0)
        idx = train_idx if split == "train" else test_idx
        dataset = ArrayImageDataset(images[idx], bunch.target[idx].tolist())
        return dataset, [str(c) for c in bunch.target_names]
    cls = _torchvision_class(key)
    try:
        tv = cls(root=str(root), train=split == "train", download=False)
    except RuntimeError as err:
        raise RuntimeError(
            f"{BUILTIN_DATASETS[key]} not found under '{root}': call prepare_data() (the trainer "
            f"does) to download it. ({err})"
        ) from err
    dataset = ArrayImageDataset(np.asarray(tv.data), [int(t) for t in tv.targets])
    return dataset, list(tv.classes)
