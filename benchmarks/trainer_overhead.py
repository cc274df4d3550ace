"""AutoTrainer's overhead against a hand-written PyTorch loop, and the time auto-tuning adds.

One CPU run, both ways side by side: the same timm model (random init) in a BaseTask, the same
in-memory 32 px data, batch size, AdamW and learning rate; no validation, no logger. Each way
trains one epoch per repeat (alternating, after one warm-up epoch each); the median epoch time is
reported, and for AutoTrainer also the whole ``fit`` call (setup, checkpoint, teardown).

    OMP_NUM_THREADS=1 python benchmarks/trainer_overhead.py --model test_resnet --batch 32
    OMP_NUM_THREADS=1 python benchmarks/trainer_overhead.py --model resnet18 --batch 64 --steps 32
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from autotimm_core import BaseTask, create_backbone
from autotimm_trainer import AutoTrainer, TunerConfig


class Classifier(BaseTask):
    """timm backbone + linear head; AdamW, no scheduler, no metrics."""

    def __init__(self, backbone: str, num_classes: int = 10, lr: float = 1e-3) -> None:
        super().__init__(lr=lr, scheduler="none", metrics=[], num_classes=num_classes)
        self.backbone = create_backbone(backbone, pretrained=False, num_classes=0)
        self.head = nn.Linear(self.backbone.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log_loss("train", loss, len(x))
        return loss


class Data(pl.LightningDataModule):
    def __init__(self, dataset: TensorDataset, batch_size: int) -> None:
        super().__init__()
        self.dataset, self.batch_size = dataset, batch_size

    def train_dataloader(self):
        return DataLoader(self.dataset, batch_size=self.batch_size, shuffle=True)


def hand_loop_epoch(model: nn.Module, loader: DataLoader, lr: float) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    model.train()
    t0 = time.perf_counter()
    for x, y in loader:
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


class EpochTimer(pl.Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        self.t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.seconds = time.perf_counter() - self.t0


def auto_trainer_epoch(model: BaseTask, data: Data, root: str) -> tuple[float, float]:
    timer = EpochTimer()
    trainer = AutoTrainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        default_root_dir=root,
        callbacks=[timer],
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=data)
    return timer.seconds, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="test_resnet")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64, help="steps per epoch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    import logging

    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    logging.getLogger("autotimm_trainer").setLevel(logging.WARNING)

    g = torch.Generator().manual_seed(0)
    n = args.batch * args.steps
    dataset = TensorDataset(
        torch.randn(n, 3, args.size, args.size, generator=g),
        torch.randint(0, 10, (n,), generator=g),
    )
    lr = 1e-3
    hand, auto, auto_fit = [], [], []
    with tempfile.TemporaryDirectory() as root:
        for i in range(args.repeats + 1):  # first round is warm-up
            torch.manual_seed(i)
            loader = DataLoader(dataset, batch_size=args.batch, shuffle=True)
            h = hand_loop_epoch(Classifier(args.model, lr=lr), loader, lr)
            torch.manual_seed(i)
            a, f = auto_trainer_epoch(
                Classifier(args.model, lr=lr), Data(dataset, args.batch), root
            )
            if i:
                hand.append(h), auto.append(a), auto_fit.append(f)

        # Tuning cost, against one AutoTrainer epoch.
        tunings = {}
        for name, config in {
            "auto_lr (100 steps)": TunerConfig(auto_lr=True),
            "auto_batch_size (power, from 2)": TunerConfig(auto_batch_size=True),
        }.items():
            model, data = Classifier(args.model, lr=lr), Data(dataset, args.batch)
            trainer = AutoTrainer(
                accelerator="cpu",
                devices=1,
                default_root_dir=root,
                tuner_config=config,
                enable_progress_bar=False,
            )
            t0 = time.perf_counter()
            trainer.tune(model, datamodule=data)
            tunings[name] = (time.perf_counter() - t0, trainer.tuning_results)

    h, a, f = statistics.median(hand), statistics.median(auto), statistics.median(auto_fit)
    print(
        f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s), "
        f"torch {torch.__version__}, lightning {pl.__version__}"
    )
    print(
        f"model {args.model}, {args.size} px, batch {args.batch}, {args.steps} steps/epoch, "
        f"median of {args.repeats}"
    )
    print(f"hand-written loop epoch : {h:.3f} s")
    print(
        f"AutoTrainer epoch       : {a:.3f} s  ({a / h:.3f}x, {1000 * (a - h) / args.steps:+.2f} ms/step)"
    )
    print(f"AutoTrainer whole fit   : {f:.3f} s  ({f / h:.3f}x)")
    for name, (seconds, results) in tunings.items():
        shown = {k: results[k] for k in ("batch_size", "lr") if results[k] is not None}
        print(f"tuning {name}: {seconds:.2f} s = {seconds / a:.2f} AutoTrainer epochs; {shown}")


if __name__ == "__main__":
    main()
