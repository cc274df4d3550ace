"""Semantic segmentation quality and training speed: AutoTimm vs segmentation_models_pytorch.

AutoTimm's ``SemanticSegmentor`` (``head="unet"`` and ``head="fpn"``, trained by a Lightning
``Trainer``) against SMP's ``Unet`` and ``FPN`` (a plain PyTorch loop) with the same timm encoder
from random weights (``encoder_name="tu-<backbone>"``, ``encoder_weights=None``), the same
budget (epochs, batch size, AdamW with the same learning rate and weight decay, biases and norms
undecayed, cosine over the epochs), the same loaders (one ``SegmentationDataModule`` setup: the
same letterbox, the same augmentation preset, the same shuffling seed) and the same scoring:
torchmetrics' ``JaccardIndex`` (macro mIoU, ``ignore_index=255``) on the same validation set.

The data are generated from real photographs (scikit-learn's sample images, no download):
backgrounds are random crops of the photos, and each image holds one to three pasted regions
(ellipses, rectangles, triangles) whose texture is another crop of a photo, altered by class
(1: greyscale, 2: colour channels reversed, 3: colours inverted). A 3-pixel band along every
border between two labels is 255 (ignored), as Pascal VOC marks object borders.

    OMP_NUM_THREADS=1 python benchmarks/segmentation_quality.py --epochs 6 --image-size 128
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from scipy import ndimage
from sklearn.datasets import load_sample_images
from timm.optim import param_groups_weight_decay
from torchmetrics.classification import MulticlassJaccardIndex

from autotimm_segmentation import SegmentationDataModule, SemanticSegmentor

CLASSES = ["background", "grey", "reversed", "inverted"]
IGNORE = 255
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1) * 255
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1) * 255


# --------------------------------------------------------------------------- data


def _crop(rng: np.random.Generator, photo: np.ndarray, w: int, h: int) -> np.ndarray:
    """A random crop of ``photo`` at a random scale, resized to ``w`` x ``h``."""
    ph, pw = photo.shape[:2]
    scale = rng.uniform(0.35, 1.0)
    cw, ch = int(min(pw, ph * w / h) * scale), int(min(ph, pw * h / w) * scale)
    x, y = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    out = Image.fromarray(photo[y : y + ch, x : x + cw]).resize((w, h), Image.BILINEAR)
    out = np.asarray(out)
    return out[:, ::-1] if rng.random() < 0.5 else out


def _texture(cls: int, patch: np.ndarray) -> np.ndarray:
    if cls == 1:
        return np.repeat(patch.mean(axis=2, keepdims=True), 3, axis=2).astype(np.uint8)
    if cls == 2:
        return patch[..., ::-1]
    return 255 - patch


def make_scene(rng: np.random.Generator, photos: list[np.ndarray], w: int, h: int):
    """One ``(image HxWx3 uint8, mask HxW uint8)`` pair."""
    image = _crop(rng, photos[int(rng.integers(len(photos)))], w, h).copy()
    label = np.zeros((h, w), dtype=np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        cls = int(rng.integers(1, len(CLASSES)))
        bw, bh = (int(v) for v in rng.integers(min(w, h) // 5, min(w, h) * 3 // 5, size=2))
        x, y = int(rng.integers(0, w - bw)), int(rng.integers(0, h - bh))
        shape = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(shape)
        kind = int(rng.integers(3))
        if kind == 0:
            draw.ellipse([x, y, x + bw, y + bh], fill=1)
        elif kind == 1:
            draw.rectangle([x, y, x + bw, y + bh], fill=1)
        else:
            draw.polygon([(x + bw // 2, y), (x, y + bh), (x + bw, y + bh)], fill=1)
        region = np.asarray(shape).astype(bool)
        patch = _texture(cls, _crop(rng, photos[int(rng.integers(len(photos)))], w, h))
        image[region] = patch[region]
        label[region] = cls
    # Borders between two labels: where a 3x3 neighbourhood holds more than one label, widened.
    border = ndimage.maximum_filter(label, 3) != ndimage.minimum_filter(label, 3)
    mask = label.copy()
    mask[ndimage.binary_dilation(border, iterations=1)] = IGNORE
    return image, mask


def make_dataset(root: Path, n_train: int, n_val: int, size: tuple[int, int], seed: int) -> Path:
    """``{train,val}/images/*.png`` with palette-free greyscale ``{train,val}/masks/*.png``."""
    rng = np.random.default_rng(seed)
    photos = [np.asarray(p) for p in load_sample_images().images]
    for split, n in (("train", n_train), ("val", n_val)):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, mask = make_scene(rng, photos, *size)
            Image.fromarray(image).save(root / split / "images" / f"{i:04d}.png")
            Image.fromarray(mask, mode="L").save(root / split / "masks" / f"{i:04d}.png")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return root


# --------------------------------------------------------------------------- training


def _data(root: Path, args: argparse.Namespace) -> SegmentationDataModule:
    data = SegmentationDataModule(
        root,
        image_size=args.image_size,
        batch_size=args.batch_size,
        num_workers=0,
        augmentation_preset=args.augmentation,
    )
    data.setup("fit")
    return data


def _normalize(images: torch.Tensor) -> torch.Tensor:
    return (images.float() - MEAN) / STD


@torch.no_grad()
def evaluate(forward, data: SegmentationDataModule) -> float:
    """Macro mIoU over the validation set, ``ignore_index`` pixels left out."""
    metric = MulticlassJaccardIndex(len(CLASSES), ignore_index=IGNORE, average="macro")
    for images, masks in data.val_dataloader():
        metric.update(forward(_normalize(images)).argmax(dim=1), masks.long())
    return float(metric.compute())


def train_autotimm(root: Path, head: str, args: argparse.Namespace) -> dict:
    pl.seed_everything(args.seed, verbose=False)
    data = _data(root, args)
    model = SemanticSegmentor(
        args.backbone,
        num_classes=len(CLASSES),
        pretrained=False,
        head=head,
        loss="ce",
        lr=args.lr,
        weight_decay=args.weight_decay,
        optimizer="adamw",
        scheduler="cosine",
    )
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,  # scored below, by the same code as SMP's models
        num_sanity_val_steps=0,
    )
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.fit(model, datamodule=data)
    seconds = time.perf_counter() - start
    model.eval()
    miou = evaluate(model, data)
    return _result(f"AutoTimm SemanticSegmentor(head={head!r})", model, miou, seconds, data, args)


def train_smp(root: Path, arch: str, args: argparse.Namespace) -> dict:
    pl.seed_everything(args.seed, verbose=False)
    data = _data(root, args)
    cls = {"unet": smp.Unet, "fpn": smp.FPN}[arch]
    model = cls(
        encoder_name=f"tu-{args.backbone}", encoder_weights=None, classes=len(CLASSES)
    ).train()
    # The same optimizer as BaseTask's "adamw": no decay on biases and norms (timm's rule).
    optimizer = torch.optim.AdamW(param_groups_weight_decay(model, args.weight_decay), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.epochs)
    start = time.perf_counter()
    for _ in range(args.epochs):
        for images, masks in data.train_dataloader():
            logits = model(_normalize(images))
            loss = F.cross_entropy(logits, masks.long(), ignore_index=IGNORE)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        schedule.step()
    seconds = time.perf_counter() - start
    model.eval()
    miou = evaluate(model, data)
    return _result(
        f"SMP {cls.__name__}(encoder_name='tu-{args.backbone}')", model, miou, seconds, data, args
    )


def _result(name, model, miou, seconds, data, args) -> dict:
    images = len(data.datasets["train"]) * args.epochs
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"{name}: mIoU {miou:.3f}, {images / seconds:.2f} images/s, {params:.1f} M params")
    return {"name": name, "miou": miou, "ips": images / seconds, "params": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--train-images", type=int, default=96)
    parser.add_argument("--val-images", type=int, default=32)
    parser.add_argument("--width", type=int, default=160, help="generated image width")
    parser.add_argument("--height", type=int, default=120, help="generated image height")
    parser.add_argument("--image-size", type=int, default=128, help="letterboxed input side")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--augmentation", default="light", help="augmentation_preset of both")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"smp {smp.__version__}, {platform.processor() or platform.machine()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = make_dataset(
            Path(tmp), args.train_images, args.val_images, (args.width, args.height), args.seed
        )
        rows = [
            train_smp(root, "unet", args),
            train_autotimm(root, "unet", args),
            train_smp(root, "fpn", args),
            train_autotimm(root, "fpn", args),
        ]
    print("\n| model | params (M) | val mIoU | ratio | training images/s | ratio |")
    print("|---|---|---|---|---|---|")
    for i, row in enumerate(rows):
        base = rows[i - i % 2]  # each AutoTimm head against the SMP model before it
        print(
            f"| {row['name']} | {row['params']:.1f} | {row['miou']:.3f} | "
            f"{row['miou'] / base['miou']:.2f}x | {row['ips']:.2f} | {row['ips'] / base['ips']:.2f}x |"
        )


if __name__ == "__main__":
    main()
