"""AutoTrainer: a PyTorch Lightning Trainer with checkpointing, loggers and auto-tuning set up."""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
from pytorch_lightning.callbacks import (
    Callback,
    DeviceStatsMonitor,
    LearningRateMonitor,
    ModelCheckpoint,
    ProgressBar,
    RichProgressBar,
)
from pytorch_lightning.loggers import Logger

# Lightning's own list of precision values, so that the command line lists and checks them.
from pytorch_lightning.trainer.connectors.accelerator_connector import _PRECISION_INPUT

from autotimm_core import LoggerConfig, LoggerManager
from autotimm_core.monitor import monitor_mode
from autotimm_trainer import _log, ddp
from autotimm_trainer.callbacks import FiniteCheck, InterruptCheckpoint, MonitorCheck, RunStats
from autotimm_trainer.memory import HostMemoryGuard
from autotimm_trainer.predictions import PredictionWriter
from autotimm_trainer.results import RunResults, print_results_table
from autotimm_trainer.run_dir import (
    check_ckpt_path,
    find_last_checkpoint,
    fresh_dir,
    new_run_dir,
    next_version_dir,
)
from autotimm_trainer.tuning import (
    TunerConfig,
    apply_tuning_results,
    check_tunable,
    describe_results,
    run_tuning,
)

# Callbacks that raise without a logger: AutoTrainer adds a CSV logger for them.
_NEEDS_LOGGER = (LearningRateMonitor, DeviceStatsMonitor)
_CHECKPOINT_MODES = ("max", "min")


