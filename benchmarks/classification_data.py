"""Training-loader throughput: ImageDataModule against ImageFolder + PIL + transforms v1.

Both pipelines read the same folder of JPEGs with the same image size, batch size and workers and
do the same job: random-resized crop, horizontal flip, float conversion and normalization. By
default ImageDataModule's workers return uint8 batches that the data module normalizes after the
transfer to the device (``on_after_batch_transfer``); here there is no GPU, so that step runs on
the CPU in the consuming process, and it is timed. Each loader runs ``--epochs`` epochs per
repeat; the first batch of every epoch (worker start-up) is left out of the timing. Prints
images/s (median over repeats) and the ratio.

    python benchmarks/classification_data.py --num-images 600 --workers 2
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision import datasets
from torchvision import transforms as T

from autotimm_classification import ImageDataModule

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def make_jpegs(root: Path, num_images: int, classes: int = 4, size=(500, 375)) -> Path:
    """Write ``num_images`` photo-like JPEGs (smooth gradients plus noise) into root/train/<class>/."""
    rng = np.random.default_rng(0)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(num_images):
        folder = root / "train" / f"class_{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        phase = rng.uniform(0, 6.28, size=3)
        arr = np.stack(
            [127 + 100 * np.sin(xx / (30 + 10 * c) + yy / 50 + phase[c]) for c in range(3)], -1
        )
        arr += rng.normal(0, 12, size=arr.shape)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(
            folder / f"{i:05d}.jpg", quality=90
        )
    return root


def time_loader(loader: DataLoader, epochs: int, finish=None) -> float:
    """Images per second over ``epochs`` epochs, first batch of each left out; ``finish`` is
    applied to every batch (a data module's ``on_after_batch_transfer``) inside the timing."""
    images, seconds = 0, 0.0
    for _ in range(epochs):
        it = iter(loader)
        next(it)
        start = time.perf_counter()
        for batch in it:
            if finish is not None:
                batch = finish(batch, 0)
            images += len(batch[1])
        seconds += time.perf_counter() - start
    return images / seconds


def plain_loader(root: Path, size: int, batch: int, workers: int) -> DataLoader:
    tf = T.Compose(
        [
            T.RandomResizedCrop(size),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(MEAN, STD),
        ]
    )
    dataset = datasets.ImageFolder(str(root / "train"), transform=tf)
    return DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True)


def ours_loader(
    root: Path, size: int, batch: int, workers: int, backend: str, on_device: bool = True
) -> tuple[DataLoader, object]:
    dm = ImageDataModule(
        root,
        image_size=size,
        batch_size=batch,
        num_workers=workers,
        val_split=0,
        transform_backend=backend,
        normalize_on_device=on_device,
        persistent_workers=False,
    )
    dm.setup("fit")
    return dm.train_dataloader(), dm.on_after_batch_transfer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, help="folder with train/<class>/*.jpg (else generated)"
    )
    parser.add_argument("--num-images", type=int, default=600)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or make_jpegs(Path(tmp), args.num_images)
        common = (root, args.image_size, args.batch_size, args.workers)
        loaders = {
            "ImageFolder + PIL + transforms v1": lambda: (plain_loader(*common), None),
            "ImageDataModule (torchvision, default)": lambda: ours_loader(*common, "torchvision"),
            "ImageDataModule (albumentations)": lambda: ours_loader(*common, "albumentations"),
            "ImageDataModule (torchvision, workers normalize)": lambda: ours_loader(
                *common, "torchvision", on_device=False
            ),
        }
        runs: dict[str, list[float]] = {name: [] for name in loaders}
        for _ in range(args.repeats):  # interleaved, so a noisy neighbour hits all alike
            for name, make in loaders.items():
                loader, finish = make()
                runs[name].append(time_loader(loader, args.epochs, finish))

    print(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__}; {args.num_images} JPEGs 500x375 -> {args.image_size} px, batch "
        f"{args.batch_size}, {args.workers} workers, {args.epochs} epochs x {args.repeats} repeats"
    )
    base = statistics.median(runs["ImageFolder + PIL + transforms v1"])
    for name, values in runs.items():
        med = statistics.median(values)
        print(
            f"{name:48s} {med:8.0f} images/s (min {min(values):.0f}, max {max(values):.0f})  {med / base:.2f}x"
        )


if __name__ == "__main__":
    main()
