"""Classification quality of the library's defaults against a plain timm + PyTorch loop.

AutoTimm's way, with its defaults: ``ImageDataModule(dataset_name="digits", image_size=32)``
(default augmentation preset, batch size, validation split...) and
``ImageClassifier("resnet18", num_classes=10, pretrained=False, lr=1e-3)`` (AdamW, cosine),
trained by ``AutoTrainer(max_epochs=...)`` and scored by ``trainer.test``. The plain way, what a
user writes by hand: ``timm.create_model("resnet18", num_classes=10)``, a plain resize to the
same side and ImageNet normalization, no augmentation, ``torch.optim.AdamW(lr=1e-3)``,
cross-entropy, the same batch size and epochs, no scheduler. Both train on the same images (the
data module's training split, its validation split held out of both) and are scored on the
same test split: scikit-learn's handwritten digits (1,797 real 8x8 scans, offline).

    OMP_NUM_THREADS=1 python benchmarks/classification_quality.py --epochs 10 --seeds 3
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import warnings

import numpy as np
import pytorch_lightning as pl
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from autotimm_classification import ImageClassifier, ImageDataModule
from autotimm_trainer import AutoTrainer

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def train_autotimm(args: argparse.Namespace, seed: int) -> tuple[float, float]:
    """Test accuracy and training seconds of the library's defaults."""
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = AutoTrainer(
            max_epochs=args.epochs,
            logger=False,
            default_root_dir=tmp,
            seed=seed,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        data = ImageDataModule(dataset_name="digits", image_size=args.image_size, num_workers=0)
        model = ImageClassifier(args.backbone, num_classes=10, pretrained=False, lr=1e-3)
        start = time.perf_counter()
        trainer.fit(model, datamodule=data)
        seconds = time.perf_counter() - start
        (result,) = trainer.test(model, datamodule=data, verbose=False)
    return float(result["test/accuracy"]), seconds


def _plain_tensors(dataset, size: int) -> TensorDataset:
    """A dataset's uint8 images, resized to ``size`` (bilinear) and normalized, with labels."""
    images = dataset.images.float().div(255)  # (N, 8, 8) grey
    images = images.unsqueeze(1).expand(-1, 3, -1, -1)
    images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return TensorDataset((images - MEAN) / STD, torch.tensor(dataset.targets))


def train_plain(args: argparse.Namespace, seed: int) -> tuple[float, float]:
    """Test accuracy and training seconds of a plain timm + PyTorch loop on the same splits."""
    splits = ImageDataModule(dataset_name="digits", num_workers=0)
    splits.setup("fit")  # the same training and test images as the library's run
    train = _plain_tensors(splits.train_dataset, args.image_size)
    test = _plain_tensors(splits.test_dataset, args.image_size)
    torch.manual_seed(seed)
    model = timm.create_model(args.backbone, pretrained=False, num_classes=10)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loader = DataLoader(
        train,
        batch_size=splits.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    start = time.perf_counter()
    model.train()
    for _ in range(args.epochs):
        for images, labels in loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.no_grad():
        for images, labels in DataLoader(test, batch_size=256):
            correct += int((model(images).argmax(1) == labels).sum())
    return correct / len(test), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1; the table is the mean")
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), timm {timm.__version__}, "
        f"pytorch-lightning {pl.__version__}, {platform.processor() or platform.machine()}"
    )
    runs: dict[str, list[tuple[float, float]]] = {"plain": [], "autotimm": []}
    for seed in range(args.seeds):
        runs["plain"].append(train_plain(args, seed))
        runs["autotimm"].append(train_autotimm(args, seed))
        print(
            f"seed {seed}: plain {runs['plain'][-1][0]:.4f} ({runs['plain'][-1][1]:.0f} s), "
            f"autotimm {runs['autotimm'][-1][0]:.4f} ({runs['autotimm'][-1][1]:.0f} s)"
        )
    names = {
        "plain": f"plain timm + PyTorch loop (`{args.backbone}`, no augmentation)",
        "autotimm": f'AutoTimm defaults (`ImageClassifier("{args.backbone}")`, `ImageDataModule`)',
    }
    base = float(np.mean([acc for acc, _ in runs["plain"]]))
    print(f"\n| way | test accuracy (mean of {args.seeds}) | min-max | ratio | training s |")
    print("|---|---|---|---|---|")
    for key, rows in runs.items():
        accs = [acc for acc, _ in rows]
        mean = float(np.mean(accs))
        print(
            f"| {names[key]} | {mean:.4f} | {min(accs):.4f}-{max(accs):.4f} | "
            f"{mean / base:.3f}x | {np.mean([s for _, s in rows]):.0f} |"
        )


if __name__ == "__main__":
    main()