class AutoTrainer(pl.Trainer):
    """A ``pytorch_lightning.Trainer`` with AutoTimm's defaults.

    On top of ``pl.Trainer`` it saves checkpoints into a fresh folder per run, builds loggers
    from ``LoggerConfig``, tunes the batch size and learning rate before training when asked,
    seeds everything, and ends ``fit`` with a one-line summary. It works with any
    ``LightningModule``; every other ``pl.Trainer`` argument is passed through.

    Args:
        max_epochs: training epochs. Default 10.
        accelerator: ``"auto"``, ``"cpu"``, ``"gpu"``, ``"tpu"``, ``"mps"``... Default ``"auto"``.
        devices: number of devices, a list of indices, or ``"auto"``. Default ``"auto"``.
        precision: ``32``, ``16``, ``64``, ``"bf16-mixed"``, ``"16-mixed"``, ``"bf16-true"``...
            Default 32.
        logger: ``True`` (CSV, and TensorBoard too when it is installed), ``False`` (no logs:
            no metrics files, no ``results.csv``), a ``LoggerManager``, a list of
            ``LoggerConfig`` (or their dicts) and/or Lightning ``Logger`` objects, or one of them.
            CSV and TensorBoard loggers from ``LoggerConfig`` whose ``params`` name no
            ``save_dir``, ``name`` or ``version`` write into the run folder itself (a new one for
            each ``fit``); with any of those given they write where they say. Default True.
        tuner_config: a ``TunerConfig`` (or its dict): what ``fit`` tunes first. Default None.
        checkpoint_monitor: metric for the best checkpoint (``"val/accuracy"``). With it, the
            best checkpoint and ``last.ckpt`` are kept; without it, the last epoch. Default None.
        checkpoint_mode: ``"max"`` or ``"min"``: whether a higher monitored value is better.
            Default None: follows the monitored name (``autotimm_core.monitor.monitor_mode``:
            ``"min"`` for a loss- or error-like name such as ``"val/loss"``, else ``"max"``), as
            the schedulers do; the run summary says which. An explicit value always wins.
        callbacks: Lightning callbacks, added to AutoTrainer's own. Default None.
        default_root_dir: where run folders go. Default ``"."``.
        name: the run folder's name under ``default_root_dir`` (``name_1``, ``name_2``... when
            it already holds files). Default None: ``version_N``, a new N for each ``fit``.
        gradient_clip_val: clip gradients to this norm (``gradient_clip_algorithm`` passes
            through). Default None.
        accumulate_grad_batches: batches per optimizer step. Default 1.
        val_check_interval: validate every fraction of an epoch (float) or every N training
            batches (int). Default 1.0.
        enable_checkpointing: save checkpoints. Default True.
        fast_dev_run: ``True`` runs 1 batch of train/val/test, an int N runs N batches; no
            checkpoints, logs or tuning. Default False.
        seed: if given, ``seed_everything(seed, workers=True)`` when the trainer is created
            (create it before the model for a reproducible initialization). Default None.
        check_finite_loss: stop with an error naming the step and the loss term when a training
            loss becomes NaN or infinite (before it updates any weight). ``False`` warns once and
            trains on. Either way a checkpoint of non-finite weights is never written. Default
            True.
        **kwargs: any other ``pl.Trainer`` argument (``strategy``, ``num_nodes``,
            ``limit_train_batches``, ``deterministic``...).

    Each ``fit`` gets one flat run folder, ``default_root_dir/version_N`` (a new N each time, or
    ``name``), so an earlier run's files are never overwritten. It holds ``checkpoints/``, the
    CSV logger's ``metrics.csv``, TensorBoard's event file, ``hparams.yaml``, the command line's
    ``config.yaml``, and, written at the end of ``fit``, ``results.csv`` (one row per epoch:
    losses, metrics, learning rate, time) and ``results.png`` (their curves; needs matplotlib),
    next to what the model writes there (``confusion_matrix_val.png``...) and the tuner's
    ``lr_find.png``. A Lightning ``Logger`` object passed in keeps its own folder, and the run
    folder is then the first logger's ``log_dir``.

    Reliability (see ``autotimm_trainer.callbacks``): on SIGTERM the run saves
    ``interrupted.ckpt`` next to its checkpoints, logs the path to resume from and exits;
    ``fit(ckpt_path="last")`` resumes from the newest checkpoint under ``default_root_dir``
    (``last.ckpt``, the latest epoch or ``interrupted.ckpt``), also from a new process.
    """

    def __init__(
        self,
        max_epochs: int | None = 10,
        accelerator: str = "auto",
        devices: list[int] | str | int = "auto",
        precision: _PRECISION_INPUT | None = 32,
        logger: bool | Logger | LoggerManager | Sequence[Logger | LoggerConfig] | None = True,
        tuner_config: TunerConfig | None = None,
        checkpoint_monitor: str | None = None,
        checkpoint_mode: Literal["max", "min"] | None = None,
        callbacks: list[Callback] | Callback | None = None,
        default_root_dir: str | Path = ".",
        name: str | None = None,
        gradient_clip_val: int | float | None = None,
        accumulate_grad_batches: int = 1,
        val_check_interval: int | float | None = 1.0,
        enable_checkpointing: bool = True,
        fast_dev_run: int | bool = False,
        seed: int | None = None,
        check_finite_loss: bool = True,
        **kwargs: Any,
    ) -> None:
        if checkpoint_mode is not None and checkpoint_mode not in _CHECKPOINT_MODES:
            raise ValueError(
                f"checkpoint_mode must be 'max' or 'min', got {checkpoint_mode!r} (or leave it "
                "out to follow the monitored name: 'min' for a loss or error, else 'max')"
            )
        if checkpoint_monitor is not None and not enable_checkpointing:
            raise ValueError(
                f"checkpoint_monitor={checkpoint_monitor!r} needs enable_checkpointing=True"
            )
        self.tuner_config = TunerConfig.coerce(tuner_config)
        if seed is not None:
            pl.seed_everything(seed, workers=True)
        self.seed = seed
        root = str(default_root_dir)

        # One rule for "is higher better", shared with the schedulers: the monitored name.
        self._checkpoint_mode_given = checkpoint_mode is not None
        resolved_mode = checkpoint_mode or (
            monitor_mode(checkpoint_monitor) if checkpoint_monitor is not None else "max"
        )

        callbacks = list([callbacks] if isinstance(callbacks, Callback) else callbacks or [])
        user_ckpt = [cb for cb in callbacks if isinstance(cb, ModelCheckpoint)]
        if user_ckpt and checkpoint_monitor is not None:
            raise ValueError(
                "Pass either checkpoint_monitor or your own ModelCheckpoint in callbacks, not both"
            )
        self._auto_checkpoint: ModelCheckpoint | None = None
        if enable_checkpointing and not user_ckpt:
            self._auto_checkpoint = _make_checkpoint(checkpoint_monitor, resolved_mode)
            if fast_dev_run:  # Lightning skips checkpoints then, except save_last at train end
                self._auto_checkpoint.save_last = False
            callbacks.append(self._auto_checkpoint)
        if checkpoint_monitor is not None:
            callbacks.append(MonitorCheck(checkpoint_monitor))
        self._run_stats = RunStats()
        callbacks.append(self._run_stats)
        self._run_results = RunResults()
        callbacks.append(self._run_results)
        callbacks.append(FiniteCheck(check_loss=check_finite_loss))
        if enable_checkpointing:
            callbacks.append(InterruptCheckpoint())

        if name is not None and (not isinstance(name, str) or not name or "/" in name):
            raise ValueError(f"name must be a folder name (no '/'), got {name!r}")
        self.run_name = name
        # Lightning's bar stays the default; with Rich installed, Rich's bar (and a Rich table
        # at the end of fit) unless a progress bar is given or turned off.
        self._rich = (
            kwargs.get("enable_progress_bar", True) is not False
            and importlib.util.find_spec("rich") is not None
            and not any(isinstance(cb, ProgressBar) for cb in callbacks)
        )
        if self._rich:
            callbacks.append(RichProgressBar())
        loggers, self._placed = _build_loggers(logger, root)
        needy = [type(cb).__name__ for cb in callbacks if isinstance(cb, _NEEDS_LOGGER)]
        if needy and loggers is False:
            loggers, self._placed = _build_loggers([LoggerConfig(backend="csv")], root)
            _log.info(
                f"{', '.join(needy)} needs a logger and logger=False: logging to CSV in the run "
                "folder (pass logger=... to choose another)."
            )
        if self._placed and loggers is not False:
            # Placeholders until fit picks the run folder (nothing is written before).
            loggers = _place(loggers, self._placed, next_version_dir(root, name))

        self.checkpoint_monitor = checkpoint_monitor
        #: ``"max"`` or ``"min"``: the given ``checkpoint_mode``, or the one the name implies.
        self.checkpoint_mode = resolved_mode
        self._precision_arg = precision
        self._accelerator_arg = accelerator
        self.tuning_results: dict[str, Any] | None = None
        self._run_dir: Path | None = None
        try:
            super().__init__(
                max_epochs=max_epochs,
                accelerator=accelerator,
                devices=devices,
                precision=precision,
                logger=loggers,
                callbacks=callbacks,
                default_root_dir=root,
                gradient_clip_val=gradient_clip_val,
                accumulate_grad_batches=accumulate_grad_batches,
                val_check_interval=val_check_interval,
                enable_checkpointing=enable_checkpointing,
                fast_dev_run=fast_dev_run,
                **kwargs,
            )
        except ValueError as err:
            # Lightning validates the precision itself and lists the values it accepts; the
            # message only gains the argument's name (no private list of precisions to drift).
            if "precision" in str(err).lower():
                raise ValueError(f"precision={precision!r}: {err}") from err
            raise

    # ----------------------------------------------------------------- results
    @property
    def best_model_path(self) -> str | None:
        """Path of the best checkpoint (the last one without a monitor); None before any save."""
        cb = self.checkpoint_callback
        return (cb.best_model_path or None) if isinstance(cb, ModelCheckpoint) else None

    @property
    def best_model_score(self) -> float | None:
        """The monitored value of the best checkpoint; None without a monitor or before a save."""
        cb = self.checkpoint_callback
        score = cb.best_model_score if isinstance(cb, ModelCheckpoint) else None
        return None if score is None else float(score)

    @property
    def run_dir(self) -> Path | None:
        """The folder of the current (or last) ``fit``: checkpoints, LR-finder plot, config."""
        return self._run_dir

    @property
    def log_dir(self) -> str | None:
        # Without a logger Lightning answers default_root_dir, shared by every run; the run
        # folder keeps what is written there (LightningCLI's config.yaml) apart per run.
        if not self.loggers and self._run_dir is not None:
            return str(self._run_dir)
        return super().log_dir

    # ----------------------------------------------------------------- entry points
    def fit(
        self,
        model: pl.LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: pl.LightningDataModule | None = None,
        ckpt_path: str | Path | None = None,
        weights_only: bool | None = None,
    ) -> None:
        """``pl.Trainer.fit``, after tuning (if ``tuner_config`` asks) and with a summary at the end."""
        check_ckpt_path(ckpt_path)
        if isinstance(train_dataloaders, pl.LightningDataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        # In a DDP worker: the run folder and tuning results of the launcher's fit.
        inherited = ddp.take(self.default_root_dir, self.world_size)
        if ckpt_path == "last":
            # Each fit checkpoints into a fresh folder, where Lightning's own "last" finds
            # nothing: resolve it to the newest checkpoint of the earlier runs here.
            previous_dir = self._auto_checkpoint.dirpath if self._auto_checkpoint else None
            ckpt_path = find_last_checkpoint(self.default_root_dir, [previous_dir]) or "last"
        if inherited:
            self._run_dir = Path(inherited.run_dir)
            self._bind_loggers(self._run_dir)
        else:
            self._run_dir = self._new_run_dir()
        if self._auto_checkpoint is not None:
            self._auto_checkpoint.dirpath = str(fresh_dir(self._run_dir / "checkpoints"))

        config = self.tuner_config
        if inherited:
            self.tuning_results = inherited.tuning
            apply_tuning_results(self.tuning_results, model, datamodule, config)
        elif config is not None and config.enabled:
            if self.fast_dev_run:
                _log.info("fast_dev_run is set: skipping auto-tuning.")
            else:
                self._check_can_tune_here()
                self.tuning_results = self._tune(
                    config, model, datamodule, train_dataloaders, val_dataloaders
                )

        state = ddp.FitState(run_dir=str(self._run_dir), tuning=self.tuning_results)
        # Lightning's DDP launcher starts the workers inside super().fit(): they inherit it.
        with ddp.published(state, self.default_root_dir, self.world_size):
            super().fit(
                model,
                train_dataloaders=train_dataloaders,
                val_dataloaders=val_dataloaders,
                datamodule=datamodule,
                ckpt_path=ckpt_path,
                weights_only=weights_only,
            )
        if self.state.status == "finished" and self._run_stats.started:
            _log.info(self.summary())
            if self._rich and self.is_global_zero and self._run_results.rows:
                print_results_table(self._run_results.rows[-1], self.best_model_path)

    def validate(self, model: pl.LightningModule | None = None, dataloaders: Any = None, ckpt_path: str | Path | None = None, verbose: bool = True, datamodule: pl.LightningDataModule | None = None, weights_only: bool | None = None) -> Any:  # fmt: skip
        """``pl.Trainer.validate``, with ``ckpt_path`` checked first."""
        check_ckpt_path(ckpt_path)
        self._ensure_run_dir()
        return super().validate(model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def test(self, model: pl.LightningModule | None = None, dataloaders: Any = None, ckpt_path: str | Path | None = None, verbose: bool = True, datamodule: pl.LightningDataModule | None = None, weights_only: bool | None = None) -> Any:  # fmt: skip
        """``pl.Trainer.test``, with ``ckpt_path`` checked first."""
        check_ckpt_path(ckpt_path)
        self._ensure_run_dir()
        return super().test(model, dataloaders, ckpt_path, verbose, datamodule, weights_only)

    def predict(self, model: pl.LightningModule | None = None, dataloaders: Any = None, datamodule: pl.LightningDataModule | None = None, return_predictions: bool | None = None, ckpt_path: str | Path | None = None, weights_only: bool | None = None, output_dir: str | Path | None = None, draw: bool = False) -> Any:  # fmt: skip
        """``pl.Trainer.predict``, with ``ckpt_path`` checked first; with ``output_dir``, the
        predictions are also written there as ``predictions.jsonl`` (one line per input; with
        ``draw``, one PNG per input too), see ``autotimm_trainer.predictions``."""
        check_ckpt_path(ckpt_path)
        if draw and output_dir is None:
            raise ValueError("draw=True needs output_dir (the folder for the drawn images)")
        self._ensure_run_dir()
        writer = PredictionWriter(output_dir, draw=draw) if output_dir is not None else None
        if writer is not None:
            self.callbacks.append(writer)
        try:
            return super().predict(
                model, dataloaders, datamodule, return_predictions, ckpt_path, weights_only
            )
        finally:
            if writer is not None:
                self.callbacks.remove(writer)
                if writer.path is not None:
                    _log.info(f"Predictions written to {writer.path}")

    def tune(
        self,
        model: pl.LightningModule,
        train_dataloaders: Any = None,
        val_dataloaders: Any = None,
        datamodule: pl.LightningDataModule | None = None,
    ) -> dict[str, Any]:
        """Run only the tuner and return (and print) its suggestions; trains nothing.

        Uses ``tuner_config``; without one, tunes the learning rate, and the batch size when the
        datamodule or model has a ``batch_size``. The results are applied to the model and
        datamodule as ``fit`` would, and kept on ``tuning_results``.
        """
        if isinstance(train_dataloaders, pl.LightningDataModule):
            datamodule, train_dataloaders = train_dataloaders, None
        config = self.tuner_config
        if config is None or not config.enabled:
            has_bs = hasattr(datamodule, "batch_size") or hasattr(model, "batch_size")
            config = TunerConfig(auto_lr=True, auto_batch_size=has_bs)
        self._check_can_tune_here()
        self._run_dir = self._new_run_dir()
        self.tuning_results = self._tune(
            config, model, datamodule, train_dataloaders, val_dataloaders
        )
        return self.tuning_results

    # ----------------------------------------------------------------- summary
    def summary(self) -> str:
        """About the last ``fit``: a line with best checkpoint, score, epochs, time and
        images/s, and a second naming the worst and best classes of the last validation when
        the model keeps per-class values (see ``BaseTask.per_class_summary``)."""
        stats = self._run_stats
        epochs = stats.epochs
        parts = [
            f"AutoTrainer: {epochs} epoch{'s' if epochs != 1 else ''}"
            + (
                f" (epochs {stats.first_epoch + 1}-{stats.first_epoch + epochs})"
                if stats.first_epoch
                else ""
            )
            + f" in {stats.fit_seconds:.1f} s"
        ]
        ips = stats.images_per_sec(self.world_size)
        if ips is not None:
            parts.append(f"{ips:,.0f} images/s")
        if self.best_model_path:
            best = f"best checkpoint {self.best_model_path}"
            if self.best_model_score is not None:
                how = "" if self._checkpoint_mode_given else " from the name"
                best += (
                    f" ({self.checkpoint_monitor}={self.best_model_score:.4g}, "
                    f"mode={self.checkpoint_mode}{how})"
                )
            parts.append(best)
        if self._run_dir is not None and self.loggers:
            parts.append(f"results in {self._run_dir}")
        line = ", ".join(parts)
        # The last validation's worst and best classes, from models that keep per-class values.
        per_class = getattr(self.lightning_module, "per_class_summary", None)
        classes = per_class("val") if callable(per_class) else None
        return f"{line}\n{classes} (last validation)" if classes else line

    # ----------------------------------------------------------------- internals
    def _ensure_run_dir(self) -> None:
        # After a fit, evaluation belongs to that run; alone, it gets a folder of its own
        # (created only if something, e.g. LightningCLI's config copy, is written there).
        if self._run_dir is None:
            self._run_dir = self._new_run_dir()

    def _new_run_dir(self) -> Path:
        # fast_dev_run: Lightning has swapped the loggers for a dummy that writes nothing.
        if self._placed and not self.fast_dev_run:
            folder = next_version_dir(self.default_root_dir, self.run_name)
            self._bind_loggers(folder)
            if 0 in self._placed:
                return folder
        return new_run_dir(self.default_root_dir, self.loggers, self.run_name)

    def _bind_loggers(self, folder: Path) -> None:
        # The loggers the trainer places write into this run's folder: rebuilt for each run,
        # since a Lightning logger's folder is fixed once it has one.
        if self._placed and not self.fast_dev_run:
            self.loggers = _place(list(self.loggers), self._placed, folder)

    def _check_can_tune_here(self) -> None:
        env = getattr(self.strategy, "cluster_environment", None)
        if self.world_size > 1 and env is not None and env.creates_processes_externally:
            raise RuntimeError(
                "Auto-tuning cannot run here: this process is one of several started by a "
                "launcher (torchrun, SLURM, or an earlier DDP fit in this script), and tuning "
                "needs a single process before the workers start. Tune first with "
                "`autotimm tune --config FILE.yaml` (or AutoTrainer(devices=1, tuner_config=...)"
                ".tune(model, datamodule=...)), put the suggested lr and batch_size in your "
                "config, and train without tuner_config."
            )

    def _tune(
        self,
        config: TunerConfig,
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule | None,
        train_dataloaders: Any,
        val_dataloaders: Any,
    ) -> dict[str, Any]:
        check_tunable(config, model, datamodule)
        device = self._single_device()
        # On CPU nothing catches an out-of-memory batch size: the guard bounds the search,
        # through the tuning trainer's strategy.
        guard = HostMemoryGuard() if device["accelerator"] == "cpu" else None
        if guard is not None:
            device["strategy"] = guard.strategy()
        # A separate single-device trainer: the same code path with or without DDP, and the
        # run's own callbacks, loggers and loops are never touched by the search.
        tuning_trainer = pl.Trainer(
            **device,
            precision=self._precision_arg,
            # The finders stop themselves after their steps; epochs must not stop them first
            # (a small dataset has few batches per epoch), and validation only costs time.
            max_epochs=10_000,
            check_val_every_n_epoch=None,
            val_check_interval=10**9,
            accumulate_grad_batches=self.accumulate_grad_batches,
            gradient_clip_val=self.gradient_clip_val,
            gradient_clip_algorithm=self.gradient_clip_algorithm,
            limit_train_batches=self.limit_train_batches,
            logger=False,
            enable_checkpointing=False,
            enable_model_summary=False,
            enable_progress_bar=self.progress_bar_callback is not None,
            num_sanity_val_steps=0,
            default_root_dir=str(self._run_dir),
        )
        results = run_tuning(
            tuning_trainer,
            config,
            model,
            self._run_dir,
            datamodule=datamodule,
            train_dataloaders=train_dataloaders,
            val_dataloaders=val_dataloaders,
            memory_guard=guard,
        )
        _log.info(f"Tuning results: {describe_results(results)}")
        return results

    def _single_device(self) -> dict[str, Any]:
        device = self.strategy.root_device
        if device.type == "cuda":
            return {"accelerator": "gpu", "devices": [device.index or 0]}
        if device.type == "cpu":
            return {"accelerator": "cpu", "devices": 1}
        return {"accelerator": self._accelerator_arg, "devices": 1}


# --------------------------------------------------------------------------- helpers
def _make_checkpoint(monitor: str | None, mode: str) -> ModelCheckpoint:
    if monitor is None:
        # Keeps the most recent epoch only.
        return ModelCheckpoint(
            filename="epoch={epoch:02d}-step={step}", auto_insert_metric_name=False
        )
    # The metric's "/" would make a sub-folder: the name shown in the file uses "_".
    safe = monitor.replace("/", "_")
    return ModelCheckpoint(
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        save_last=True,
        filename=f"epoch={{epoch:02d}}-{safe}={{{monitor}:.4f}}",
        auto_insert_metric_name=False,
    )


def _tensorboard_installed() -> bool:
    return any(importlib.util.find_spec(m) is not None for m in ("tensorboard", "tensorboardX"))


def default_logger_configs() -> list[LoggerConfig]:
    """What ``logger=True`` builds: CSV, and TensorBoard too when it is installed."""
    configs = [LoggerConfig(backend="csv")]
    if _tensorboard_installed():
        configs.append(LoggerConfig(backend="tensorboard"))
    return configs


#: ``LoggerConfig.params`` that say where a logger writes; with none of them the run folder.
_PLACEMENT_PARAMS = ("save_dir", "name", "version")


def _placeable(config: LoggerConfig) -> bool:
    return config.backend in ("csv", "tensorboard") and not any(
        k in config.params for k in _PLACEMENT_PARAMS
    )


def _place(loggers: list[Logger], placed: dict[int, LoggerConfig], folder: Path) -> list[Logger]:
    out = list(loggers)
    for index, config in placed.items():
        params = {
            **config.params,
            "save_dir": str(folder.parent),
            "name": "",
            "version": folder.name,
        }
        out[index] = LoggerConfig(backend=config.backend, params=params).build()
    return out


def _build_loggers(logger: Any, root: str) -> tuple[bool | list[Logger], dict[int, LoggerConfig]]:
    """The Lightning loggers (or False), and which of them (by index) the trainer places in
    the run folder."""
    if logger is None or logger is False:
        return False, {}
    if logger is True:
        logger = default_logger_configs()
    if isinstance(logger, LoggerManager):
        logger = list(logger.configs)
    items = [logger] if isinstance(logger, (Logger, LoggerConfig, dict)) else logger
    if not isinstance(items, Sequence) or isinstance(items, str):
        raise TypeError(
            "logger must be False, True, a LoggerManager, a LoggerConfig, a Lightning Logger, "
            f"or a list of LoggerConfig/Logger; got {type(logger).__name__}"
        )
    built: list[Logger] = []
    placed: dict[int, LoggerConfig] = {}
    for item in items:
        if isinstance(item, dict):
            item = LoggerConfig(**item)
        if isinstance(item, LoggerConfig):
            if _placeable(item):
                placed[len(built)] = item
            built.append(item.build(root))
        elif isinstance(item, Logger):
            built.append(item)
        else:
            raise TypeError(
                "logger list entries must be LoggerConfig (or its dict) or Lightning Logger "
                f"objects; got {type(item).__name__}"
            )
    return (built or False), placed
