"""Tiny models and data for the trainer tests: fast on one CPU thread, no downloads.

``TinyModel`` is a plain LightningModule (AutoTrainer must work on any); ``TinyTimmTask`` is a
BaseTask around timm's ``test_resnet`` at 32 px, as AutoTimm's own tasks are built.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from autotimm_core import BaseTask, MetricConfig, create_backbone


class TinyModel(pl.LightningModule):
    """A linear classifier on vectors; logs ``train/loss``, ``val/loss``, ``val/accuracy``.

    Args:
        num_features: input size. Default 8.
        num_classes: classes. Default 3.
        lr: SGD learning rate (the attribute the LR finder sets). Default 0.1.
    """

    def __init__(self, num_features: int = 8, num_classes: int = 3, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.lr = lr
        self.net = nn.Sequential(nn.Linear(num_features, 16), nn.ReLU(), nn.Linear(16, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log("train/loss", loss, on_step=True, on_epoch=True, batch_size=len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log("val/loss", F.cross_entropy(logits, y), batch_size=len(x), sync_dist=True)
        acc = (logits.argmax(1) == y).float().mean()
        self.log("val/accuracy", acc, batch_size=len(x), sync_dist=True)

    def test_step(self, batch, batch_idx):
        x, y = batch
        self.log("test/loss", F.cross_entropy(self(x), y), batch_size=len(x))

    def predict_step(self, batch, batch_idx):
        return self(batch[0]).argmax(1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


class TinyData(pl.LightningDataModule):
    """Separable random vectors: labels are the argmax of a fixed linear map.

    Args:
        num_samples: training samples (validation gets half). Default 64.
        batch_size: loader batch size (what the batch-size finder tunes). Default 8.
        num_features: vector size. Default 8.
        num_classes: classes. Default 3.
    """

    def __init__(
        self,
        num_samples: int = 64,
        batch_size: int = 8,
        num_features: int = 8,
        num_classes: int = 3,
    ) -> None:
        super().__init__()
        self.batch_size = batch_size
        g = torch.Generator().manual_seed(1234)
        w = torch.randn(num_features, num_classes, generator=g)
        x = torch.randn(num_samples + num_samples // 2, num_features, generator=g)
        y = (x @ w).argmax(1)
        self.train_set = TensorDataset(x[:num_samples], y[:num_samples])
        self.val_set = TensorDataset(x[num_samples:], y[num_samples:])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def test_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)

    def predict_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)


class TinyTimmTask(BaseTask):
    """A BaseTask classifier: timm ``test_resnet`` (random init) and a linear head.

    Args:
        num_classes: classes. Default 4.
        **kwargs: BaseTask arguments (``lr``, ``optimizer``, ``scheduler``, ``metrics``...).
    """

    def __init__(self, num_classes: int = 4, **kwargs) -> None:
        kwargs.setdefault(
            "metrics",
            [
                MetricConfig(
                    name="accuracy",
                    backend="torchmetrics",
                    metric_class="Accuracy",
                    params={"task": "multiclass"},
                    stages=["val"],
                )
            ],
        )
        super().__init__(num_classes=num_classes, **kwargs)
        self.save_task_hyperparameters()
        self.backbone = create_backbone("test_resnet", pretrained=False, num_classes=0)
        self.head = nn.Linear(self.backbone.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = F.cross_entropy(self(x), y)
        self.log_loss("train", loss, len(x))
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        logits = self(x)
        self.log_loss("val", F.cross_entropy(logits, y), len(x))
        self.metric_manager.update("val", logits, y)


class TinyImages(pl.LightningDataModule):
    """Random 32 px images in memory.

    Args:
        num_samples: training images (validation gets a quarter). Default 32.
        batch_size: loader batch size. Default 8.
        num_classes: classes. Default 4.
    """

    def __init__(self, num_samples: int = 32, batch_size: int = 8, num_classes: int = 4) -> None:
        super().__init__()
        self.batch_size = batch_size
        g = torch.Generator().manual_seed(0)
        n = num_samples + num_samples // 4
        x = torch.randn(n, 3, 32, 32, generator=g)
        y = torch.randint(0, num_classes, (n,), generator=g)
        self.train_set = TensorDataset(x[:num_samples], y[:num_samples])
        self.val_set = TensorDataset(x[num_samples:], y[num_samples:])

    def train_dataloader(self):
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True)

    def val_dataloader(self):
        return DataLoader(self.val_set, batch_size=self.batch_size)


class TinyLabelledImages(pl.LightningDataModule):
    """Random 16 px RGB images in [0, 1] of 4 classes; ``num_classes``/``class_names`` are known
    once set up, as AutoTimm's data modules have them."""

    def __init__(self, batch_size: int = 4, num_samples: int = 12) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.num_samples = num_samples
        self.class_names: list[str] | None = None
        self.setup_calls = 0

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    def setup(self, stage: str) -> None:
        self.setup_calls += 1
        g = torch.Generator().manual_seed(0)
        x = torch.rand(self.num_samples, 3, 16, 16, generator=g)
        self.data = TensorDataset(x, torch.arange(self.num_samples) % 4)
        self.class_names = ["ant", "bee", "cat", "dog"]

    def train_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)

    def val_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)

    def predict_dataloader(self):
        return DataLoader(self.data, batch_size=self.batch_size)


class TinyImageModel(pl.LightningModule):
    """A linear classifier on 16 px images whose ``num_classes`` may come from the data; its
    ``draw_prediction`` paints a white square in the corner (for the prediction writer)."""

    def __init__(self, num_classes: int | None = None, class_names: list[str] | None = None):
        super().__init__()
        if num_classes is None:
            raise ValueError("num_classes must be a positive int, got None")
        self.num_classes = num_classes
        self.class_names = class_names
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, num_classes))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        return F.cross_entropy(self(batch[0]), batch[1])

    def predict_step(self, batch, batch_idx):
        probs = self(batch[0]).softmax(-1)
        return {"probs": probs, "labels": probs.argmax(-1)}

    def draw_prediction(self, image: torch.Tensor, record: dict) -> torch.Tensor:
        out = image.clone()
        out[:, :4, :4] = 255
        return out

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)
