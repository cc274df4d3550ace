"""BaseTask: the LightningModule that every AutoTimm task builds on.

It owns what tasks share: the optimizer and scheduler (from the registries), freezing the
backbone, per-stage metrics, learning-rate and gradient-norm logging, and plain-data
hyperparameters so that ``load_from_checkpoint(path)`` rebuilds the model with no arguments.
Subclasses build ``self.backbone`` and their head, and implement the steps.
"""

from __future__ import annotations

import inspect
import os
import random
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from autotimm_core.data.config import DataConfig, resolve_data_config
from autotimm_core.data.contract import DataContract
from autotimm_core.data.letterbox import as_letterbox_config
from autotimm_core.data.normalize import normalize_images
from autotimm_core.ema import ModelEma
from autotimm_core.features import accepts_img_size, build_feature_backbone
from autotimm_core.loggers import LoggingConfig
from autotimm_core.metrics import CONFUSION_MATRIX, MetricConfig, MetricManager
from autotimm_core.optimizers import create_optimizer, resolve_optimizer_name
from autotimm_core.per_class import best_and_worst, per_class_values, report_confusion_matrix
from autotimm_core.schedulers import create_scheduler, is_timm_scheduler, resolve_scheduler_name
from autotimm_core.validation import check_num_classes

_RNG_KEY = "autotimm_rng_states"
#: Checkpoint key holding the task's import path (``module.Class``): what ``autotimm export
#: --ckpt_path`` rebuilds without a config (plain Lightning checkpoints do not record the class).
TASK_CLASS_KEY = "autotimm_task_class"


