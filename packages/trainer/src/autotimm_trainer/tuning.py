"""TunerConfig and the tuning pass: Lightning's Tuner (batch size, then learning rate) run once,
in a single process, before training starts."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.tuner import Tuner
from pytorch_lightning.utilities.parsing import (
    lightning_getattr,
    lightning_hasattr,
    lightning_setattr,
)
from pytorch_lightning.utilities.rank_zero import rank_zero_warn

from autotimm_core._imports import install_command, is_available
from autotimm_trainer import _log
from autotimm_trainer.memory import HostMemoryGuard

# Tuner arguments that AutoTrainer supplies itself; everything else in the Tuner's signature is
# a valid key of lr_find_kwargs / batch_size_kwargs.
_SUPPLIED = {
    "self",
    "model",
    "train_dataloaders",
    "val_dataloaders",
    "dataloaders",
    "datamodule",
    "method",
    "update_attr",
}
_CHOICES = {
    "lr_find_kwargs": {"mode": ("exponential", "linear")},
    "batch_size_kwargs": {"mode": ("power", "binsearch")},
}
_POSITIVE_INTS = {"num_training", "steps_per_trial", "init_val", "max_trials", "max_val"}


def _tuner_keys(method: Callable[..., Any]) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(method).parameters if p not in _SUPPLIED)


LR_FIND_KEYS = _tuner_keys(Tuner.lr_find)
BATCH_SIZE_KEYS = _tuner_keys(Tuner.scale_batch_size)


@dataclass
class TunerConfig:
    """What ``AutoTrainer.fit`` tunes before training, with Lightning's ``Tuner``.

    The batch size is searched first, then the learning rate at that batch size. Results are
    written to the datamodule's (or model's) ``batch_size`` and the model's ``lr`` /
    ``learning_rate``, and kept on ``trainer.tuning_results``. Tuning uses no training epochs:
    the weights are restored afterwards.

    Args:
        auto_lr: run the learning-rate range test (``Tuner.lr_find``). Default False.
        auto_batch_size: search the largest batch size that fits (``Tuner.scale_batch_size``).
            Default False.
        lr_find_kwargs: arguments of ``Tuner.lr_find``: ``min_lr`` (default 1e-8), ``max_lr``
            (1.0), ``num_training`` (100), ``mode`` (``"exponential"`` or ``"linear"``),
            ``early_stop_threshold`` (4.0), ``attr_name``. Default None (Lightning's defaults).
        batch_size_kwargs: arguments of ``Tuner.scale_batch_size``: ``mode`` (``"power"`` or
            ``"binsearch"``, default ``"power"``), ``steps_per_trial`` (3), ``init_val`` (2),
            ``max_trials`` (25), ``batch_arg_name`` (``"batch_size"``), ``margin``, ``max_val``
            (8192). Default None.
    """

    auto_lr: bool = False
    auto_batch_size: bool = False
    lr_find_kwargs: dict[str, Any] | None = None
    batch_size_kwargs: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.lr_find_kwargs = self._checked("lr_find_kwargs", self.lr_find_kwargs, LR_FIND_KEYS)
        self.batch_size_kwargs = self._checked(
            "batch_size_kwargs", self.batch_size_kwargs, BATCH_SIZE_KEYS
        )
        lr = self.lr_find_kwargs
        if "min_lr" in lr and "max_lr" in lr and not lr["min_lr"] < lr["max_lr"]:
            raise ValueError(
                f"TunerConfig.lr_find_kwargs: min_lr ({lr['min_lr']}) must be below max_lr ({lr['max_lr']})"
            )

    @staticmethod
    def _checked(
        field: str, value: dict[str, Any] | None, valid: tuple[str, ...]
    ) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise TypeError(f"TunerConfig.{field} must be a dict, got {type(value).__name__}")
        unknown = sorted(set(value) - set(valid))
        if unknown:
            raise ValueError(
                f"TunerConfig.{field}: unknown key(s) {unknown}; valid keys are {list(valid)}"
            )
        for key, choices in _CHOICES[field].items():
            if key in value and value[key] not in choices:
                raise ValueError(
                    f"TunerConfig.{field}[{key!r}] must be one of {list(choices)}, got {value[key]!r}"
                )
        for key in _POSITIVE_INTS & set(value):
            if not (isinstance(value[key], int) and value[key] >= 1):
                raise ValueError(
                    f"TunerConfig.{field}[{key!r}] must be a positive int, got {value[key]!r}"
                )
        return dict(value)

    @property
    def enabled(self) -> bool:
        """Whether anything is tuned."""
        return self.auto_lr or self.auto_batch_size

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def coerce(cls, value: TunerConfig | dict[str, Any] | None) -> TunerConfig | None:
        if value is None or isinstance(value, TunerConfig):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise TypeError(
            f"tuner_config must be a TunerConfig, a dict or None, got {type(value).__name__}"
        )


def check_tunable(
    config: TunerConfig,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule | None,
) -> None:
    """Raise a ValueError, before anything runs, if the model or data cannot take the results."""
    if config.auto_lr:
        names = (
            [config.lr_find_kwargs["attr_name"]]
            if config.lr_find_kwargs.get("attr_name")
            else ["lr", "learning_rate"]
        )
        if not any(lightning_hasattr(model, n) for n in names):
            raise ValueError(
                f"TunerConfig(auto_lr=True) needs the model to expose its learning rate as "
                f"{' or '.join(repr(n) for n in names)} (an attribute or a hyperparameter); "
                f"{type(model).__name__} has none. Set lr_find_kwargs={{'attr_name': ...}} or "
                "turn auto_lr off."
            )
    if config.auto_batch_size:
        name = config.batch_size_kwargs.get("batch_arg_name", "batch_size")
        holders = [model, getattr(model, "hparams", {}), datamodule]
        if not any(
            (name in h) if isinstance(h, dict) else hasattr(h, name)
            for h in holders
            if h is not None
        ):
            raise ValueError(
                f"TunerConfig(auto_batch_size=True) needs a {name!r} attribute on the datamodule "
                f"or the model to tune; neither {type(model).__name__} nor "
                f"{type(datamodule).__name__ if datamodule is not None else 'the (absent) datamodule'} "
                "has one. Pass a datamodule with batch_size, or turn auto_batch_size off."
            )


# ----------------------------------------------------------------------------- the tuning pass
def run_tuning(
    trainer: pl.Trainer,
    config: TunerConfig,
    model: pl.LightningModule,
    run_dir: Path,
    datamodule: pl.LightningDataModule | None = None,
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
    memory_guard: HostMemoryGuard | None = None,
) -> dict[str, Any]:
    """Run the tuner on ``trainer`` (single process): batch size first, then learning rate.

    Args:
        trainer: the single-process trainer the finders run on.
        config: what to tune.
        model: the model; the results are written to it (and to ``datamodule``).
        run_dir: where the learning-rate plot goes.
        datamodule, train_dataloaders, val_dataloaders: the data, as for ``fit``.
        memory_guard: a :class:`HostMemoryGuard` whose ``strategy()`` ``trainer`` runs on, to
            bound the batch-size search by host memory (on CPU); None searches unbounded.
            Default None.

    Returns ``{"batch_size", "lr", "lr_plot", "previous_batch_size", "previous_lr"}``; a value is
    None when it was not tuned (or, for ``lr``, when the finder gave no suggestion).
    """
    tuner = Tuner(trainer)
    data = {
        "datamodule": datamodule,
        "train_dataloaders": train_dataloaders,
        "val_dataloaders": val_dataloaders,
    }
    results: dict[str, Any] = {
        "batch_size": None,
        "lr": None,
        "lr_plot": None,
        "previous_batch_size": None,
        "previous_lr": None,
    }
    if config.auto_batch_size:
        kwargs = dict(config.batch_size_kwargs)
        name = kwargs.get("batch_arg_name", "batch_size")
        results["previous_batch_size"] = _read_attr(model, datamodule, name)
        if memory_guard is not None:
            memory_guard.batch_arg_name = name
            with memory_guard.active():
                found = tuner.scale_batch_size(model, **data, **kwargs)
        else:
            found = tuner.scale_batch_size(model, **data, **kwargs)
        results["batch_size"] = found
        stopped = memory_guard.stopped_at if memory_guard is not None else None
        note = f" (stopped below {stopped}: host memory)" if stopped is not None else ""
        _log.info(f"Batch size finder: {name}={found} (was {results['previous_batch_size']}){note}")
    if config.auto_lr:
        kwargs = dict(config.lr_find_kwargs)
        names = [kwargs["attr_name"]] if kwargs.get("attr_name") else ["lr", "learning_rate"]
        attr = next(n for n in names if lightning_hasattr(model, n))
        results["previous_lr"] = float(lightning_getattr(model, attr))
        finder = tuner.lr_find(model, **data, update_attr=True, **kwargs)
        suggestion = finder.suggestion() if finder is not None else None
        if suggestion is None:
            rank_zero_warn(
                f"The learning-rate finder gave no suggestion (too few or too noisy points); "
                f"keeping {attr}={results['previous_lr']}. Try more steps "
                "(lr_find_kwargs={'num_training': ...}) or a wider min_lr/max_lr range."
            )
        else:
            results["lr"] = float(suggestion)
            _log.info(
                f"Learning-rate finder: {attr}={suggestion:.3g} (was {results['previous_lr']:.3g})"
            )
        if finder is not None and len(finder.results.get("lr", [])) > 0:
            results["lr_plot"] = _save_lr_plot(finder, run_dir, suggest=suggestion is not None)
    return results


def _read_attr(model: pl.LightningModule, datamodule: Any, name: str) -> Any:
    if hasattr(model, name):
        return getattr(model, name)
    if name in getattr(model, "hparams", {}):
        return model.hparams[name]
    return getattr(datamodule, name, None)


def _save_lr_plot(finder: Any, run_dir: Path, suggest: bool) -> str | None:
    """Save the LR finder's loss curve as ``run_dir/lr_find.png``; a warning if it cannot be drawn."""
    if not is_available("matplotlib"):
        rank_zero_warn(
            "The learning-rate finder plot needs matplotlib, which is not installed "
            f"(the suggested lr is used all the same): {install_command('autotimm-trainer[plot]')}."
        )
        return None
    try:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        finder.plot(suggest=suggest, ax=ax)
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / "lr_find.png"
        fig.savefig(path, dpi=100, bbox_inches="tight")
    except Exception as err:  # a missing plot must not stop the run
        rank_zero_warn(f"Could not save the learning-rate finder plot: {err}")
        return None
    _log.info(f"Learning-rate finder plot: {path}")
    return str(path)


def apply_tuning_results(
    results: dict[str, Any] | None,
    model: pl.LightningModule,
    datamodule: pl.LightningDataModule | None,
    config: TunerConfig | None,
) -> None:
    """Set tuning results found by another process (the DDP launcher) on this model and data.

    Args:
        results: what :func:`run_tuning` returned there; None or empty sets nothing.
        model: the model to update (its ``lr``/``learning_rate`` or ``attr_name``).
        datamodule: the data module to update (its batch-size attribute), if any.
        config: the tuner configuration, for custom attribute names; None uses the defaults.
    """
    if not results:
        return
    if results.get("batch_size") is not None:
        name = (config.batch_size_kwargs if config else {}).get("batch_arg_name", "batch_size")
        if hasattr(model, name):
            setattr(model, name, results["batch_size"])
        if datamodule is not None and hasattr(datamodule, name):
            setattr(datamodule, name, results["batch_size"])
    if results.get("lr") is not None:
        attr = (config.lr_find_kwargs if config else {}).get("attr_name") or (
            "lr" if hasattr(model, "lr") else "learning_rate"
        )
        lightning_setattr(model, attr, results["lr"])


def describe_results(results: dict[str, Any]) -> str:
    """The tuned values in one line (``batch_size=32, lr=0.01``), or ``"no change"``."""
    shown = {k: results[k] for k in ("batch_size", "lr", "lr_plot") if results.get(k) is not None}
    return (
        ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
        or "no change"
    )
