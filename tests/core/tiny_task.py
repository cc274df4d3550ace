"""A tiny BaseTask (timm's test_resnet features + a linear head) shared by the core tests."""

import torch.nn as nn
import torch.nn.functional as F

from autotimm_core import BaseTask, MetricConfig, create_backbone


class TinyTask(BaseTask):
    default_metrics = (MetricConfig("accuracy", "Accuracy", stages=["val", "test"]),)
    default_metric_task = "multiclass"

    def __init__(
        self,
        num_classes: int = 3,
        metrics=None,
        logging_config=None,
        optimizer: str = "adamw",
        lr: float = 1e-2,
        scheduler: str | None = "cosine",
        scheduler_kwargs=None,
        freeze_backbone: bool = False,
        metric_task: str | None = None,
        class_names: list[str] | None = None,
    ):
        super().__init__(
            metrics=metrics,
            logging_config=logging_config,
            optimizer=optimizer,
            lr=lr,
            scheduler=scheduler,
            scheduler_kwargs=scheduler_kwargs,
            freeze_backbone=freeze_backbone,
            num_classes=num_classes,
            metric_task=metric_task,
        )
        self.save_task_hyperparameters()
        self.class_names = class_names
        self.backbone = create_backbone("test_resnet", features_only=True, out_indices=(4,))
        self.head = nn.Linear(self.backbone.feature_info.channels()[-1], num_classes)
        if freeze_backbone:
            self.freeze_backbone()

    def forward(self, x):
        return self.head(self.backbone(x)[-1].mean((2, 3)))

    def _step(self, batch, stage):
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.log_loss(stage, loss, len(y))
        if self.metric_manager.has(stage):
            self.metric_manager.update(stage, logits.softmax(-1), y)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        return self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        return self._step(batch, "test")
