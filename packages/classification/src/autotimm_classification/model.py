"""ImageClassifier: any timm model as a Lightning classification task."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms.v2 import functional as TF

from autotimm_classification.image_io import read_image_rgb
from autotimm_classification.transforms import DEFAULT_CROP_PCT, build_transform
from autotimm_core import (
    BaseTask,
    LoggingConfig,
    MetricConfig,
    backbone_data_config,
    create_backbone,
)

ImageInput = str | os.PathLike | Image.Image | torch.Tensor | np.ndarray


class ImageClassifier(BaseTask):
    """Image classification with any timm model; the head is timm's own, reset to ``num_classes``.

    Losses log as ``{train,val,test}/loss``; with ``metrics=None`` top-1 accuracy logs as
    ``val/accuracy`` and ``test/accuracy``.

    Args:
        backbone: any timm model name (CNN or transformer), e.g. ``"resnet50"``,
            ``"vit_small_patch16_224"``, ``"hf-hub:org/repo"``. Default ``"resnet50"``.
        num_classes: number of classes (labels, with ``multi_label``). Required.
        pretrained: start from timm's pretrained weights (downloaded once). Default True.
        metrics: MetricConfigs (or dicts) to track; ``task`` and ``num_classes``/``num_labels``
            are filled in. Default None: accuracy on val and test.
        logging_config: extra values to log (learning rate, gradient norm). Default None.
        optimizer: optimizer name from ``list_optimizers()``. Default ``"adamw"``.
        lr: learning rate. Default 1e-3.
        weight_decay: weight decay (not on biases and norms). Default 1e-4.
        optimizer_kwargs: further optimizer arguments. Default None.
        scheduler: scheduler name from ``list_schedulers()``, or None. Default ``"cosine"``.
        scheduler_kwargs: scheduler arguments. Default None.
        freeze_backbone: train only the classifier head (a linear probe); the rest keeps its
            weights and BatchNorm statistics. Default False.
        head_dropout: dropout rate before the classifier (timm's ``drop_rate``). Default 0.0.
        label_smoothing: label smoothing for the loss (targets move towards uniform for
            cross-entropy, towards 0.5 for multi-label BCE). Default 0.0.
        multi_label: independent sigmoid outputs with BCE loss and multilabel metrics; targets
            are multi-hot ``(N, num_classes)`` (integer labels are one-hot encoded). Default False.
        compile: ``torch.compile`` the network in place; a dict is passed as its arguments
            (e.g. ``{"mode": "max-autotune"}``). Default False.
        backbone_kwargs: further ``timm.create_model`` arguments (``img_size``,
            ``drop_path_rate``...). Default None.
        class_names: label names used by ``predict``; filled from the datamodule at ``fit`` when
            None. Default None.
        data_config: ``image_size``, ``mean``, ``std``, ``interpolation`` and ``crop_pct`` that
            ``predict`` prepares images with; filled from the datamodule at ``fit`` when None,
            else taken from the backbone's pretrained config. Default None.

    Raises:
        ValueError: an unknown backbone, optimizer or scheduler (with close matches), or a bad
            ``num_classes``, ``head_dropout`` or ``label_smoothing``.
    """

    default_metrics = (
        MetricConfig(
            name="accuracy", metric_class="Accuracy", stages=["val", "test"], prog_bar=True
        ),
    )
    default_metric_task = "multiclass"

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int | None = None,
        pretrained: bool = True,
        metrics: Sequence[MetricConfig | dict[str, Any]] | None = None,
        logging_config: LoggingConfig | dict[str, Any] | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer_kwargs: dict[str, Any] | None = None,
        scheduler: str | None = "cosine",
        scheduler_kwargs: dict[str, Any] | None = None,
        freeze_backbone: bool = False,
        head_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        multi_label: bool = False,
        compile: bool | dict[str, Any] = False,
        backbone_kwargs: dict[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        data_config: dict[str, Any] | None = None,
    ) -> None:
        if num_classes is None and class_names is not None:
            num_classes = len(class_names)
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(
                f"class_names has {len(class_names)} names but num_classes={num_classes}"
            )
        if not 0.0 <= head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {head_dropout!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        super().__init__(
            metrics=metrics,
            logging_config=logging_config,
            optimizer=optimizer,
            lr=lr,
            weight_decay=weight_decay,
            optimizer_kwargs=optimizer_kwargs,
            scheduler=scheduler,
            scheduler_kwargs=scheduler_kwargs,
            freeze_backbone=freeze_backbone,
            num_classes=num_classes,
            metric_task="multilabel" if multi_label else "multiclass",
        )
        self.save_task_hyperparameters()
        self.num_classes = num_classes
        self.multi_label = bool(multi_label)
        self.label_smoothing = float(label_smoothing)
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        self.data_config = None if data_config is None else dict(data_config)
        self.backbone = create_backbone(
            backbone,
            pretrained=pretrained,
            num_classes=num_classes,
            drop_rate=head_dropout,
            **(backbone_kwargs or {}),
        )
        if freeze_backbone:
            self.freeze_backbone()
        if compile:
            # In place, so parameter names (and checkpoints) stay those of the plain model.
            self.backbone.compile(**(compile if isinstance(compile, dict) else {}))

    # ------------------------------------------------------------------ network
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` for normalized images ``(N, 3, H, W)``."""
        return self.backbone(images)

    def freeze_backbone(self) -> None:
        """Freeze the network except its classifier head (which stays trainable)."""
        super().freeze_backbone()
        for p in self.backbone.get_classifier().parameters():
            p.requires_grad = True

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax of the logits, or per-label sigmoid with ``multi_label``."""
        return logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)

    # ------------------------------------------------------------------ steps
    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if not self.multi_label:
            return F.cross_entropy(logits, target, label_smoothing=self.label_smoothing)
        soft = target.float()
        if self.label_smoothing:
            soft = soft * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return F.binary_cross_entropy_with_logits(logits, soft)

    def _multi_hot(self, target: torch.Tensor) -> torch.Tensor:
        if target.ndim == 1 and not target.is_floating_point():
            return F.one_hot(target, self.num_classes)
        return target

    def _step(self, stage: str, batch: Any) -> torch.Tensor | None:
        if batch is None:  # every image of the batch was unreadable
            return None
        images, target = batch[0], batch[1]
        if self.multi_label:
            target = self._multi_hot(target)
        logits = self(images)
        loss = self._loss(logits, target)
        self.log_loss(stage, loss, batch_size=images.shape[0])
        if self.metric_manager.has(stage):
            if self.multi_label:
                self.metric_manager.update(stage, logits.sigmoid(), (target > 0.5).long())
            elif not target.is_floating_point():  # soft (mixed) targets have no hard metric
                self.metric_manager.update(stage, logits, target)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        return self._step("train", batch)

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        return self._step("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        return self._step("test", batch)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict | None:
        """``{"probs": (N, C), "labels": ...}``: predicted class indices ``(N,)``, or with
        ``multi_label`` a 0/1 ``(N, C)`` tensor of the labels whose probability exceeds 0.5."""
        if batch is None:
            return None
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        probs = self.probabilities(self(images))
        labels = (probs > 0.5).long() if self.multi_label else probs.argmax(dim=-1)
        return {"probs": probs, "labels": labels}

    # ------------------------------------------------------------------ data from the datamodule
    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        n = getattr(dm, "num_classes", None)
        if n is None:
            return
        if n != self.num_classes:
            raise ValueError(
                f"ImageClassifier has num_classes={self.num_classes} but the data has {n} classes "
                f"({', '.join(map(str, dm.class_names[:10]))}{'...' if n > 10 else ''}); "
                f"create the model with num_classes={n}"
            )
        # Remembered in the hyperparameters, so predict() on a loaded checkpoint knows them.
        if self.class_names is None and dm.class_names is not None:
            self.class_names = list(dm.class_names)
            self.hparams["class_names"] = self.class_names
        if stage == "fit" and getattr(dm, "data_config", None):
            self.data_config = dict(dm.data_config)
            self.hparams["data_config"] = self.data_config

    # ------------------------------------------------------------------ prediction
    def eval_transform(self) -> Any:
        """The evaluation transform ``predict`` uses (uint8 ``(3, H, W)`` in, normalized out)."""
        cfg = dict(self.data_config or {})
        timm_cfg = backbone_data_config(self.backbone)
        interpolation = cfg.get("interpolation") or timm_cfg.get("interpolation", "bilinear")
        return build_transform(
            False,
            image_size=int(cfg.get("image_size") or timm_cfg["input_size"][-1]),
            mean=cfg.get("mean") or timm_cfg["mean"],
            std=cfg.get("std") or timm_cfg["std"],
            interpolation=interpolation if interpolation in ("nearest", "bicubic") else "bilinear",
            crop_pct=float(cfg.get("crop_pct") or timm_cfg.get("crop_pct") or DEFAULT_CROP_PCT),
        )

    @staticmethod
    def _as_uint8_rgb(item: ImageInput) -> torch.Tensor:
        if isinstance(item, (str, os.PathLike)):
            return read_image_rgb(item)
        if isinstance(item, Image.Image):
            return TF.pil_to_tensor(item.convert("RGB"))
        if isinstance(item, np.ndarray):
            # numpy images are (H, W) or (H, W, C).
            item = torch.from_numpy(item)
            item = item.unsqueeze(0) if item.ndim == 2 else item.permute(2, 0, 1)
        if isinstance(item, torch.Tensor):
            img = item.unsqueeze(0) if item.ndim == 2 else item
            if img.ndim != 3 or img.shape[0] not in (1, 3, 4):
                raise ValueError(
                    f"image tensors must be (C, H, W) with C in 1, 3, 4, got {tuple(item.shape)}"
                )
            # Float images are taken to be in [0, 1].
            img = TF.to_dtype(img, torch.uint8, scale=True) if img.dtype != torch.uint8 else img
            return img.expand(3, -1, -1) if img.shape[0] == 1 else img[:3]
        raise TypeError(
            f"predict() takes file paths, PIL images, tensors or numpy arrays, got {type(item).__name__}"
        )

    @torch.no_grad()
    def predict(
        self, images: ImageInput | Sequence[ImageInput], top_k: int = 5, batch_size: int = 32
    ) -> list[list[dict[str, Any]]]:
        """Top-k labels with their probabilities for each image.

        Images are prepared with the model's own evaluation transform (``eval_transform``).

        Args:
            images: one image or a list: file paths, PIL images, uint8 or [0, 1] float tensors
                ``(C, H, W)``, or numpy arrays ``(H, W[, C])``.
            top_k: how many labels per image, highest probability first (capped at
                ``num_classes``). Default 5.
            batch_size: images per forward pass. Default 32.

        Returns:
            One list per image of ``{"label": name, "index": class index, "score": probability}``.
        """
        if isinstance(images, (str, os.PathLike, Image.Image, torch.Tensor, np.ndarray)):
            images = [images]
        transform = self.eval_transform()
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        k = max(1, min(int(top_k), self.num_classes))
        was_training = self.training
        self.eval()
        results: list[list[dict[str, Any]]] = []
        try:
            for start in range(0, len(images), batch_size):
                chunk = [
                    transform(self._as_uint8_rgb(x)) for x in images[start : start + batch_size]
                ]
                probs = self.probabilities(self(torch.stack(chunk).to(self.device)))
                scores, indices = probs.float().topk(k, dim=-1)
                for s_row, i_row in zip(scores.tolist(), indices.tolist()):
                    results.append(
                        [{"label": names[i], "index": i, "score": s} for s, i in zip(s_row, i_row)]
                    )
        finally:
            self.train(was_training)
        return results