class BaseTask(pl.LightningModule):
    """Shared machinery of AutoTimm's task modules.

    Args:
        metrics: MetricConfigs (or their dicts) to track; ``None`` uses the task's defaults.
        logging_config: extra values to log (learning rate, gradient norm) and the confusion
            matrix of single-label classification (on by default). Default ``LoggingConfig()``.
        optimizer: optimizer name (any case), one of ``list_optimizers()``: torch's ``adadelta``,
            ``adafactor``, ``adagrad``, ``adam``, ``adamax``, ``adamw``, ``asgd``, ``nadam``,
            ``radam``, ``rmsprop``, ``rprop``, ``sgd``, or any of timm's (``lamb``, ``lars``,
            ``lion``, ``adabelief``, ``adan``, ``adopt``, ``madgrad``, ``muon``, ``novograd``,
            ``sgdp``, ``rmsproptf``... ``list_optimizers()["timm"]`` has them all). An unknown
            name is an error at construction, with close matches. Default ``"adamw"``.
        lr: learning rate, also readable and writable as ``model.lr`` / ``model._lr``
            (what Lightning's LR finder sets). Default None: the task's ``default_lr``
            (1e-3 unless a task says otherwise).
        weight_decay: weight decay (never applied to biases and norm parameters). Default 1e-4.
        optimizer_kwargs: further optimizer arguments (``momentum``, ``betas``...).
        scheduler: scheduler name or alias, one of ``list_schedulers()``: ``cosine``,
            ``cosine_restarts``, ``onecycle``, ``linear``, ``poly``, ``step``, ``multistep``,
            ``exponential``, ``plateau``, ``cyclic``, ``constantlr`` (and torch's class names such
            as ``cosineannealinglr``), timm's ``cosinelrscheduler``, ``tanhlrscheduler``,
            ``wsdlrscheduler``, ``steplrscheduler``, ``multisteplrscheduler``,
            ``polylrscheduler``; or ``None``/``"none"`` for a constant learning rate. An unknown
            name is an error at construction, with close matches. Default ``"cosine"``.
        scheduler_kwargs: scheduler arguments; run-length defaults are filled in from the trainer.
        freeze_backbone: train without updating the backbone; its BatchNorm statistics stay fixed
            too. Setting ``requires_grad=True`` on its parameters later unfreezes it. Default False.
        compile: ``torch.compile`` the task's networks in place (parameter names, so
            checkpoints, stay those of the plain model); a dict is passed as its arguments, e.g.
            ``{"mode": "max-autotune"}``. Default False.
        channels_last: keep the networks' weights and the images in channels-last memory
            format (faster convolutions on GPUs with tensor cores, and with bf16/fp16).
            Default False.
        ema: keep an exponential moving average of the weights (:class:`~autotimm_core.ema.
            ModelEma`: Lightning's weight averaging with timm's EMA warm-up); validation, the
            checkpoints (so the best one) and the model after ``fit`` (``test``, ``predict``)
            use the averaged weights, and a resumed fit restores both. Default False.
        ema_decay: the EMA decay once warmed up. Default 0.9998 (timm's).
        num_classes: filled into metrics whose params leave ``num_classes``/``num_labels`` out.
        metric_task: ``task`` filled into torchmetrics wrappers (``"multiclass"``,
            ``"multilabel"``); default: the class attribute ``default_metric_task``.
    """

    #: Metrics used when ``metrics=None``; set by subclasses.
    default_metrics: Sequence[MetricConfig] = ()
    #: ``task`` filled into torchmetrics wrappers that take one (``"multiclass"``...).
    default_metric_task: str | None = None
    #: Learning rate when ``lr`` is not given.
    default_lr: float = 1e-3

    def __init__(
        self,
        *,
        metrics: Sequence[MetricConfig | dict[str, Any]] | None = None,
        logging_config: LoggingConfig | dict[str, Any] | None = None,
        optimizer: str = "adamw",
        lr: float | None = None,
        weight_decay: float = 1e-4,
        optimizer_kwargs: dict[str, Any] | None = None,
        scheduler: str | None = "cosine",
        scheduler_kwargs: dict[str, Any] | None = None,
        freeze_backbone: bool = False,
        compile: bool | dict[str, Any] = False,
        channels_last: bool = False,
        ema: bool = False,
        ema_decay: float = 0.9998,
        num_classes: int | None = None,
        metric_task: str | None = None,
    ) -> None:
        super().__init__()
        if not isinstance(compile, (bool, dict)):
            raise ValueError(f"compile must be True, False or a dict of arguments, got {compile!r}")
        self.compile_options: dict[str, Any] | None = (
            (dict(compile) if isinstance(compile, dict) else {}) if compile else None
        )
        self.channels_last = bool(channels_last)
        #: The EMA callback's decay, None without ``ema``.
        self.ema_decay = ModelEma(ema_decay).decay if ema else None
        self._network_options_applied = False
        resolve_optimizer_name(str(optimizer))  # unknown or unsupported: the registry's message
        if scheduler is not None and str(scheduler).lower() != "none":
            resolve_scheduler_name(scheduler)
        lr = self.default_lr if lr is None else lr
        if not (isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0):
            raise ValueError(f"lr must be a positive number, got {lr!r}")
        self._lr = float(lr)
        self.optimizer_name = str(optimizer)
        self.weight_decay = float(weight_decay)
        self.optimizer_kwargs = dict(optimizer_kwargs or {})
        self.scheduler_name = (
            None if scheduler is None or str(scheduler).lower() == "none" else scheduler
        )
        self.scheduler_kwargs = dict(scheduler_kwargs or {})
        self.freeze_backbone_at_start = bool(freeze_backbone)
        self.logging_config = LoggingConfig.coerce(logging_config)
        configs = self.default_metrics if metrics is None else metrics
        self.metric_configs = [MetricConfig.coerce(m) for m in configs]
        self.metric_task = metric_task or self.default_metric_task
        #: The number of classes; None until the data module tells it when the task
        #: ``takes_num_classes_from_data`` (see :meth:`adopt_num_classes`).
        self.num_classes = num_classes
        # A task waiting for num_classes builds its metrics when it arrives (accuracy, mIoU
        # and the confusion matrix need it).
        self.metric_manager = (
            MetricManager([], None, self.metric_task)
            if self.num_classes_pending
            else self._create_metric_manager(num_classes)
        )
        self._scheduler_interval = "epoch"
        # This step's training loss terms by name, for AutoTrainer's non-finite loss check.
        self._train_loss_terms: dict[str, torch.Tensor] = {}
        # The last evaluation's per-class values, {stage: {metric: {class: value}}}.
        self._per_class: dict[str, dict[str, dict[str, float]]] = {}

    def _create_metric_manager(self, num_classes: int | None) -> MetricManager:
        # Single-label classification keeps a confusion matrix on val and test (written at
        # each epoch end by _log_stage_metrics); LoggingConfig(log_confusion_matrix=False) opts out.
        confusion = (
            ("val", "test")
            if self.logging_config.log_confusion_matrix
            and self.metric_task == "multiclass"
            and num_classes is not None
            else ()
        )
        return MetricManager(
            self.metric_configs, num_classes, self.metric_task, confusion_matrix=confusion
        )

    # ----------------------------------------------------------------- num_classes from data
    #: Whether the task can be created with ``num_classes=None`` and take the number from its
    #: data module when a stage starts (:meth:`adopt_num_classes`); such a task builds what
    #: depends on it in :meth:`build_class_layers`.
    takes_num_classes_from_data: bool = False

    @property
    def num_classes_pending(self) -> bool:
        """True while a task created with ``num_classes=None`` waits for its data module's."""
        return self.takes_num_classes_from_data and getattr(self, "num_classes", None) is None

    def adopt_num_classes(self, num_classes: int) -> None:
        """Finish a task created with ``num_classes=None``: build its class-dependent layers,
        metrics and loss weights for ``num_classes`` (the data module's, handed over by
        :class:`~autotimm_core.DataContract` when a stage starts, before the task's ``setup``,
        the optimizer and the move to the device). The value goes into the hyperparameters, so
        checkpoints and ``hparams.yaml`` hold it and ``load_from_checkpoint`` rebuilds the whole
        model. A task that has its ``num_classes`` already is left as it is.

        Raises:
            ValueError: ``num_classes`` is not a positive int.
        """
        if not self.num_classes_pending:
            return
        self.num_classes = check_num_classes(type(self).__name__, num_classes, optional=False)
        if "num_classes" in self.hparams:
            # Lightning's public way to change saved values (hparams and hparams_initial).
            self.save_hyperparameters({**self.hparams, "num_classes": num_classes})
        self.metric_manager = self._create_metric_manager(num_classes)
        self.build_class_layers(num_classes)
        self.apply_network_options()

    def build_class_layers(self, num_classes: int) -> None:
        """Build what depends on ``num_classes`` (a classifier head, loss weights...): a task
        with ``takes_num_classes_from_data`` implements it; :meth:`adopt_num_classes` calls it."""
        raise NotImplementedError(
            f"{type(self).__name__} sets takes_num_classes_from_data but has no build_class_layers"
        )

    def require_num_classes(self) -> None:
        """Raise the error that explains ``num_classes=None`` while it is still unknown (what a
        task's ``forward`` calls first: its class layers do not exist yet).

        Raises:
            ValueError: the task is still waiting for its data module's ``num_classes``.
        """
        if self.num_classes_pending:
            name = type(self).__name__
            raise ValueError(
                f"{name} was created with num_classes=None: it takes the number of classes "
                "from its data module when a stage starts (trainer.fit(model, datamodule=dm) "
                f"with a data module that has num_classes); pass {name}(num_classes=N) to use "
                "it without one"
            )

    # ----------------------------------------------------------------- hyperparameters
    def save_task_hyperparameters(self, ignore: Sequence[str] = ()) -> None:
        """``save_hyperparameters`` for the caller's ``__init__``, with configs stored as plain data.

        Checkpoints load with ``weights_only=True``, so MetricConfig/LoggingConfig objects are
        stored as dicts; the constructors accept both forms.
        """
        frame = inspect.currentframe().f_back
        self.save_hyperparameters(ignore=list(ignore), frame=frame)
        hparams = dict(self.hparams)
        plain: dict[str, Any] = {}
        if hparams.get("metrics") is not None:
            plain["metrics"] = [MetricConfig.coerce(m).to_dict() for m in hparams["metrics"]]
        if hparams.get("logging_config") is not None:
            plain["logging_config"] = LoggingConfig.coerce(hparams["logging_config"]).to_dict()
        if isinstance(hparams.get("data_config"), DataConfig):
            plain["data_config"] = hparams["data_config"].to_dict()
        if plain:
            # Lightning's public way to change saved values: a second call with a dict updates
            # ``hparams`` and copies it again into ``hparams_initial`` (what checkpoints store).
            self.save_hyperparameters({**hparams, **plain}, frame=frame)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, *args: Any, **kwargs: Any) -> Any:
        """Rebuild the model from a checkpoint with no arguments.

        Pretrained weights are not fetched again (the checkpoint holds the trained ones): a task
        with a ``pretrained`` argument is rebuilt with ``pretrained=False`` unless you pass it.
        """
        if "pretrained" in inspect.signature(cls.__init__).parameters:
            kwargs.setdefault("pretrained", False)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    # ----------------------------------------------------------------- learning rate
    @property
    def lr(self) -> float:
        """The learning rate the next ``configure_optimizers`` uses (same value as ``_lr``)."""
        return self._lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr = float(value)

    # ----------------------------------------------------------------- the data contract
    def init_data_config(
        self,
        image_size: int | None = None,
        data_config: DataConfig | Mapping[str, Any] | None = None,
        *,
        default_image_size: int | None = None,
        resize_mode: str = "crop",
        fixed_size: bool = False,
    ) -> DataConfig:
        """Resolve ``self.data_config`` from the task's arguments and ``self.backbone``.

        Called by a task's ``__init__`` once its backbone exists: explicit ``image_size`` and
        ``data_config`` entries > the backbone's pretrained config > ``default_image_size``
        (see :func:`~autotimm_core.data.resolve_data_config`).

        Args:
            image_size: the task's ``image_size`` argument. Default None.
            data_config: the task's ``data_config`` argument (a DataConfig, its dict form as a
                checkpoint stores it, or a dict of explicit values). Default None.
            default_image_size: the task's own default input side (detection's 640), used
                before the backbone's. Default None.
            resize_mode: the task's resize mode, ``"crop"`` or ``"letterbox"``. Default ``"crop"``.
            fixed_size: the backbone is built for ``image_size`` (ViT, Swin...). Default False.
        """
        self._data_config = resolve_data_config(
            getattr(self, "backbone", None),
            image_size=image_size,
            overrides=data_config,
            default_image_size=default_image_size,
            default_resize_mode=resize_mode,
            fixed_size=fixed_size,
        )
        return self._data_config

    def init_feature_backbone(
        self,
        backbone: str,
        pretrained: bool,
        image_size: int | None,
        data_config: DataConfig | Mapping[str, Any] | None,
        default_image_size: int,
        task: str = "this task",
    ) -> torch.nn.Module:
        """For dense tasks (letterboxed square inputs, a ``features_only`` backbone): build
        ``self.backbone`` and resolve ``self.data_config`` (:meth:`init_data_config`).

        The input side follows the data config's rule (explicit ``image_size`` or
        ``data_config`` entry > ``default_image_size``) and is known before the backbone, so
        a backbone built for a fixed size (ViT, Swin...) is built once, for it; the side is
        checked first, before any download.

        Args:
            backbone: timm model name.
            pretrained: load its pretrained weights.
            image_size: the task's ``image_size`` argument.
            data_config: the task's ``data_config`` argument.
            default_image_size: the task's default side (detection's 640, segmentation's 512).
            task: the task named in errors (``"detection"``). Default ``"this task"``.

        Returns:
            ``self.backbone``.
        """
        size = as_letterbox_config(
            resolve_data_config(
                image_size=image_size,
                overrides=data_config,
                default_image_size=default_image_size,
                default_resize_mode="letterbox",
            ),
            task,
        ).image_size
        self.backbone = build_feature_backbone(backbone, pretrained, size)
        self.init_data_config(
            image_size,
            data_config,
            default_image_size=default_image_size,
            resize_mode="letterbox",
            fixed_size=accepts_img_size(backbone),
        )
        return self.backbone

    @property
    def data_config(self) -> DataConfig:
        """How this model wants its images (size, mean/std, interpolation, resize): what its
        data module is given at ``fit``, and what ``predict`` and export prepare images with."""
        config = getattr(self, "_data_config", None)
        if config is None:
            raise AttributeError(
                f"{type(self).__name__}.data_config is not set: call self.init_data_config() "
                "in __init__ after building self.backbone"
            )
        return config

    @data_config.setter
    def data_config(self, config: DataConfig) -> None:
        if not isinstance(config, DataConfig):
            raise TypeError(f"data_config must be a DataConfig, got {type(config).__name__}")
        self._data_config = config
        # In the hyperparameters, so that a loaded checkpoint prepares images as training did.
        if "data_config" in self.hparams:
            self.hparams["data_config"] = config.to_dict()

    @property
    def image_size(self) -> int:
        """The input side of :attr:`data_config`."""
        return self.data_config.image_size

    def prepare_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 images to this model's normalized float input; float images pass unchanged
        (they are taken as normalized, which the data modules do on the device)."""
        cfg = self.data_config
        images = normalize_images(images, cfg.mean, cfg.std)
        if self.channels_last and images.ndim == 4:
            images = images.contiguous(memory_format=torch.channels_last)
        return images

    def adopt_labels(
        self, class_names: Sequence[str], category_ids: Sequence[int] | None = None
    ) -> None:
        """Take the data's label names (and category ids) when the model was built without them.

        Called by :class:`~autotimm_core.DataContract` when a stage starts; names given to the
        constructor always stay. They are stored in the hyperparameters, so ``predict`` on a
        loaded checkpoint names its classes.
        """
        if "class_names" in self.hparams and self.hparams["class_names"] is None:
            self.class_names = [str(c) for c in class_names]
            self.hparams["class_names"] = self.class_names
        if (
            category_ids is not None
            and "category_ids" in self.hparams
            and self.hparams["category_ids"] is None
        ):
            self.category_ids = [int(c) for c in category_ids]
            self.hparams["category_ids"] = self.category_ids

    def unsyncable_eval_metrics(self) -> dict[str, str]:
        """Metrics that cannot sync DDP ranks holding different numbers of evaluation samples,
        as ``{class name: what to use instead}``; the data module then keeps Lightning's
        padding sampler. Default: none (torchmetrics' tensor states sync any split)."""
        return {}

    def configure_callbacks(self) -> list[pl.Callback]:
        """:class:`~autotimm_core.DataContract`, which shares the data config and labels with
        the data module when a stage starts (under any Trainer), then with ``ema`` the
        :class:`~autotimm_core.ema.ModelEma` (after the contract, which may set weights such as
        balanced class weights that the average must start from)."""
        callbacks: list[pl.Callback] = [DataContract()]
        if self.ema_decay is not None:
            callbacks.append(ModelEma(self.ema_decay))
        return callbacks

    # ----------------------------------------------------------------- compile, channels_last
    def apply_network_options(self) -> None:
        """Apply ``channels_last`` and ``compile`` to the task's networks (its child modules
        other than the metrics), once. A task calls it at the end of ``__init__``, when its
        networks exist; ``setup`` calls it too, for tasks that do not."""
        if self._network_options_applied:
            return
        self._network_options_applied = True
        networks = [m for name, m in self.named_children() if name != "metric_manager"]
        for module in networks:
            if self.channels_last:
                module.to(memory_format=torch.channels_last)
            if self.compile_options is not None:
                # In place: parameter names, and so checkpoints, stay those of the plain model.
                module.compile(**self.compile_options)

    def setup(self, stage: str) -> None:
        # DataContract (a callback: its setup runs before this) has handed over the data
        # module's num_classes if there was one to hand over.
        self.require_num_classes()
        self.apply_network_options()

    # ----------------------------------------------------------------- freezing
    def freeze_backbone(self) -> None:
        """Stop training ``self.backbone``: no gradients, BatchNorm statistics fixed."""
        for p in self.backbone.parameters():
            p.requires_grad = False
        self._set_frozen_norms_eval()

    def unfreeze_backbone(self) -> None:
        """Train ``self.backbone`` again (takes effect at the next ``fit``)."""
        for p in self.backbone.parameters():
            p.requires_grad = True
        if self.training:
            self.backbone.train()

    def _set_frozen_norms_eval(self) -> None:
        backbone = getattr(self, "backbone", None)
        if backbone is None:
            return
        for m in backbone.modules():
            if isinstance(m, _BatchNorm):
                params = list(m.parameters(recurse=False))
                if params and not any(p.requires_grad for p in params):
                    m.eval()

    def train(self, mode: bool = True) -> BaseTask:
        # A BatchNorm whose parameters are frozen keeps its running statistics: it stays in eval.
        super().train(mode)
        if mode:
            self._set_frozen_norms_eval()
        return self

    # ----------------------------------------------------------------- optimization
    def configure_optimizers(self) -> Any:
        optimizer = create_optimizer(
            self.optimizer_name,
            self,
            lr=self._lr,
            weight_decay=self.weight_decay,
            **self.optimizer_kwargs,
        )
        if self.scheduler_name is None:
            return optimizer
        total_steps = total_epochs = None
        if self._trainer is not None:
            steps = self.trainer.estimated_stepping_batches
            total_steps = int(steps) if steps not in (None, float("inf")) else None
            epochs = self.trainer.max_epochs
            total_epochs = epochs if epochs is not None and epochs > 0 else None
        config = create_scheduler(
            self.scheduler_name,
            optimizer,
            total_steps=total_steps,
            total_epochs=total_epochs,
            **self.scheduler_kwargs,
        )
        self._scheduler_interval = config["interval"]
        return {"optimizer": optimizer, "lr_scheduler": config}

    def lr_scheduler_step(self, scheduler: Any, metric: Any) -> None:
        if is_timm_scheduler(scheduler):
            # timm schedulers are stepped with the epoch or update count, not without arguments.
            if self._scheduler_interval == "step":
                scheduler.step_update(num_updates=self.global_step)
            else:
                scheduler.step(epoch=self.current_epoch + 1, metric=metric)
        elif metric is None:
            scheduler.step()
        else:
            scheduler.step(metric)

    # ----------------------------------------------------------------- logging
    def training_loss_terms(self) -> dict[str, torch.Tensor]:
        """The named loss terms of the current training step, for a non-finite loss check.

        An optional hook any LightningModule may define; AutoTrainer's ``FiniteCheck`` calls it
        before ``backward`` and names the NaN/inf term in its error. Here: the terms logged with
        ``log_loss("train", ...)`` in this training step (by name: ``"loss"``,
        ``"loss_bbox_regression"``...), cleared at the start of every training batch.
        """
        return dict(self._train_loss_terms)

    def log_loss(self, stage: str, loss: torch.Tensor, batch_size: int, name: str = "loss") -> None:
        """Log a loss as ``{stage}/{name}``: per step and per epoch in training, per epoch otherwise.

        Training terms are also kept for the step (see :meth:`training_loss_terms`), so that a
        NaN/inf loss is reported by name.
        """
        if stage == "train":
            self._train_loss_terms[name] = loss.detach()
        self.log(
            f"{stage}/{name}",
            loss.detach(),
            on_step=stage == "train",
            on_epoch=True,
            prog_bar=name == "loss",
            batch_size=batch_size,
            sync_dist=stage != "train",
        )

    def _log_stage_metrics(self, stage: str) -> None:
        class_names = getattr(self, "class_names", None)
        results = self.metric_manager.compute_all(stage, class_names)
        for name, (value, prog_bar) in results.scalars.items():
            # Already synced across processes by torchmetrics' compute().
            self.log(name, value, prog_bar=prog_bar)
        trainer = self._trainer
        if trainer is None or not trainer.sanity_checking:
            cm = results.matrices.get(CONFUSION_MATRIX)
            found = per_class_values(results.scalars, stage, cm, class_names)
            if found:
                self._per_class[stage] = found
        if results.matrices:
            self._write_matrices(stage, results.matrices, class_names)

    def per_class_summary(self, stage: str = "val", k: int = 3) -> str | None:
        """The worst and best classes of the last ``stage`` evaluation, e.g.
        ``"val recall per class: worst cat 0.41, ...; best ..."``; None if it had no
        per-class values.

        The metric is the first per-class metric the model logs (``F1Score(average=None)``,
        mAP with ``class_metrics=True``), else each class's recall from the confusion matrix.
        AutoTrainer prints it at the end of ``fit``.

        Args:
            stage: ``"val"`` or ``"test"``. Default ``"val"``.
            k: how many worst and best classes to name. Default 3.
        """
        found = self._per_class.get(stage)
        if not found:
            return None
        metric = next((m for m in found if m != "recall"), "recall")
        return f"{stage} {metric} per class: {best_and_worst(found[metric], k)}"

    def _write_matrices(
        self, stage: str, matrices: dict[str, torch.Tensor], class_names: Any
    ) -> None:
        """Write the stage's square matrices (confusion matrices) as PNG (+ per-class CSV) into
        ``trainer.log_dir`` and send them to the loggers; not during the sanity check or a
        ``fast_dev_run`` (which writes no logs)."""
        trainer = self._trainer
        if trainer is None or trainer.sanity_checking or trainer.fast_dev_run:
            return
        square = {k: m for k, m in matrices.items() if m.ndim == 2 and m.shape[0] == m.shape[1]}
        if not square:
            return
        # log_dir broadcasts from rank 0 under DDP: every rank asks, rank 0 alone writes.
        log_dir = trainer.log_dir or trainer.default_root_dir
        if not trainer.is_global_zero:
            return
        for name, matrix in square.items():
            report_confusion_matrix(trainer, stage, matrix, class_names, log_dir, name=name)

    def on_train_epoch_end(self) -> None:
        self._log_stage_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_stage_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_stage_metrics("test")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # Only this step's terms are reported by training_loss_terms() (a subclass overriding
        # this hook calls super()).
        self._train_loss_terms.clear()
        cfg = self.logging_config
        if (
            cfg.log_learning_rate
            and self.global_step % cfg.log_every_n_steps == 0
            and self.trainer.optimizers
        ):
            lr = self.trainer.optimizers[0].param_groups[0]["lr"]
            self.log("train/lr", float(lr), on_step=True, on_epoch=False, batch_size=1)

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        cfg = self.logging_config
        if cfg.log_gradient_norm and self.global_step % cfg.log_every_n_steps == 0:
            grads = [p.grad.detach() for p in self.parameters() if p.grad is not None]
            if grads:
                norm = torch.linalg.vector_norm(
                    torch.stack([torch.linalg.vector_norm(g) for g in grads])
                )
                self.log("train/grad_norm", norm, on_step=True, on_epoch=False, batch_size=1)

    # ----------------------------------------------------------------- export
    #: The task's name in exported files' metadata (``"classification"``, ``"detection"``...);
    #: a task that supports export sets it.
    export_task: str | None = None

    def export(
        self,
        path: str | os.PathLike,
        image_size: int | None = None,
        batch_size: int | None = None,
        opset: int | None = None,
        check: bool = True,
        example_input: torch.Tensor | None = None,
    ) -> Path:
        """Write the whole inference pipeline to a file another runtime can run.

        The graph takes uint8 images ``(B, 3, S, S)`` (already resized as :attr:`data_config`
        says: ``autotimm_runtime`` does that part) and returns the task's final outputs
        (:meth:`export_output_names`), normalization and post-processing inside. Everything a
        runtime needs (task, labels, input size, resize mode, thresholds, version) is stored in
        the file's metadata.

        Args:
            path: the file to write; its suffix picks the format: ``.onnx`` (ONNX, needs the
                ``autotimm-core[export]`` extra) or ``.pt2`` (``torch.export``'s
                ExportedProgram). TorchScript (``.pt``/``.ts``) is refused: torch 2.14
                deprecates ``torch.jit``.
            image_size: the input side of the graph. Default None: :attr:`image_size`.
            batch_size: a fixed batch size. Default None: any batch size.
            opset: ONNX opset. Default None: torch.onnx's default.
            check: run the written file (onnxruntime for ONNX) on sample images and compare it
                with this model (:meth:`compare_export_outputs`). Default True.
            example_input: uint8 images ``(B, 3, S, S)`` to trace and check with. Default None:
                seeded random images.

        Returns:
            The path written.

        Raises:
            ValueError: an unknown suffix (the valid ones are listed), a bad argument, or a
                task created with ``num_classes=None`` that has not been fitted yet.
            ImportError: ONNX export without the ``export`` extra (the command is given).
            ExportParityError: the check failed (it names the output and the difference).
        """
        from autotimm_core.export import export_model

        self.require_num_classes()
        return export_model(self, path, image_size, batch_size, opset, check, example_input)

    def export_module(self, image_size: int) -> torch.nn.Module:
        """Hook: the module to export for inputs of side ``image_size``: uint8 ``(B, 3, S, S)`` in, a tuple of final outputs
        (named by :meth:`export_output_names`) out. A new task implements it, with
        :meth:`export_output_names` and :meth:`export_metadata`, and gets export (ONNX and
        ``.pt2``), the parity check and the command line's ``autotimm export``."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement export: define export_module(), "
            "export_output_names() and export_metadata() (see BaseTask)"
        )

    def export_output_names(self) -> list[str]:
        """Hook: the names of :meth:`export_module`'s outputs, in order."""
        raise NotImplementedError(f"{type(self).__name__} does not define export_output_names()")

    def export_metadata(self, image_size: int) -> dict[str, Any]:
        """Hook: what a runtime needs to know, as JSON data; tasks extend it (``super()``).

        Here: the task name (:attr:`export_task`), the class names and the preprocessing of
        :attr:`data_config` at ``image_size`` (input size, resize mode, interpolation,
        crop_pct, mean, std).
        """
        from autotimm_core.export.metadata import data_config_metadata

        if not self.export_task:
            raise NotImplementedError(f"{type(self).__name__} does not set export_task")
        names = getattr(self, "class_names", None)
        return {
            "task": self.export_task,
            "class_names": None if names is None else [str(n) for n in names],
            **data_config_metadata(self.data_config, image_size),
        }

    def export_reference(self, images: torch.Tensor) -> dict[str, np.ndarray]:
        """Hook: this model's own outputs for uint8 ``images``, by output name, that the
        exported file must reproduce. Default: :meth:`export_module` run eagerly; tasks give
        their usual inference path instead (``predict``'s computation)."""
        outputs = self.export_module(int(images.shape[-1])).eval()(images.to(self.device))
        return {n: o.detach().cpu().numpy() for n, o in zip(self.export_output_names(), outputs)}

    def compare_export_outputs(
        self,
        reference: dict[str, np.ndarray],
        exported: dict[str, np.ndarray],
        rtol: float = 0.0,
        atol: float = 1e-4,
    ) -> None:
        """Hook: raise :class:`~autotimm_core.export.ExportParityError` when ``exported``
        differs from ``reference``. Default: every output within ``atol + rtol * |ref|``."""
        from autotimm_core.export.parity import compare_arrays

        compare_arrays(reference, exported, rtol=rtol, atol=atol)

    # ----------------------------------------------------------------- exact resume
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Lightning restores loops and optimizers but not the random generators; storing them
        # makes a resumed run draw the same shuffles, augmentations and dropout masks.
        np_state = np.random.get_state()
        checkpoint[_RNG_KEY] = {
            "torch": torch.get_rng_state(),
            "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
            "python": random.getstate(),
        }
        checkpoint[TASK_CLASS_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get(_RNG_KEY)
        trainer = self._trainer
        if not states or trainer is None or trainer.state.fn != "fit":
            return  # only a resumed fit restores the generators, never a plain load
        torch.set_rng_state(states["torch"])
        kind, keys, *rest = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
        random.setstate(states["python"])
