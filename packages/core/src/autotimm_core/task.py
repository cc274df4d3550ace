"""BaseTask: the LightningModule that every AutoTimm task builds on.

It owns what tasks share: the optimizer and scheduler (from the registries), freezing the
backbone, per-stage metrics, learning-rate and gradient-norm logging, and plain-data
hyperparameters so that ``load_from_checkpoint(path)`` rebuilds the model with no arguments.
Subclasses build ``self.backbone`` and their head, and implement the steps.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm

from autotimm_core.loggers import LoggingConfig
from autotimm_core.metrics import MetricConfig, MetricManager
from autotimm_core.optimizers import create_optimizer, list_optimizers
from autotimm_core.schedulers import create_scheduler, is_timm_scheduler, resolve_scheduler_name

_RNG_KEY = "autotimm_rng_states"


class BaseTask(pl.LightningModule):
    """Shared machinery of AutoTimm's task modules.

    Args:
        metrics: MetricConfigs (or their dicts) to track; ``None`` uses the task's defaults.
        logging_config: extra values to log (learning rate, gradient norm). Default: none.
        optimizer: optimizer name from ``list_optimizers()``. Default ``"adamw"``.
        lr: learning rate, also readable and writable as ``model.lr`` / ``model._lr``
            (what Lightning's LR finder sets). Default 1e-3.
        weight_decay: weight decay (never applied to biases and norm parameters). Default 1e-4.
        optimizer_kwargs: further optimizer arguments (``momentum``, ``betas``...).
        scheduler: scheduler name or alias from ``list_schedulers()``, or ``None``/``"none"``.
            Default ``"cosine"``.
        scheduler_kwargs: scheduler arguments; run-length defaults are filled in from the trainer.
        freeze_backbone: train without updating the backbone; its BatchNorm statistics stay fixed
            too. Setting ``requires_grad=True`` on its parameters later unfreezes it. Default False.
        num_classes: filled into metrics whose params leave ``num_classes``/``num_labels`` out.
        metric_task: ``task`` filled into torchmetrics wrappers (``"multiclass"``,
            ``"multilabel"``); default: the class attribute ``default_metric_task``.
    """

    #: Metrics used when ``metrics=None``; set by subclasses.
    default_metrics: Sequence[MetricConfig] = ()
    #: ``task`` filled into torchmetrics wrappers that take one (``"multiclass"``...).
    default_metric_task: str | None = None

    def __init__(
        self,
        *,
        metrics: Sequence[MetricConfig | dict[str, Any]] | None = None,
        logging_config: LoggingConfig | dict[str, Any] | None = None,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer_kwargs: dict[str, Any] | None = None,
        scheduler: str | None = "cosine",
        scheduler_kwargs: dict[str, Any] | None = None,
        freeze_backbone: bool = False,
        num_classes: int | None = None,
        metric_task: str | None = None,
    ) -> None:
        super().__init__()
        valid_opts = {n for names in list_optimizers().values() for n in names}
        if str(optimizer).lower().replace("_", "") not in valid_opts:
            # Delegate to the registry for the message with close matches.
            create_optimizer(str(optimizer), [nn.Parameter(torch.zeros(1))])
        if scheduler is not None and str(scheduler).lower() != "none":
            resolve_scheduler_name(scheduler)
        if not (isinstance(lr, (int, float)) and lr > 0):
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
        self.metric_manager = MetricManager(
            self.metric_configs, num_classes, metric_task or self.default_metric_task
        )
        self._scheduler_interval = "epoch"
        # This step's training loss terms by name, for AutoTrainer's non-finite loss check.
        self._train_loss_terms: dict[str, torch.Tensor] = {}

    # ----------------------------------------------------------------- hyperparameters
    def save_task_hyperparameters(self, ignore: Sequence[str] = ()) -> None:
        """``save_hyperparameters`` for the caller's ``__init__``, with configs stored as plain data.

        Checkpoints load with ``weights_only=True``, so MetricConfig/LoggingConfig objects are
        stored as dicts; the constructors accept both forms.
        """
        frame = inspect.currentframe().f_back
        self.save_hyperparameters(ignore=list(ignore), frame=frame)
        for store in (self._hparams, self._hparams_initial):
            if store.get("metrics") is not None:
                store["metrics"] = [MetricConfig.coerce(m).to_dict() for m in store["metrics"]]
            if store.get("logging_config") is not None:
                store["logging_config"] = LoggingConfig.coerce(store["logging_config"]).to_dict()

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
    def log_loss(self, stage: str, loss: torch.Tensor, batch_size: int, name: str = "loss") -> None:
        """Log a loss as ``{stage}/{name}``: per step and per epoch in training, per epoch otherwise.

        Training terms are also kept for the step, so that a NaN/inf loss is reported by name.
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
        for name, (value, prog_bar) in self.metric_manager.compute(stage).items():
            # Already synced across processes by torchmetrics' compute().
            self.log(name, value, prog_bar=prog_bar)

    def on_train_epoch_end(self) -> None:
        self._log_stage_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self._log_stage_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_stage_metrics("test")

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        states = checkpoint.get(_RNG_KEY)
        trainer = self._trainer
        if not states or trainer is None or trainer.state.fn != "fit":
            return  # only a resumed fit restores the generators, never a plain load
        torch.set_rng_state(states["torch"])
        kind, keys, *rest = states["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), *rest))
        random.setstate(states["python"])
