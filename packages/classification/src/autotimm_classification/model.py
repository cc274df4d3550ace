"""ImageClassifier: any timm model as a Lightning classification task."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from autotimm_classification.export import ClassifierExport
from autotimm_classification.mixing import create_mixup, mix_batch
from autotimm_classification.transforms import build_classification_transform
from autotimm_classification.visualize import render_classification
from autotimm_core import BaseTask, MetricConfig, create_backbone
from autotimm_core.data import ClassCounts, DataConfig, ImageInput, read_image
from autotimm_core.validation import resolve_num_classes


def _check_class_weights(value: Any, num_classes: int | None) -> torch.Tensor | None:
    """The initial loss weights for ``class_weights`` (ones for ``"balanced"``, filled at fit);
    with ``num_classes=None`` (not known yet) only the values' form is checked."""
    if value is None:
        return None
    count = "num_classes" if num_classes is None else num_classes
    if isinstance(value, str):
        if value != "balanced":
            raise ValueError(
                f"class_weights must be None, 'balanced' or a list of {count} numbers, "
                f"got {value!r}"
            )
        return None if num_classes is None else torch.ones(num_classes)
    try:
        weights = torch.as_tensor([float(w) for w in value], dtype=torch.float32)
    except (TypeError, ValueError):
        raise ValueError(
            f"class_weights must be None, 'balanced' or a list of {count} numbers, got {value!r}"
        ) from None
    if num_classes is not None and weights.numel() != num_classes:
        raise ValueError(
            f"class_weights has {weights.numel()} values but num_classes={num_classes}"
        )
    if not torch.isfinite(weights).all() or (weights < 0).any():
        raise ValueError(f"class_weights must be finite numbers >= 0, got {list(value)}")
    return weights


def _input_size_rule(backbone: nn.Module) -> tuple[int | None, bool]:
    """The side a timm backbone was built for (None: unknown or not square), and whether an
    input of another side breaks it.

    timm's ``PatchEmbed`` (ViT, Swin, DeiT, EVA...) records the size it was built at
    (``img_size``, which ``backbone_kwargs={"img_size": ...}`` changes) and refuses other sizes
    when ``strict_img_size`` is set and the model is not built with ``dynamic_img_size=True``.
    Models without one (CNNs) take any size; the pretrained cfg's ``fixed_input_size`` is the
    fallback for the rest.
    """
    embed = getattr(backbone, "patch_embed", None)
    size = getattr(embed, "img_size", None)
    if size is not None:
        side = int(size[-1]) if len(set(size)) == 1 else None
        strict = bool(getattr(embed, "strict_img_size", False))
        return side, strict and not getattr(backbone, "dynamic_img_size", False)
    cfg = getattr(backbone, "pretrained_cfg", None) or {}
    return None, bool(cfg.get("fixed_input_size", False))


