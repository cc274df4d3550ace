"""ObjectDetector: timm backbone + FPN P3-P7 + FCOS head, as an AutoTimm BaseTask."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from timm.layers import freeze_batch_norm_2d
from timm.utils.model import freeze as timm_freeze
from torch import Tensor, nn
from torchmetrics.detection import MeanAveragePrecision

from autotimm_core import BaseTask
from autotimm_core.data import DataConfig, ImageInput, read_image
from autotimm_core.validation import check_choice, resolve_num_classes
from autotimm_detection.assign import bucket_size, pad_targets
from autotimm_detection.backbone import PyramidAdapter
from autotimm_detection.data.transforms import (
    DEFAULT_FILL,
    build_detection_transform,
    letterbox_target,
)
from autotimm_detection.export import (
    DETECTION_OUTPUTS,
    DetectorExport,
    compare_detections,
    padded_detections,
)
from autotimm_detection.fpn import FPN, FPN_STRIDES
from autotimm_detection.head import FCOSHead
from autotimm_detection.loss import CLS_LOSSES, detection_loss
from autotimm_detection.metrics import (
    COCOMeanAveragePrecision,
    default_map_config,
    with_exact_map_params,
)
from autotimm_detection.points import level_size_ranges, make_points, scaled_size_ranges
from autotimm_detection.postprocess import postprocess_detections, rescale_detections
from autotimm_detection.visualize import render_detections

#: Input side of a detector whose ``image_size`` and ``data_config`` leave it open.
DETECTION_IMAGE_SIZE = 640


class ObjectDetector(BaseTask):
    """Anchor-free (FCOS-style) object detector on any timm backbone.

    ``forward`` returns raw head outputs; ``loss`` and ``postprocess`` are explicit steps, so that
    validation logs both losses and COCO mAP (``val/map``, ``val/map_50``, ``val/map_75``,
    ``val/map_small``..., ``val/mar_100``...).

    Args:
        backbone: timm model name (CNNs, Swin, ConvNeXt, MaxViT, ViT...). Default ``"resnet50"``.
        num_classes: number of object classes. Default None: the length of ``class_names`` or
            ``category_ids`` if given, else the data module's, taken when a fit (or evaluation)
            starts (the head is built then); a data module whose count differs from a given one
            is an error.
        pretrained: load the backbone's pretrained weights. Default True.
        fpn_channels: FPN and head width. Default 256.
        head_num_convs: conv blocks per head tower. Default 4.
        score_thresh: minimum detection score. Default 0.05.
        nms_thresh: NMS IoU threshold. Default 0.6.
        max_detections: detections kept per image. Default 100.
        image_size: input side (letterboxed square). Backbones built for a fixed size (ViT,
            Swin...) are built for it, and a data module with another ``image_size`` is then an
            error naming both. Default None: ``data_config``'s, else 640 (never the backbone's
            classification size); a CNN detector then follows the data module's ``image_size``.
        data_config: further ways images are prepared (``mean``, ``std``, ``interpolation``...)
            as a :class:`~autotimm_core.data.DataConfig` or a dict; a checkpoint stores the one
            training used, so ``predict`` on a loaded model matches it. Default None: the
            backbone's pretrained config.
        class_names: names of the labels; default: taken from the data module.
        category_ids: data-set category id of each label; default: from the data module, else
            ``0..num_classes-1``.
        center_sampling_radius: positives lie within this many strides of a box centre.
            Default 1.5.
        topk_candidates: candidates per level before NMS. Default 1000.
        focal_alpha: default 0.25. focal_gamma: default 2.0.
        prior_probability: initial classifier foreground probability. Default 0.01.
        fpn_levels: the pyramid levels the head predicts on (3 = P3, stride 8 ... 7 = P7,
            stride 128), increasing. Default ``(3, 4, 5, 6, 7)``; ``(3, 4, 5)`` skips the levels
            that only large objects use.
        force_gt_positive: every ground-truth box gets at least one positive point (the point
            nearest its centre on the level whose range fits) when none matched it, so small
            boxes between grid points are learned. Default False: measured on a small set it
            did not help yet (``benchmarks/detection_quality.py``).
        centerness_weighted_giou: weight the GIoU loss by the centerness target and normalise
            by its sum (official FCOS, mmdetection) instead of by the number of positives
            (torchvision). Default False, for the same reason.
        scale_size_ranges: scale FCOS's 800-px level size ranges to the input size (at 256 px
            P6/P7 then get objects too). Default False: measured on small inputs it moves
            mid-sized objects to levels of 2x2 or 1x1 cells and costs accuracy
            (``benchmarks/detection_quality.py``).
        head_channels: width of the head's towers (their first conv maps the FPN width to it);
            fewer make a lighter, faster head. Default None: ``fpn_channels``.
        cls_loss: the classification loss: ``"focal"`` (FCOS's binary targets), or IoU-aware
            soft targets, the IoU of each positive's predicted box with its ground truth:
            ``"quality_focal"`` (GFL) or ``"varifocal"`` (VarifocalNet). Default ``"focal"``.
        trainable_layers: how many of the backbone's feature stages train, counted from the
            deepest (torchvision's ``trainable_backbone_layers``; for a ResNet 1 = layer4, 3 =
            layer2-4, 5 = all, stem included): the modules before them are frozen, weights and
            BatchNorm statistics. 0 freezes the whole backbone. Default None: all of it trains.
        frozen_bn: replace the backbone's BatchNorm layers by frozen ones (fixed statistics and
            affine parameters, ``timm.layers.freeze_batch_norm_2d``), as torchvision's detectors
            do with pretrained weights: small per-device batches then cannot spoil the
            pretrained statistics. Default False.
        point_offset: where each feature cell's point lies, in strides: 0.5 is the cell's
            centre (the official FCOS, mmdetection), 0.0 its top-left corner (torchvision's
            FCOS; the centre of a ResNet cell's receptive field). Default 0.5.
        **kwargs: BaseTask's arguments: ``metrics`` (default COCO mAP on val and test;
            MeanAveragePrecision configs get pycocotools-exact thresholds and the fastest
            installed backend unless set, and torchmetrics' own class is built as
            ``COCOMeanAveragePrecision``, DDP-safe), ``logging_config``, ``optimizer``, ``lr``
            (default 1e-4 here), ``weight_decay``, ``optimizer_kwargs``, ``scheduler``,
            ``scheduler_kwargs``, ``freeze_backbone`` (train only the neck and head),
            ``compile``, ``channels_last``, ``ema``, ``ema_decay`` (see BaseTask).
    """

    default_metrics = (default_map_config(),)
    default_lr = 1e-4
    export_task = "detection"
    takes_num_classes_from_data = True

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int | None = None,
        pretrained: bool = True,
        fpn_channels: int = 256,
        head_num_convs: int = 4,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.6,
        max_detections: int = 100,
        image_size: int | None = None,
        data_config: DataConfig | Mapping[str, Any] | None = None,
        class_names: list[str] | None = None,
        category_ids: list[int] | None = None,
        center_sampling_radius: float = 1.5,
        topk_candidates: int = 1000,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        prior_probability: float = 0.01,
        fpn_levels: Sequence[int] = (3, 4, 5, 6, 7),
        force_gt_positive: bool = False,
        centerness_weighted_giou: bool = False,
        scale_size_ranges: bool = False,
        head_channels: int | None = None,
        cls_loss: Literal["focal", "quality_focal", "varifocal"] = "focal",
        trainable_layers: int | None = None,
        frozen_bn: bool = False,
        point_offset: float = 0.5,
        **kwargs: Any,
    ) -> None:
        num_classes = resolve_num_classes(
            "ObjectDetector", num_classes, class_names=class_names, category_ids=category_ids
        )
        levels = tuple(int(x) for x in fpn_levels)
        if not levels or list(levels) != sorted(set(levels)) or not set(levels) <= set(range(3, 8)):
            raise ValueError(
                f"fpn_levels must be increasing pyramid levels from 3 (P3) to 7 (P7), e.g. "
                f"(3, 4, 5, 6, 7) or (3, 4, 5), got {fpn_levels!r}"
            )
        check_choice("cls_loss", cls_loss, CLS_LOSSES)
        if isinstance(point_offset, bool) or not (
            isinstance(point_offset, (int, float)) and 0.0 <= point_offset < 1.0
        ):
            raise ValueError(
                f"point_offset must be a number in [0, 1) (0.5: cell centres, 0.0: torchvision's "
                f"cell corners), got {point_offset!r}"
            )
        if trainable_layers is not None and not (
            isinstance(trainable_layers, int) and trainable_layers >= 0
        ):
            raise ValueError(
                f"trainable_layers must be None (train the whole backbone) or an int >= 0 (the "
                f"number of feature stages that train, from the deepest), got {trainable_layers!r}"
            )
        if "metrics" in kwargs:
            kwargs["metrics"] = with_exact_map_params(kwargs["metrics"])
        super().__init__(num_classes=num_classes, **kwargs)
        self.save_task_hyperparameters()
        self.class_names = list(class_names) if class_names else None
        self.category_ids = list(category_ids) if category_ids else None

        self.init_feature_backbone(
            backbone, pretrained, image_size, data_config, DETECTION_IMAGE_SIZE, task="detection"
        )
        info = self.backbone.feature_info
        self.adapter = PyramidAdapter(info.channels(), info.reduction(), name=backbone)
        self.fpn = FPN(self.adapter.out_channels, fpn_channels)
        self.fpn_levels = levels
        if num_classes is not None:
            self.build_class_layers(num_classes)
        if frozen_bn:
            freeze_batch_norm_2d(self.backbone)
        if trainable_layers is not None:
            self._freeze_early_stages(backbone, trainable_layers)
        self._points_cache: dict[Any, tuple[Tensor, Tensor, list[int], Tensor]] = {}
        if self.freeze_backbone_at_start:
            self.freeze_backbone()
        if num_classes is not None:
            self.apply_network_options()

    # ----------------------------------------------------------------- network
    def build_class_layers(self, num_classes: int) -> None:
        """The FCOS head (its classifier has ``num_classes`` outputs) and the default label
        names (``"0"``, ``"1"``...) and category ids (``0..num_classes-1``) where none are given;
        built at construction, or for a detector created with ``num_classes=None`` from the data
        module's when a stage starts (``__init__`` has checked the given lists' lengths).
        """
        hp = self.hparams
        self.class_names = self.class_names or [str(i) for i in range(num_classes)]
        self.category_ids = self.category_ids or list(range(num_classes))
        self.head = FCOSHead(
            hp["fpn_channels"],
            num_classes,
            num_convs=hp["head_num_convs"],
            num_levels=len(self.fpn_levels),
            prior_probability=hp["prior_probability"],
            channels=hp["head_channels"],
        )

    def _freeze_early_stages(self, name: str, trainable: int) -> None:
        """Freeze the backbone's top-level modules before its last ``trainable`` pyramid stages."""
        children = [n for n, _ in self.backbone.named_children()]
        stages = [m.split(".")[0] for m in self.backbone.feature_info.module_name()]
        if len(set(stages)) != len(stages) or not set(stages) <= set(children):
            raise ValueError(
                f"trainable_layers is not supported for backbone {name!r}: its feature stages "
                f"{stages} are not top-level modules (use freeze_backbone=True to freeze it all)"
            )
        if trainable > len(stages):
            raise ValueError(
                f"trainable_layers={trainable} but backbone {name!r} has {len(stages)} feature "
                f"stages {stages}: choose 0-{len(stages)}"
            )
        first_trained = (
            children.index(stages[len(stages) - trainable]) if trainable else len(children)
        )
        frozen = children[:first_trained]
        if frozen:
            # timm's freeze: requires_grad off and BatchNorm layers made frozen (fixed statistics).
            timm_freeze(self.backbone, frozen)

    def _points(
        self, features: list[Tensor], image_size: tuple[int, int]
    ) -> tuple[Tensor, Tensor, list[int], Tensor]:
        sizes = tuple(tuple(f.shape[-2:]) for f in features)
        # Tensors made under inference_mode (predict, Lightning's evaluation) cannot take part
        # in autograd later: they get their own cache entry.
        key = (sizes, image_size, features[0].device, torch.is_inference_mode_enabled())
        if key not in self._points_cache:
            strides = [FPN_STRIDES[level - 3] for level in self.fpn_levels]
            points, strides, counts = make_points(
                list(sizes),
                strides,
                device=features[0].device,
                offset=float(self.hparams.get("point_offset", 0.5)),
            )
            side = max(image_size) if self.hparams.get("scale_size_ranges", False) else 800.0
            ranges = level_size_ranges(
                counts, scaled_size_ranges(side, self.fpn_levels), device=features[0].device
            )
            self._points_cache[key] = (points, strides, counts, ranges)
        return self._points_cache[key]

    def forward(self, images: Tensor) -> dict[str, Any]:
        """Head outputs for a batch (B, 3, H, W) of uint8 images (normalized here with
        ``data_config``'s mean and std) or float images already normalized (as the data module's
        ``on_after_batch_transfer`` gives them).

        Returns:
            ``cls_logits`` (B, P, C), ``bbox_regression`` (B, P, 4), ``bbox_ctrness`` (B, P),
            ``points`` (P, 2), ``point_strides`` (P,), ``num_points_per_level``, ``size_ranges``
            (P, 2) and ``image_size`` (H, W).
        """
        self.require_num_classes()
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        x = self.prepare_images(images)
        pyramid = self.fpn(self.adapter(self.backbone(x)))
        pyramid = [pyramid[level - 3] for level in self.fpn_levels]
        out: dict[str, Any] = dict(self.head(pyramid))
        points, strides, counts, ranges = self._points(pyramid, tuple(images.shape[-2:]))
        out.update(
            points=points,
            point_strides=strides,
            num_points_per_level=counts,
            size_ranges=ranges,
            image_size=tuple(images.shape[-2:]),
        )
        return out

    # ----------------------------------------------------------------- loss
    def loss(
        self, outputs: dict[str, Any], targets: list[dict[str, Tensor]] | dict[str, Tensor]
    ) -> dict[str, Tensor]:
        """FCOS loss terms and their sum ``loss``.

        Args:
            outputs: from :meth:`forward`.
            targets: one dict per image with ``boxes`` (n, 4) xyxy in input pixels, ``labels``
                (n,) and optional ``iscrowd`` (n,) (the data module's also carry the padded
                ``padded_boxes``/``padded_labels``/``padded_iscrowd`` its collate step made,
                used as they are); or one dict of padded tensors ``boxes`` (B, M, 4),
                ``labels`` (B, M) with -1 for padding and optional ``iscrowd`` (B, M).

        The step never waits for the device: targets on an accelerator get their label range
        checked asynchronously (a device-side assert), CPU ones at once (ValueError).
        """
        gt = self._padded_targets(targets, outputs["points"].device)
        labels = gt["labels"]
        if labels.device.type == "cpu":
            if labels.numel() and (labels.max() >= self.num_classes or labels.min() < -1):
                bad = labels[(labels >= self.num_classes) | (labels < -1)][0]
                raise ValueError(
                    f"targets have label {int(bad)} but num_classes={self.num_classes} "
                    f"(labels must be 0..{self.num_classes - 1})"
                )
        else:
            torch._assert_async(
                ((labels < self.num_classes) & (labels >= -1)).all(),
                f"target labels must be 0..{self.num_classes - 1} (num_classes)",
            )
        hp = self.hparams
        terms = detection_loss(
            outputs["cls_logits"].float(),
            outputs["bbox_regression"].float(),
            outputs["bbox_ctrness"].float(),
            outputs["points"],
            outputs["point_strides"],
            outputs["size_ranges"],
            gt["boxes"],
            labels,
            gt["iscrowd"],
            center_sampling_radius=hp.center_sampling_radius,
            focal_alpha=hp.focal_alpha,
            focal_gamma=hp.focal_gamma,
            force_gt_positive=hp.get("force_gt_positive", False),
            centerness_weighted_giou=hp.get("centerness_weighted_giou", False),
            # Training ranks step together; evaluation ranks may run different numbers of
            # batches (each image on one rank), where a collective call would hang.
            reduce_over_ranks=self.training,
            cls_loss=hp.get("cls_loss", "focal"),
        )
        terms["loss"] = sum(terms.values())
        return terms

    @staticmethod
    def _padded_targets(
        targets: list[dict[str, Tensor]] | dict[str, Tensor], device: torch.device
    ) -> dict[str, Tensor]:
        """``boxes`` (B, M, 4), ``labels`` (B, M) with -1 padding and ``iscrowd`` (B, M)."""
        if isinstance(targets, Mapping):
            boxes, labels = targets["boxes"], targets["labels"]
            if boxes.ndim != 3 or boxes.shape[-1] != 4 or labels.shape != boxes.shape[:2]:
                raise ValueError(
                    f"padded targets need boxes (B, M, 4) and labels (B, M), got "
                    f"{tuple(boxes.shape)} and {tuple(labels.shape)}"
                )
            crowd = targets.get("iscrowd", torch.zeros_like(labels, dtype=torch.bool))
            return {"boxes": boxes.float(), "labels": labels.long(), "iscrowd": crowd.bool()}
        for i, t in enumerate(targets):
            boxes = t["boxes"]
            if boxes.ndim != 2 or boxes.shape[-1] != 4:
                raise ValueError(f"targets[{i}]['boxes'] must be (n, 4), got {tuple(boxes.shape)}")
        if targets and all("padded_boxes" in t for t in targets):
            # The collate step's: one stack per field, no per-image copies.
            return {
                "boxes": torch.stack([t["padded_boxes"] for t in targets]).to(device),
                "labels": torch.stack([t["padded_labels"] for t in targets]).to(device),
                "iscrowd": torch.stack([t["padded_iscrowd"] for t in targets]).to(device),
            }
        num = max([0, *(int(t["boxes"].shape[0]) for t in targets)])
        gt = pad_targets(targets, device, num_boxes=bucket_size(num))
        return {"boxes": gt["boxes"], "labels": gt["labels"], "iscrowd": gt["crowd"]}

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

    def unsyncable_eval_metrics(self) -> dict[str, str]:
        """torchmetrics' own MeanAveragePrecision (and subclasses of it other than
        :class:`COCOMeanAveragePrecision`) syncs its per-image states one collective call per
        image, which hangs or mismatches when DDP ranks evaluated different numbers of images."""
        advice = (
            "Subclass autotimm_detection.COCOMeanAveragePrecision instead to evaluate every "
            "image exactly once."
        )
        return {
            type(m).__name__: advice
            for m in self.modules()
            if isinstance(m, MeanAveragePrecision) and not isinstance(m, COCOMeanAveragePrecision)
        }

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
    def _shared_step(self, batch: Any, stage: str) -> Tensor | None:
        images, targets = batch
        if images.shape[0] == 0:  # every image of the batch was unreadable (and left out)
            return None
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
        if images.shape[0] == 0:  # only unreadable images, left out
            return []
        return [self._named(d) for d in self.postprocess(self(images), targets)]

    def _named(self, det: dict[str, Tensor]) -> dict[str, Any]:
        labels = det["labels"].tolist()
        return {
            "boxes": det["boxes"],
            "scores": det["scores"],
            "labels": torch.tensor([self.category_ids[i] for i in labels], dtype=torch.long),
            "label_names": [self.class_names[i] for i in labels],
        }

    # ----------------------------------------------------------------- export
    def export_module(self, image_size: int) -> nn.Module:
        """uint8 ``(B, 3, S, S)`` to final detections ``boxes (B, K, 4)`` xyxy in input pixels,
        ``scores (B, K)``, ``labels (B, K)`` (contiguous, -1 where padded) and
        ``num_detections (B,)``, K = ``max_detections`` (see :meth:`BaseTask.export`)."""
        return DetectorExport(self, image_size)

    def export_output_names(self) -> list[str]:
        return list(DETECTION_OUTPUTS)

    def export_metadata(self, image_size: int) -> dict[str, Any]:
        """BaseTask's entries plus the category ids, the thresholds and the letterbox fill."""
        hp = self.hparams
        return {
            **super().export_metadata(image_size),
            "category_ids": [int(c) for c in self.category_ids],
            "score_threshold": float(hp.score_thresh),
            "nms_threshold": float(hp.nms_thresh),
            "max_detections": int(hp.max_detections),
            "fill": DEFAULT_FILL,
        }

    def export_reference(self, images: Tensor) -> dict[str, np.ndarray]:
        """``postprocess`` of ``forward`` (what ``predict`` runs), padded as the graph's outputs."""
        dets = self.postprocess(self(images.to(self.device)))
        return padded_detections(dets, int(self.hparams.max_detections))

    def compare_export_outputs(
        self,
        reference: dict[str, np.ndarray],
        exported: dict[str, np.ndarray],
        rtol: float = 0.0,
        atol: float = 1e-4,
    ) -> None:
        """Detections matched one to one: identical labels, scores within ``atol`` (1e-4), boxes
        within 1e-2 px (``rtol`` is unused)."""
        compare_detections(reference, exported, box_atol=1e-2, score_atol=atol)

    def draw_prediction(self, image: torch.Tensor, record: dict[str, Any]) -> torch.Tensor:
        """``image`` (the model's uint8 ``(3, H, W)`` input) with the boxes, names and scores
        of one ``predict_step`` record drawn on it (what ``autotimm predict --draw`` saves)."""
        return render_detections(image, record)

    # ----------------------------------------------------------------- inference API
    @torch.inference_mode()
    def predict(
        self, images: ImageInput | Sequence[ImageInput], batch_size: int = 8
    ) -> list[dict[str, Any]]:
        """Detect objects in images given as file paths, PIL images, arrays or tensors (anything
        ``autotimm_core.data.read_image`` reads: uint8, 16-bit, or float in 0-1).

        Images are letterboxed as validation does, by :attr:`data_config` (the one training
        used, also after ``load_from_checkpoint``).

        Args:
            images: one image or a list of them.
            batch_size: images per forward pass. Default 8.

        Returns:
            Per image: ``boxes`` (n, 4) xyxy in the image's own pixels, ``scores`` (n,), ``labels``
            (n,) as the data set's category ids and ``label_names``.
        """
        self.require_num_classes()
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        transform = build_detection_transform(self.data_config, train=False, min_box_size=0.0)
        no_boxes = torch.zeros(0, 4)
        was_training = self.training
        self.eval()
        results: list[dict[str, Any]] = []
        try:
            for start in range(0, len(items), batch_size):
                tensors, targets = [], []
                for item in items[start : start + batch_size]:
                    image = read_image(item)
                    img, *_ = transform(image, no_boxes, no_boxes[:, 0], no_boxes[:, 0])
                    tensors.append(img)
                    targets.append(letterbox_target(*image.shape[-2:], self.image_size))
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
