"""SemanticSegmentor: timm backbone + FPN, U-Net or DeepLabV3+ head, as an AutoTimm BaseTask."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from autotimm_core import BaseTask, FeatureAdapter
from autotimm_core.data import DataConfig, ImageInput, read_image
from autotimm_core.validation import check_choice, resolve_num_classes
from autotimm_segmentation.data.transforms import (
    build_segmentation_transform,
    letterbox_size,
)
from autotimm_segmentation.export import SegmentorExport
from autotimm_segmentation.heads import HEAD_STRIDES, HEADS, build_head
from autotimm_segmentation.losses import LOSSES, build_loss
from autotimm_segmentation.metrics import default_segmentation_metrics, with_segmentation_params

#: Input side of a segmentor whose ``image_size`` and ``data_config`` leave it open.
SEGMENTATION_IMAGE_SIZE = 512


def _check_class_weights(weights: Sequence[float] | None, num_classes: int | None) -> None:
    """``class_weights``: non-negative numbers, one per class (their count once it is known)."""
    if weights is None:
        return
    values = list(weights)
    count = "num_classes" if num_classes is None else num_classes
    if (num_classes is not None and len(values) != num_classes) or any(
        float(w) < 0 for w in values
    ):
        raise ValueError(
            f"class_weights must be {count} non-negative numbers (one per class), got {values}"
        )


class SemanticSegmentor(BaseTask):
    """Semantic segmentation on any timm backbone with ``features_only``.

    The backbone's maps at strides 4, 8, 16 and 32 (CNNs; hierarchical transformers' channel-last
    maps are permuted; a plain ViT's stride-16 map goes through a simple pyramid, see
    :class:`autotimm_core.FeatureAdapter`) feed a small head whose logits are upsampled to the
    input size. Losses log as ``{train,val,test}/loss``; with ``metrics=None`` validation and
    test log ``val/miou`` (progress bar), ``val/iou/<class>`` and ``val/dice`` (pixel F1,
    macro), all leaving ``ignore_index`` pixels out.

    Args:
        backbone: timm model name (``"resnet50"``, ``"convnext_tiny"``, ``"swin_tiny_patch4_window7_224"``,
            ``"vit_small_patch16_224"``...). Default ``"resnet50"``.
        num_classes: number of classes, the ignore value not counted. Default None: the length
            of ``class_names`` if given, else the data module's, taken when a fit (or
            evaluation) starts (the head and loss are built then); a data module whose count
            differs from a given one is an error.
        pretrained: load the backbone's pretrained weights. Default True.
        head: ``"fpn"`` (semantic FPN), ``"unet"`` (U-Net decoder) or ``"deeplabv3plus"``
            (ASPP + low-level skip). Default ``"fpn"``.
        loss: ``"ce"`` (cross-entropy), ``"dice"``, ``"ce+dice"``, ``"focal"`` or ``"lovasz"``
            (the last three from segmentation_models_pytorch). Default ``"ce"``.
        ignore_index: mask value left out of the loss and the metrics (VOC's borders, padding,
            areas augmentation exposes), in [0, 255]. Default 255.
        class_weights: one weight per class for the CE, Dice and focal losses. Default None.
        head_channels: width of the head. Default 128.
        image_size: input side (letterboxed square). Backbones built for a fixed size (ViT,
            Swin...) are built for it. Default None: ``data_config``'s, else 512.
        data_config: further ways images are prepared (``mean``, ``std``, ``interpolation``...)
            as a :class:`~autotimm_core.data.DataConfig` or a dict; checkpoints store the one
            training used. Default None: the backbone's pretrained config.
        class_names: names of the classes; default: taken from the data module.
        **kwargs: BaseTask's arguments: ``metrics`` (MetricConfigs or dicts; ``task`` and
            ``ignore_index`` are filled in where the metric takes them; default None: mIoU,
            per-class IoU and Dice on val and test), ``logging_config``, ``optimizer`` (default
            ``"adamw"``), ``lr`` (default 1e-4 here), ``weight_decay``, ``optimizer_kwargs``,
            ``scheduler`` (default ``"cosine"``), ``scheduler_kwargs``, ``freeze_backbone``
            (train only the head) (see BaseTask).

    Raises:
        ValueError: a bad ``num_classes``, ``head``, ``loss``, ``ignore_index`` or
            ``class_weights`` (the message names it and the valid values), or a backbone
            without usable feature maps.
    """

    default_lr = 1e-4
    export_task = "segmentation"
    takes_num_classes_from_data = True

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int | None = None,
        pretrained: bool = True,
        head: str = "fpn",
        loss: str = "ce",
        ignore_index: int = 255,
        class_weights: Sequence[float] | None = None,
        head_channels: int = 128,
        image_size: int | None = None,
        data_config: DataConfig | Mapping[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        num_classes = resolve_num_classes("SemanticSegmentor", num_classes, class_names=class_names)
        check_choice("head", head, HEADS)
        check_choice("loss", loss, LOSSES)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an int in [0, 255], got {ignore_index!r}")
        if not 0 <= ignore_index <= 255:
            raise ValueError(f"ignore_index must be in [0, 255] (8-bit masks), got {ignore_index}")
        _check_class_weights(class_weights, num_classes)
        given = kwargs.get("metrics")
        kwargs["metrics"] = (
            default_segmentation_metrics(ignore_index)
            if given is None
            else with_segmentation_params(given, ignore_index)
        )
        # A plain **kwargs call, which jsonargparse (the CLI) follows to BaseTask's arguments.
        super().__init__(num_classes=num_classes, **kwargs)
        # The hyperparameters keep the metrics as given (None: the defaults for ignore_index).
        kwargs["metrics"] = given
        self.save_task_hyperparameters()
        self.ignore_index = ignore_index
        self.class_names = None if class_names is None else [str(c) for c in class_names]

        self.init_feature_backbone(
            backbone,
            pretrained,
            image_size,
            data_config,
            SEGMENTATION_IMAGE_SIZE,
            task="segmentation",
        )
        info = self.backbone.feature_info
        self.adapter = FeatureAdapter(
            info.channels(), info.reduction(), backbone, strides=HEAD_STRIDES, task="segmentation"
        )
        if num_classes is not None:
            self.build_class_layers(num_classes)
        if self.freeze_backbone_at_start:
            self.freeze_backbone()

    def build_class_layers(self, num_classes: int) -> None:
        """The head (``num_classes`` output maps) and the loss (with its class weights): built
        at construction, or for a model created with ``num_classes=None`` from the data
        module's when a stage starts.

        Raises:
            ValueError: ``class_weights`` does not hold ``num_classes`` values.
        """
        hp = self.hparams
        _check_class_weights(hp["class_weights"], num_classes)
        self.head = build_head(
            hp["head"], self.adapter.out_channels, num_classes, hp["head_channels"]
        )
        self.criterion = build_loss(hp["loss"], self.ignore_index, hp["class_weights"])

    # ----------------------------------------------------------------- network
    def forward(self, images: Tensor) -> Tensor:
        """Logits ``(B, num_classes, H, W)`` at the input size for images ``(B, 3, H, W)``: uint8
        (normalized here with :attr:`data_config`'s mean and std) or floats normalized already
        (as the data module's ``on_after_batch_transfer`` gives them)."""
        self.require_num_classes()
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be (B, 3, H, W), got shape {tuple(images.shape)}")
        x = self.prepare_images(images)
        logits = self.head(self.adapter(self.backbone(x)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)

    # ----------------------------------------------------------------- export
    def export_module(self, image_size: int) -> nn.Module:
        """uint8 ``(B, 3, S, S)`` to ``probabilities (B, C, S, S)`` and ``mask (B, S, S)`` (class
        indices) at the input size (see :meth:`BaseTask.export`)."""
        cfg = self.data_config
        return SegmentorExport(self.backbone, self.adapter, self.head, cfg.mean, cfg.std)

    def export_output_names(self) -> list[str]:
        return ["probabilities", "mask"]

    def export_metadata(self, image_size: int) -> dict[str, Any]:
        return {**super().export_metadata(image_size), "ignore_index": self.ignore_index}

    def compare_export_outputs(
        self,
        reference: dict[str, np.ndarray],
        exported: dict[str, np.ndarray],
        rtol: float = 0.0,
        atol: float = 1e-4,
    ) -> None:
        """Probabilities within ``atol``; the class map equal wherever the two best classes are
        further apart than ``atol`` (a near tie may flip either way)."""
        from autotimm_core.export import ExportParityError, compare_arrays

        compare_arrays(
            {"probabilities": reference["probabilities"]},
            {"probabilities": exported["probabilities"]},
            rtol=rtol,
            atol=atol,
        )
        top2 = np.sort(reference["probabilities"], axis=1)[:, -2:]
        decided = (top2[:, 1] - top2[:, 0]) > 2 * atol
        differ = (reference["mask"] != exported["mask"]) & decided
        if differ.any():
            raise ExportParityError(
                "mask",
                float(differ.mean()),
                0.0,
                f"{int(differ.sum())} pixel(s) get another class, share of pixels shown",
            )

    def loss(self, logits: Tensor, masks: Tensor) -> Tensor:
        """The configured loss of logits ``(B, C, H, W)`` against class maps ``(B, H, W)``."""
        return self.criterion(logits.float(), masks.long())

    # ----------------------------------------------------------------- Lightning steps
    def _step(self, stage: str, batch: Any) -> Tensor:
        images, masks = batch[0], batch[1].long()
        logits = self(images)
        loss = self.loss(logits, masks)
        self.log_loss(stage, loss, images.shape[0])
        if self.metric_manager.has(stage):
            self.metric_manager.update(stage, logits.detach().argmax(dim=1), masks)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step("train", batch)

    def validation_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._step("test", batch)

    def predict_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """``{"masks": (B, S, S), "probabilities": (B, C, S, S)}`` at the letterboxed input size
        (``predict`` maps results back to each image's own size)."""
        images = batch[0] if isinstance(batch, (list, tuple)) else batch
        probs = self(images).softmax(dim=1)
        return {"masks": probs.argmax(dim=1), "probabilities": probs}

    # ----------------------------------------------------------------- inference API
    @torch.no_grad()
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        return_probabilities: bool = False,
        batch_size: int = 8,
    ) -> list[dict[str, Tensor]]:
        """Segment images given as file paths, PIL images, arrays or tensors (anything
        ``autotimm_core.data.read_image`` reads).

        Images are letterboxed as validation does, by :attr:`data_config` (the one training
        used, also after ``load_from_checkpoint``); the logits of the image's area are resized
        back to its own size before the class map is taken.

        Args:
            images: one image or a list of them.
            return_probabilities: also return the softmax probabilities. Default False.
            batch_size: images per forward pass. Default 8.

        Returns:
            Per image: ``"mask"``, the class map ``(H, W)`` (int64 class indices) at the image's
            original size, and with ``return_probabilities`` ``"probabilities"`` ``(C, H, W)``.
        """
        self.require_num_classes()
        single = not isinstance(images, (list, tuple))
        items = [images] if single else list(images)
        transform = build_segmentation_transform(
            self.data_config, train=False, ignore_index=self.ignore_index
        )
        size = self.image_size
        was_training = self.training
        self.eval()
        results: list[dict[str, Tensor]] = []
        try:
            for start in range(0, len(items), batch_size):
                originals = [read_image(item) for item in items[start : start + batch_size]]
                batch = torch.stack([transform(img)[0] for img in originals]).to(self.device)
                logits = self(batch).float()
                for img, out in zip(originals, logits):
                    h, w = img.shape[-2:]
                    nh, nw = letterbox_size(h, w, size)
                    area = out[None, :, :nh, :nw]
                    full = F.interpolate(area, size=(h, w), mode="bilinear", align_corners=False)
                    probs = full[0].softmax(dim=0)
                    result = {"mask": probs.argmax(dim=0).cpu()}
                    if return_probabilities:
                        result["probabilities"] = probs.cpu()
                    results.append(result)
        finally:
            self.train(was_training)
        return results