class ImageClassifier(BaseTask):
    """Image classification with any timm model; the head is timm's own, reset to ``num_classes``.

    Losses log as ``{train,val,test}/loss``; with ``metrics=None`` top-1 accuracy logs as
    ``val/accuracy`` and ``test/accuracy``.

    Args:
        backbone: any timm model name (CNN or transformer), e.g. ``"resnet50"``,
            ``"vit_small_patch16_224"``, ``"hf-hub:org/repo"``. Default ``"resnet50"``.
        num_classes: number of classes (labels, with ``multi_label``). Default None: the
            length of ``class_names`` if given, else the data module's, taken when a fit (or
            evaluation) starts (the head, metrics, class weights and Mixup are built then; a
            data module whose count differs from a given one is an error).
        pretrained: start from timm's pretrained weights (downloaded once). Default True.
        head_dropout: dropout rate before the classifier (timm's ``drop_rate``). Default 0.0.
        label_smoothing: label smoothing for the loss (targets move towards uniform for
            cross-entropy, towards 0.5 for multi-label BCE). Default 0.0.
        multi_label: independent sigmoid outputs with BCE loss and multilabel metrics; targets
            are multi-hot ``(N, num_classes)`` (integer labels are one-hot encoded). Default False.
        class_weights: weights of the classes in the loss, for skewed data: a list of
            ``num_classes`` numbers >= 0 (cross-entropy's ``weight``; with ``multi_label``
            each label's BCE term is scaled), or ``"balanced"``: computed from the training
            split's class counts when a fit starts (the data module's ``class_counts()``,
            handed over by ``DataContract``): ``n_samples / (num_classes * count)`` per class
            (scikit-learn's rule; a class without samples counts as one), and with
            ``multi_label`` BCE's ``pos_weight`` = negatives / positives per label. The values
            are kept in checkpoints. Default None: all 1.
        mixup_alpha: Mixup's Beta distribution parameter (timm's ``Mixup``, applied to each
            training batch on the device); 0 disables mixup. Default 0.0.
        cutmix_alpha: CutMix's Beta parameter; 0 disables it. With both on, each batch uses one
            of them (``switch_prob`` in ``mixup_kwargs``). Default 0.0.
        mixup_kwargs: further ``timm.data.Mixup`` arguments: ``prob``, ``switch_prob``,
            ``mode`` (``"batch"``, ``"pair"``, ``"elem"``), ``cutmix_minmax``, ``correct_lam``.
            ``label_smoothing`` and ``num_classes`` come from this model. Default None.
        compile: ``torch.compile`` the network in place; a dict is passed as its arguments
            (e.g. ``{"mode": "max-autotune"}``). Default False.
        backbone_kwargs: further ``timm.create_model`` arguments (``img_size``,
            ``drop_path_rate``...). Default None.
        class_names: label names used by ``predict``; taken from the data module when a fit
            (or evaluation) starts if None. Default None.
        image_size: side of the square input. A backbone built for one size (a ViT or Swin
            without ``dynamic_img_size``) is resized to it (timm's ``set_input_size``), and a
            data module with another ``image_size`` is then an error. Default None: the size the
            backbone was built at, else its pretrained input size (the data module's if it sets
            one and the backbone takes any size).
        data_config: how images are prepared (``image_size``, ``mean``, ``std``,
            ``interpolation``, ``crop_pct``): a ``DataConfig``, or a dict of the values to set.
            What it leaves unset comes from the backbone's pretrained config, or from the data
            module at ``fit``; ``predict`` uses the result, which checkpoints store. Default None.
        **kwargs: BaseTask's arguments: ``metrics`` (MetricConfigs or dicts; ``task`` and
            ``num_classes``/``num_labels`` are filled in; default None: accuracy on val and
            test), ``logging_config``, ``optimizer`` (default ``"adamw"``), ``lr`` (default
            1e-3), ``weight_decay`` (default 1e-4), ``optimizer_kwargs``, ``scheduler`` (default
            ``"cosine"``), ``scheduler_kwargs``, ``freeze_backbone`` (train only the classifier
            head, a linear probe; the rest keeps its weights and BatchNorm statistics; default
            False), ``channels_last``, ``ema``, ``ema_decay`` (see BaseTask).

    Raises:
        ValueError: an unknown backbone, optimizer or scheduler (with close matches), a bad
            ``num_classes``, ``head_dropout``, ``label_smoothing``, ``class_weights``,
            ``mixup_*`` or ``data_config`` value, or an ``image_size`` that a fixed-size
            backbone cannot be resized to.
    """

    default_metrics = (
        MetricConfig(
            name="accuracy", metric_class="Accuracy", stages=["val", "test"], prog_bar=True
        ),
    )
    default_metric_task = "multiclass"
    export_task = "classification"
    takes_num_classes_from_data = True

    def __init__(
        self,
        backbone: str = "resnet50",
        num_classes: int | None = None,
        pretrained: bool = True,
        head_dropout: float = 0.0,
        label_smoothing: float = 0.0,
        multi_label: bool = False,
        class_weights: str | Sequence[float] | None = None,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        mixup_kwargs: dict[str, Any] | None = None,
        compile: bool | dict[str, Any] = False,
        backbone_kwargs: dict[str, Any] | None = None,
        class_names: Sequence[str] | None = None,
        image_size: int | None = None,
        data_config: DataConfig | Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        num_classes = resolve_num_classes("ImageClassifier", num_classes, class_names=class_names)
        if not 0.0 <= head_dropout < 1.0:
            raise ValueError(f"head_dropout must be in [0, 1), got {head_dropout!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        # Checked now (the values' form, and their count when num_classes is known).
        _check_class_weights(class_weights, num_classes)
        create_mixup(
            mixup_alpha, cutmix_alpha, num_classes or 2, label_smoothing, multi_label, mixup_kwargs
        )
        super().__init__(
            num_classes=num_classes,
            metric_task="multilabel" if multi_label else "multiclass",
            compile=compile,
            **kwargs,
        )
        self.save_task_hyperparameters()
        self.multi_label = bool(multi_label)
        self.label_smoothing = float(label_smoothing)
        self.class_weights = class_weights
        #: timm's Mixup for training batches (None: off, or until num_classes is known).
        self.mixup = None
        self.class_names = None if class_names is None else [str(c) for c in class_names]
        # Without num_classes the network is built headless (timm's num_classes=0: the pretrained
        # weights load the same) and gets timm's reset_classifier head from the data module's.
        self.backbone = create_backbone(
            backbone,
            pretrained=pretrained,
            num_classes=num_classes or 0,
            drop_rate=head_dropout,
            **(backbone_kwargs or {}),
        )
        built, fixed = _input_size_rule(self.backbone)
        cfg = self.init_data_config(
            image_size, data_config, default_image_size=built, fixed_size=fixed
        )
        if fixed and built is not None and cfg.image_size != built:
            self._resize_backbone(backbone, built, cfg.image_size)
        if self.freeze_backbone_at_start:
            self.freeze_backbone()
        if num_classes is not None:
            self.build_class_layers(num_classes, reset_head=False)
            self.apply_network_options()

    def build_class_layers(self, num_classes: int, reset_head: bool = True) -> None:
        """The parts that depend on ``num_classes``: the classifier head (timm's
        ``reset_classifier``, for a model created with ``num_classes=None``; a trainable one
        under ``freeze_backbone`` too), the loss weights and Mixup.

        Raises:
            ValueError: ``class_weights`` does not hold ``num_classes`` values.
        """
        if reset_head:
            self.backbone.reset_classifier(num_classes)
        hp = self.hparams
        weights = _check_class_weights(self.class_weights, num_classes)
        if weights is not None:
            # A buffer: moves with the model and is saved in checkpoints ("balanced" values too).
            self.register_buffer("loss_class_weights", weights)
        self.mixup = create_mixup(
            hp["mixup_alpha"],
            hp["cutmix_alpha"],
            num_classes,
            self.label_smoothing,
            self.multi_label,
            hp["mixup_kwargs"],
        )

    def _resize_backbone(self, name: str, built: int, size: int) -> None:
        # timm resamples the position embeddings (pretrained ones too) to the new grid.
        resize = getattr(self.backbone, "set_input_size", None)
        if resize is None:
            raise ValueError(
                f"backbone {name!r} is built for {built}x{built} inputs and cannot be resized to "
                f"image_size={size}: pass backbone_kwargs={{'img_size': {size}}} instead"
            )
        resize(img_size=(size, size))

    # ------------------------------------------------------------------ network
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` for images ``(N, 3, H, W)``: uint8 (normalized here with
        :attr:`data_config`'s mean and std) or floats that are normalized already."""
        self.require_num_classes()
        return self.backbone(self.prepare_images(images))

    def freeze_backbone(self) -> None:
        """Freeze the network except its classifier head (which stays trainable)."""
        super().freeze_backbone()
        for p in self.backbone.get_classifier().parameters():
            p.requires_grad = True

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax of the logits, or per-label sigmoid with ``multi_label``."""
        return logits.sigmoid() if self.multi_label else logits.softmax(dim=-1)

    # ------------------------------------------------------------------ class weights
    def adopt_class_counts(self, counts: ClassCounts) -> None:
        """With ``class_weights="balanced"``, set the loss weights from the training split's
        class counts (``DataContract`` calls this when a fit starts).

        Raises:
            ValueError: the counts are not one per class.
        """
        if self.class_weights != "balanced":
            return
        per_class = torch.as_tensor(counts.per_class, dtype=torch.float64)
        if per_class.numel() != self.num_classes:
            raise ValueError(
                f"class_weights='balanced' got {per_class.numel()} class counts for "
                f"num_classes={self.num_classes}"
            )
        n = float(counts.samples)
        if self.multi_label:  # BCE pos_weight: negatives per positive, per label
            weights = (n - per_class).clamp(min=1.0) / per_class.clamp(min=1.0)
        else:
            weights = n / (self.num_classes * per_class.clamp(min=1.0))
        self.loss_class_weights.copy_(weights.to(self.loss_class_weights))

    # ------------------------------------------------------------------ steps
    def _loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weights = getattr(self, "loss_class_weights", None)
        if not self.multi_label:
            # Mixed (soft) targets carry their label smoothing already.
            smoothing = 0.0 if target.is_floating_point() else self.label_smoothing
            return F.cross_entropy(logits, target, weight=weights, label_smoothing=smoothing)
        soft = target.float()
        if self.label_smoothing and self.mixup is None:
            soft = soft * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        if weights is not None and self.class_weights == "balanced":
            return F.binary_cross_entropy_with_logits(logits, soft, pos_weight=weights)
        return F.binary_cross_entropy_with_logits(logits, soft, weight=weights)

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
        if stage == "train" and self.mixup is not None:
            # Mixed after normalization (on the device), as timm's training script does.
            images, target = mix_batch(self.mixup, self.prepare_images(images), target)
        logits = self(images)
        loss = self._loss(logits, target)
        self.log_loss(stage, loss, batch_size=images.shape[0])
        if self.metric_manager.has(stage):
            if self.multi_label and not (stage == "train" and self.mixup is not None):
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

    # ------------------------------------------------------------------ export
    def export_module(self, image_size: int) -> nn.Module:
        """uint8 ``(B, 3, S, S)`` to ``probabilities (B, C)`` (see :meth:`BaseTask.export`)."""
        cfg = self.data_config
        return ClassifierExport(self.backbone, cfg.mean, cfg.std, self.multi_label)

    def export_output_names(self) -> list[str]:
        return ["probabilities"]

    def export_metadata(self, image_size: int) -> dict[str, Any]:
        """BaseTask's entries plus ``multi_label``; class names default to ``"0"``, ``"1"``..."""
        meta = super().export_metadata(image_size)
        meta["class_names"] = meta["class_names"] or [str(i) for i in range(self.num_classes)]
        meta["multi_label"] = self.multi_label
        return meta

    def export_reference(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        """The probabilities ``predict`` computes (``forward`` then softmax/sigmoid)."""
        probs = self.probabilities(self(images.to(self.device)))
        return {"probabilities": probs.float().cpu().numpy()}

    # ------------------------------------------------------------------ written predictions
    def prediction_records(self, prediction: dict, top_k: int = 5) -> list[dict[str, Any]]:
        """One JSON-ready record per image of a ``predict_step`` output, in :meth:`predict`'s
        form: ``{"predictions": [{"label", "index", "score"}, ...]}``, the top ``top_k``
        (default 5), or with ``multi_label`` every label scoring above 0.5. What
        ``autotimm predict --output_dir`` writes, one line per image."""
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        records = []
        for row in prediction["probs"].float():
            scores, indices = row.sort(descending=True)
            pairs = list(zip(scores.tolist(), indices.tolist()))
            pairs = [p for p in pairs if p[0] > 0.5] if self.multi_label else pairs[:top_k]
            records.append(
                {"predictions": [{"label": names[i], "index": i, "score": s} for s, i in pairs]}
            )
        return records

    def draw_prediction(self, image: torch.Tensor, record: dict[str, Any]) -> torch.Tensor:
        """``image`` (uint8 ``(3, H, W)``) with the labels of one :meth:`prediction_records`
        record drawn on it (what ``autotimm predict --draw`` saves)."""
        return render_classification(image, record["predictions"])

    # ------------------------------------------------------------------ prediction
    def eval_transform(self, normalize: bool = True) -> Any:
        """The evaluation transform of :attr:`data_config` (resize, center crop): a uint8
        ``(3, H, W)`` tensor in, a normalized float one out (uint8 with ``normalize=False``)."""
        return build_classification_transform(False, self.data_config, normalize=normalize)

    @torch.inference_mode()
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        top_k: int = 5,
        batch_size: int = 32,
        threshold: float | None = None,
    ) -> list[list[dict[str, Any]]]:
        """Top-k labels with their probabilities for each image, or with ``threshold`` (multi-label
        models) every label scoring at least ``threshold``.

        Images are read by ``autotimm_core.data.read_image`` and prepared as :attr:`data_config`
        says (the evaluation transform, then normalization on the model's device), as in
        training.

        Args:
            images: one image or a list: file paths, PIL images, uint8 or [0, 1] float tensors
                ``(C, H, W)``, or numpy arrays ``(H, W[, C])``.
            top_k: how many labels per image, highest probability first (capped at
                ``num_classes``). Default 5.
            batch_size: images per forward pass. Default 32.
            threshold: with ``multi_label``, return every label whose sigmoid score is at least
                this (in [0, 1]), highest first, instead of the top ``top_k``; an image may get
                none. A single-label model refuses it (its softmax scores compete: use
                ``top_k``). Default None: the top-k form.

        Returns:
            One list per image of ``{"label": name, "index": class index, "score": probability}``.

        Raises:
            ValueError: ``threshold`` on a model without ``multi_label``, or outside [0, 1].
        """
        self.require_num_classes()
        if threshold is not None:
            if not self.multi_label:
                raise ValueError(
                    "threshold applies to multi-label models (ImageClassifier(multi_label=True)); "
                    "this model is single-label: use top_k"
                )
            if isinstance(threshold, bool) or not 0.0 <= float(threshold) <= 1.0:
                raise ValueError(f"threshold must be a number in [0, 1], got {threshold!r}")
        if not isinstance(images, (list, tuple)):
            images = [images]
        # uint8 to the device (a quarter of the bytes); forward normalizes there.
        transform = self.eval_transform(normalize=False)
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        k = max(1, min(int(top_k), self.num_classes))
        was_training = self.training
        self.eval()
        results: list[list[dict[str, Any]]] = []
        try:
            for start in range(0, len(images), batch_size):
                chunk = [transform(read_image(x)) for x in images[start : start + batch_size]]
                probs = self.probabilities(self(torch.stack(chunk).to(self.device)))
                if threshold is not None:
                    # All labels sorted by score, cut at the threshold (a per-image length).
                    scores, indices = probs.float().sort(dim=-1, descending=True)
                    for s_row, i_row in zip(scores.tolist(), indices.tolist()):
                        results.append(
                            [
                                {"label": names[i], "index": i, "score": s}
                                for s, i in zip(s_row, i_row)
                                if s >= threshold
                            ]
                        )
                    continue
                scores, indices = probs.float().topk(k, dim=-1)
                for s_row, i_row in zip(scores.tolist(), indices.tolist()):
                    results.append(
                        [{"label": names[i], "index": i, "score": s} for s, i in zip(s_row, i_row)]
                    )
        finally:
            self.train(was_training)
        return results
