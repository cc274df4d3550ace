"""ObjectDetector: timm backbone + FPN P3-P7 + FCOS head, as an AutoTimm BaseTask."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from autotimm_core import BaseTask, LoggingConfig, MetricConfig, backbone_data_config
from autotimm_detection.assign import assign_targets, pad_targets, points_in_boxes
from autotimm_detection.backbone import PyramidAdapter, accepts_img_size, build_timm_backbone
from autotimm_detection.fpn import FPN, FPN_STRIDES
from autotimm_detection.head import FCOSHead
from autotimm_detection.loss import fcos_loss
from autotimm_detection.metrics import default_map_config, with_exact_map_params
from autotimm_detection.points import level_size_ranges, make_points
from autotimm_detection.postprocess import postprocess_detections, rescale_detections

ImageInput = str | Path | Image.Image | np.ndarray | Tensor
#: Input side used by predict() when neither the model nor a data module gave one.
DEFAULT_IMAGE_SIZE = 640


class ObjectDetector(BaseTask):
    """Anchor-free (FCOS-style) object detector on any timm backbone.

    ``forward`` returns raw head outputs; ``loss`` and ``postprocess`` are explicit steps, so that
    validation logs both losses and COCO mAP (``val/map``, ``val/map_50``, ``val/map_75``,
    ``val/map_small``..., ``val/mar_100``...).

    Args:
        backbone: timm model name (CNNs, Swin, ConvNeXt, MaxViT, ViT...). Default ``"resnet50"``.
        num_classes: number of object classes (required; must match the data module).
        pretrained: load the backbone's pretrained weights. Default True.
        metrics: MetricConfigs; default COCO mAP on val and test. MeanAveragePrecision configs get
            pycocotools-exact thresholds and the fastest installed backend unless set, and
            torchmetrics' own class is built as ``COCOMeanAveragePrecision`` (DDP-safe sync).
        logging_config: see BaseTask. Default None.
        optimizer: optimizer name from ``list_optimizers()``. Default ``"adamw"``.
        lr: learning rate (``model.lr``). Default 1e-4.
        weight_decay: weight decay, not applied to biases and norms. Default 1e-4.
        scheduler: scheduler name or alias from ``list_schedulers()``. Default ``"cosine"``.
        scheduler_kwargs: scheduler arguments; run-length defaults are filled in. Default None.
        freeze_backbone: train only the neck and head; backbone BatchNorm statistics stay fixed.
            Default False.
        fpn_channels: FPN and head width. Default 256.
        head_num_convs: conv blocks per head tower. Default 4.
        score_thresh: minimum detection score. Default 0.05.
        nms_thresh: NMS IoU threshold. Default 0.6.
        max_detections: detections kept per image. Default 100.
        image_size: input side for backbones built for a fixed size (ViT, Swin...) and for
            ``predict``; None takes the data module's ``image_size`` when training. Default None.
        class_names: names of the labels; default: taken from the data module.
        category_ids: data-set category id of each label; default: from the data module, else
            ``0..num_classes-1``.
        center_sampling_radius: positives lie within this many strides of a box centre.
            Default 1.5.
        topk_candidates: candidates per level before NMS. Default 1000.
        focal_alpha: default 0.25. focal_gamma: default 2.0.
        prior_probability: initial classifier foreground probability. Default 0.01.
        optimizer_kwargs: further optimizer arguments. Default None.
    """

    default_metrics = (default_map_config(),)

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int | None = None,
        pretrained: bool = True,
        metrics: Sequence[MetricConfig | dict[str, Any]] | None = None,
        logging_config: LoggingConfig | dict[str, Any] | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-4,
        weight_decay: float = 1e-4,
        scheduler: str | None = "cosine",
        scheduler_kwargs: dict[str, Any] | None = None,
        freeze_backbone: bool = False,
        fpn_channels: int = 256,
        head_num_convs: int = 4,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.6,
        max_detections: int = 100,
        image_size: int | None = None,
        class_names: list[str] | None = None,
        category_ids: list[int] | None = None,
        center_sampling_radius: float = 1.5,
        topk_candidates: int = 1000,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        prior_probability: float = 0.01,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if not (isinstance(num_classes, int) and num_classes > 0):
            raise ValueError(
                f"ObjectDetector needs num_classes, a positive int (the number of object classes "
                f"in your data, e.g. data.num_classes), got {num_classes!r}"
            )
        for name, names in (("class_names", class_names), ("category_ids", category_ids)):
            if names is not None and len(names) != num_classes:
                raise ValueError(f"{name} has {len(names)} entries but num_classes={num_classes}")
        metrics = with_exact_map_params(metrics)
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
        )
        self.save_task_hyperparameters()
        self.num_classes = num_classes
        self.class_names = (
            list(class_names) if class_names else [str(i) for i in range(num_classes)]
        )
        self.category_ids = list(category_ids) if category_ids else list(range(num_classes))
        self.image_size = image_size

        self.backbone = build_timm_backbone(backbone, pretrained, image_size)
        info = self.backbone.feature_info
        self.adapter = PyramidAdapter(info.channels(), info.reduction(), name=backbone)
        self.fpn = FPN(self.adapter.out_channels, fpn_channels)
        self.head = FCOSHead(
            fpn_channels, num_classes, num_convs=head_num_convs, prior_probability=prior_probability
        )
        mean, std = self._normalization()
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self._points_cache: dict[Any, tuple[Tensor, Tensor, list[int], Tensor]] = {}
        if freeze_backbone:
            self.freeze_backbone()

    def _normalization(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        try:
            cfg = backbone_data_config(self.backbone)
            return tuple(cfg["mean"]), tuple(cfg["std"])
        except (AttributeError, KeyError, TypeError):  # no pretrained config: ImageNet's
            return (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    # ----------------------------------------------------------------- network
    def normalize(self, images: Tensor) -> Tensor:
        """uint8 images (0-255) or float images (0-1) to the backbone's normalised input."""
        images = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        return (images - self.pixel_mean) / self.pixel_std

    def _points(self, features: list[Tensor]) -> tuple[Tensor, Tensor, list[int], Tensor]:
        sizes = tuple(tuple(f.shape[-2:]) for f in features)
        key = (sizes, features[0].device)
        if key not in self._points_cache:
            points, strides, counts = make_points(
                list(sizes), list(FPN_STRIDES[: len(sizes)]), device=features[0].device
            )
            ranges = level_size_ranges(counts, device=features[0].device)
            self._points_cache[key] = (points, strides, counts, ranges)
        return self._points_cache[key]

    def forward(self, images: Tensor) -> dict[str, Any]:
        """Head outputs for a batch (B, 3, H, W) of uint8 or 0-1 float images.

        Returns:
            ``cls_logits`` (B, P, C), ``bbox_regression`` (B, P, 4), ``bbox_ctrness`` (B, P),
            ``points`` (P, 2), ``point_strides`` (P,), ``num_points_per_level``, ``size_ranges``
            (P, 2) and ``image_size`` (H, W).
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        x = self.normalize(images)
        pyramid = self.fpn(self.adapter(self.backbone(x)))
        out: dict[str, Any] = dict(self.head(pyramid))
        points, strides, counts, ranges = self._points(pyramid)
        out.update(
            points=points,
            point_strides=strides,
            num_points_per_level=counts,
            size_ranges=ranges,
            image_size=tuple(images.shape[-2:]),
        )
        return out

    # ----------------------------------------------------------------- loss
    def loss(self, outputs: dict[str, Any], targets: list[dict[str, Tensor]]) -> dict[str, Tensor]:
        """FCOS loss terms and their sum ``loss`` for targets with ``boxes``/``labels`` (input pixels)."""
        for i, t in enumerate(targets):
            boxes = t["boxes"]
            if boxes.ndim != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"targets[{i}]['boxes'] must be (n, 4), got {tuple(boxes.shape)}")
            if boxes.numel() and int(t["labels"].max()) >= self.num_classes:
                raise ValueError(
                    f"targets[{i}]['labels'] has label {int(t['labels'].max())} but num_classes="
                    f"{self.num_classes}"
                )
        points, strides = outputs["points"], outputs["point_strides"]
        gt = pad_targets(targets, points.device)
        matched = assign_targets(
            points,
            strides,
            outputs["size_ranges"],
            gt["boxes"],
            gt["valid"],
            self.hparams.center_sampling_radius,
        )
        ignore = points_in_boxes(points, gt["boxes"], gt["crowd"])  # crowd regions: no negatives
        terms = fcos_loss(
            outputs["cls_logits"].float(),
            outputs["bbox_regression"].float(),
            outputs["bbox_ctrness"].float(),
            points,
            strides,
            matched,
            gt["boxes"],
            gt["labels"],
            ignore=ignore,
            focal_alpha=self.hparams.focal_alpha,
            focal_gamma=self.hparams.focal_gamma,
        )
        terms["loss"] = sum(terms.values())
        return terms

    # ----------------------------------------------------------------- detections
    def postprocess(
        self, outputs: dict[str, Any], targets: list[dict[str, Tensor]] | None = None
    ) -> list[dict[str, Tensor]]:
        """Detections per image; with targets carrying ``scale``/``orig_size`` (as the data module's
        do), boxes are mapped back to the original image's pixels. Labels are contiguous."""
        hp = self.hparams
        dets = postprocess_detections(
            outputs["cls_logits"].float(),
            outputs["bbox_regression"].float(),
            outputs["bbox_ctrness"].float(),
            outputs["points"],
            outputs["point_strides"],
            outputs["num_points_per_level"],
            outputs["image_size"],
            score_thresh=hp.score_thresh,
            nms_thresh=hp.nms_thresh,
            max_detections=hp.max_detections,
            topk_candidates=hp.topk_candidates,
        )
        if targets is None:
            return dets
        return [
            rescale_detections(d, t["scale"], t["orig_size"]) if "scale" in t else d
            for d, t in zip(dets, targets)
        ]

    @staticmethod
    def metric_targets(targets: list[dict[str, Tensor]]) -> list[dict[str, Tensor]]:
        """Ground truth for mAP: the original annotations (with ``iscrowd`` and COCO ``area``)."""
        out = []
        for t in targets:
            if "orig_boxes" in t:
                out.append(
                    {
                        "boxes": t["orig_boxes"],
                        "labels": t["orig_labels"],
                        "iscrowd": t["orig_iscrowd"].long(),
                        "area": t["orig_area"],
                    }
                )
            else:
                d = {"boxes": t["boxes"], "labels": t["labels"]}
                if "iscrowd" in t:
                    d["iscrowd"] = t["iscrowd"].long()
                out.append(d)
        return out

    # ----------------------------------------------------------------- Lightning steps
    def _shared_step(self, batch: Any, stage: str) -> Tensor:
        images, targets = batch
        outputs = self(images)
        terms = self.loss(outputs, targets)
        b = images.shape[0]
        self.log_loss(stage, terms["loss"], b)
        for name in ("classification", "bbox_regression", "bbox_ctrness"):
            self.log_loss(stage, terms[name], b, name=f"loss_{name}")
        if self.metric_manager.has(stage):
            with torch.no_grad():
                preds = self.postprocess(outputs, targets)
            self.metric_manager.update(stage, preds, self.metric_targets(targets))
        return terms["loss"]

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, "test")

    def predict_step(
        self, batch: Any, batch_idx: int, dataloader_idx: int = 0
    ) -> list[dict[str, Any]]:
        images, targets = batch if isinstance(batch, (list, tuple)) else (batch, None)
        return [self._named(d) for d in self.postprocess(self(images), targets)]

    def _named(self, det: dict[str, Tensor]) -> dict[str, Any]:
        labels = det["labels"].tolist()
        return {
            "boxes": det["boxes"],
            "scores": det["scores"],
            "labels": torch.tensor([self.category_ids[i] for i in labels], dtype=torch.long),
            "label_names": [self.class_names[i] for i in labels],
        }

    # ----------------------------------------------------------------- data module link
    def setup(self, stage: str) -> None:
        dm = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            return
        dm_classes = getattr(dm, "num_classes", None)
        if dm_classes is not None and dm_classes != self.num_classes:
            raise ValueError(
                f"ObjectDetector was built with num_classes={self.num_classes} but the data module "
                f"has {dm_classes} classes ({getattr(dm, 'paths', {}).get('train', [''])[0]}); "
                f"build it with num_classes=data.num_classes"
            )
        if getattr(dm, "class_names", None) and self.hparams.class_names is None:
            self.class_names = list(dm.class_names)
            self.category_ids = list(dm.category_ids)
            self.hparams["class_names"] = self.class_names
            self.hparams["category_ids"] = self.category_ids
        dm_size = getattr(dm, "image_size", None)
        if self.image_size is None and dm_size is not None:
            self.image_size = int(dm_size)
            self.hparams["image_size"] = self.image_size
            if accepts_img_size(self.hparams.backbone):
                # Built for its default size: rebuild for the data's (position embeddings and
                # windows depend on it). Checkpoints record image_size, so reloading matches.
                frozen = not any(p.requires_grad for p in self.backbone.parameters())
                self.backbone = build_timm_backbone(
                    self.hparams.backbone, self.hparams.pretrained, self.image_size
                )
                if frozen:
                    self.freeze_backbone()

    # ----------------------------------------------------------------- inference API
    @torch.no_grad()
    def predict(
        self, images: ImageInput | Sequence[ImageInput], batch_size: int = 8
    ) -> list[dict[str, Any]]:
        """Detect objects in images given as file paths, PIL images, HWC uint8 arrays or CHW tensors
        (uint8, or float in 0-1).

        Returns:
            Per image: ``boxes`` (n, 4) xyxy in the image's own pixels, ``scores`` (n,), ``labels``
            (n,) as the data set's category ids and ``label_names``.
        """
        from autotimm_detection.data.transforms import build_transform, letterbox_size

        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        size = self.image_size or DEFAULT_IMAGE_SIZE
        transform = build_transform(size, train=False, min_box_size=0.0)
        was_training = self.training
        self.eval()
        results: list[dict[str, Any]] = []
        try:
            for start in range(0, len(items), batch_size):
                tensors, targets = [], []
                for item in items[start : start + batch_size]:
                    array = _to_rgb_array(item)
                    h, w = array.shape[:2]
                    img, *_ = transform(
                        array, np.zeros((0, 4), np.float32), np.zeros(0), np.zeros(0)
                    )
                    nh, nw = letterbox_size(h, w, size)
                    tensors.append(img)
                    targets.append(
                        {"scale": torch.tensor([nw / w, nh / h]), "orig_size": torch.tensor([h, w])}
                    )
                batch = torch.stack(tensors).to(self.device)
                dets = self.postprocess(self(batch), targets)
                results += [
                    {
                        k: (v.cpu() if isinstance(v, Tensor) else v)
                        for k, v in self._named(d).items()
                    }
                    for d in dets
                ]
        finally:
            self.train(was_training)
        return results


def _to_rgb_array(item: ImageInput) -> np.ndarray:
    """An RGB uint8 HWC array from a path, PIL image, array or CHW tensor."""
    if isinstance(item, (str, Path)):
        path = Path(item)
        if not path.is_file():
            raise FileNotFoundError(f"image not found: {path}")
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    if isinstance(item, Image.Image):
        return np.asarray(item.convert("RGB"))
    if isinstance(item, Tensor):
        t = item.detach().cpu()
        if t.ndim != 3 or t.shape[0] not in (1, 3):
            raise ValueError(
                f"image tensors must be (C, H, W) with 1 or 3 channels, got {tuple(t.shape)}"
            )
        if t.dtype != torch.uint8:
            t = (t.float().clamp(0, 1) * 255).round().to(torch.uint8)
        return t.expand(3, -1, -1).permute(1, 2, 0).numpy()
    if isinstance(item, np.ndarray):
        if item.ndim == 2:
            item = np.stack([item] * 3, axis=-1)
        if item.ndim != 3 or item.shape[2] != 3:
            raise ValueError(f"image arrays must be (H, W, 3), got {item.shape}")
        return item.astype(np.uint8, copy=False)
    raise TypeError(f"cannot read an image from {type(item).__name__}")
