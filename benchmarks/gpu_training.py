"""GPU training throughput: AutoTimm's tasks under Lightning vs plain PyTorch loops, same step.

For fp32 and bf16-mixed, each with and without channels_last, in one process:

- classification: ``ImageClassifier`` on a ``pl.Trainer`` vs a plain loop over the same timm
  model (AdamW, cross-entropy, ``torch.autocast`` for bf16);
- detection: ``ObjectDetector`` on a ``pl.Trainer`` vs a plain loop over the same module, and
  torchvision's ``fcos_resnet50_fpn`` in a plain loop (the torchvision way, same size and batch).

Batches are made once on the GPU, so the figures are model and loop cost, not data loading.
Run by hand on a machine with a CUDA GPU:

    python benchmarks/gpu_training.py --task all
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

PRECISIONS = ("32", "bf16-mixed")
#: Set by ``--device``; ``cpu`` only to check the script itself on small settings.
DEVICE = "cuda"


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


class _SameBatch(Dataset):
    """``n`` times the same ready-made batch (loaded with ``batch_size=None``)."""

    def __init__(self, batch: Any, n: int) -> None:
        self.batch, self.n = batch, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Any:
        return self.batch


class _StepTimer(pl.Callback):
    """Wall time of the optimizer steps after ``warmup``, synchronized with the GPU."""

    def __init__(self, warmup: int, total: int) -> None:
        self.warmup, self.total, self.seconds = warmup, total, float("nan")

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        if trainer.global_step == self.warmup:
            _sync()
            self.start = time.perf_counter()
        elif trainer.global_step == self.total:
            _sync()
            self.seconds = time.perf_counter() - self.start


def _lightning_time(
    module: pl.LightningModule, batch: Any, precision: str, warmup: int, steps: int
) -> float:
    timer = _StepTimer(warmup, warmup + steps)
    trainer = pl.Trainer(
        accelerator="gpu" if DEVICE == "cuda" else "cpu",
        devices=1,
        precision=precision,
        max_steps=warmup + steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        callbacks=[timer],
    )
    loader = DataLoader(_SameBatch(batch, warmup + steps), batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return timer.seconds


def _loop_time(step: Callable[[], None], warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    _sync()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    _sync()
    return time.perf_counter() - start


def _autocast(precision: str):
    return torch.autocast(DEVICE, dtype=torch.bfloat16, enabled=precision == "bf16-mixed")


def _format(model: torch.nn.Module, x: torch.Tensor, channels_last: bool):
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return model.to(memory_format=fmt), x.contiguous(memory_format=fmt)


def classification(args: argparse.Namespace) -> list[tuple]:
    import timm

    from autotimm_classification import ImageClassifier

    b, s, n = args.batch_size, args.image_size, 1000
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(b, 3, s, s, generator=g).to(DEVICE)
    y = torch.randint(0, n, (b,), generator=g).to(DEVICE)
    rows = []
    for precision in PRECISIONS:
        for channels_last in (False, True):
            torch.manual_seed(0)
            plain, x = _format(
                timm.create_model(args.backbone, num_classes=n).to(DEVICE), x0, channels_last
            )
            opt = torch.optim.AdamW(plain.parameters(), lr=1e-3, weight_decay=1e-4)

            def step(plain=plain, opt=opt, x=x, precision=precision) -> None:
                opt.zero_grad(set_to_none=True)
                with _autocast(precision):
                    loss = torch.nn.functional.cross_entropy(plain(x), y)
                loss.backward()
                opt.step()

            t_plain = _loop_time(step, args.warmup, args.steps)
            del plain, opt
            torch.manual_seed(0)
            ours, x = _format(
                ImageClassifier(args.backbone, num_classes=n, pretrained=False), x0, channels_last
            )
            t_ours = _lightning_time(ours, (x, y), precision, args.warmup, args.steps)
            del ours
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
            rows.append(
                (
                    f"classification {args.backbone} {s}px b{b}",
                    precision,
                    channels_last,
                    b * args.steps / t_ours,
                    b * args.steps / t_plain,
                    "timm model, plain loop",
                )
            )
            print(rows[-1], flush=True)
    return rows


def detection(args: argparse.Namespace) -> list[tuple]:
    from detection_speed import random_targets  # benchmarks/, beside this script
    from torchvision.models.detection import fcos_resnet50_fpn

    from autotimm_detection import ObjectDetector

    b, s, n = args.det_batch_size, args.det_image_size, 80
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 256, (b, 3, s, s), dtype=torch.uint8, generator=g).to(DEVICE)
    targets = [
        {k: v.to(DEVICE) for k, v in t.items()} for t in random_targets(b, s, n, boxes_per_image=8)
    ]
    warmup, steps = max(2, args.warmup // 2), max(5, args.steps // 2)
    rows = []
    for precision in PRECISIONS:
        for channels_last in (False, True):
            torch.manual_seed(0)
            tv = fcos_resnet50_fpn(
                weights=None, weights_backbone=None, num_classes=n + 1, min_size=s, max_size=s
            ).to(DEVICE)
            tv, xf = _format(tv, x0.float() / 255, channels_last)
            tv_images = list(xf)
            tv_targets = [{"boxes": t["boxes"], "labels": t["labels"] + 1} for t in targets]
            opt = torch.optim.SGD(tv.parameters(), lr=1e-4, momentum=0.9)

            def tv_step(
                tv=tv, opt=opt, precision=precision, tv_images=tv_images, tv_targets=tv_targets
            ) -> None:
                opt.zero_grad(set_to_none=True)
                with _autocast(precision):
                    loss = sum(tv(tv_images, tv_targets).values())
                loss.backward()
                opt.step()

            t_tv = _loop_time(tv_step, warmup, steps)
            del tv, opt
            torch.manual_seed(0)
            ours, x = _format(
                ObjectDetector("resnet50", num_classes=n, pretrained=False, image_size=s).to(
                    DEVICE
                ),
                x0,
                channels_last,
            )
            opt = torch.optim.AdamW(ours.parameters(), lr=1e-4)

            def our_step(ours=ours, opt=opt, x=x, precision=precision) -> None:
                opt.zero_grad(set_to_none=True)
                with _autocast(precision):
                    loss = ours.loss(ours(x), targets)["loss"]
                loss.backward()
                opt.step()

            t_loop = _loop_time(our_step, warmup, steps)
            del opt
            t_ours = _lightning_time(ours, (x, targets), precision, warmup, steps)
            del ours
            if DEVICE == "cuda":
                torch.cuda.empty_cache()
            rows.append(
                (
                    f"detection resnet50 {s}px b{b}",
                    precision,
                    channels_last,
                    b * steps / t_ours,
                    b * steps / t_loop,
                    "same module, plain loop",
                )
            )
            rows.append(
                (
                    f"detection resnet50 {s}px b{b}",
                    precision,
                    channels_last,
                    b * steps / t_ours,
                    b * steps / t_tv,
                    "torchvision FCOS, plain loop",
                )
            )
            print(rows[-2], rows[-1], sep="\n", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("classification", "detection", "all"), default="all")
    ap.add_argument("--backbone", default="resnet50")
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--det-image-size", type=int, default=640)
    ap.add_argument("--det-batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    args = ap.parse_args()
    global DEVICE
    DEVICE = args.device
    if DEVICE == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_training.py needs a CUDA GPU (--device cpu checks the script only)")
    torch.backends.cudnn.benchmark = True
    rows = []
    if args.task in ("classification", "all"):
        rows += classification(args)
    if args.task in ("detection", "all"):
        rows += detection(args)
    name = torch.cuda.get_device_name() if DEVICE == "cuda" else "CPU"
    print(f"\n{name}; torch {torch.__version__}; steps={args.steps} warmup={args.warmup}; images/s")
    print(
        "| workload | precision | channels_last | AutoTimm (Lightning) | plain | ratio | plain is |"
    )
    print("|---|---|---|---|---|---|---|")
    for work, precision, cl, ours, plain, what in rows:
        print(
            f"| {work} | {precision} | {'yes' if cl else 'no'} | {ours:.0f} | {plain:.0f} "
            f"| {ours / plain:.2f}x | {what} |"
        )


if __name__ == "__main__":
    main()
