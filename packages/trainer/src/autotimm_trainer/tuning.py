"""TunerConfig and the tuning pass: Lightning's Tuner (batch size, then learning rate) run once,
in a single process, before training starts."""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.tuner import Tuner
from pytorch_lightning.utilities.data import extract_batch_size
from pytorch_lightning.utilities.parsing import lightning_getattr, lightning_hasattr
from pytorch_lightning.utilities.rank_zero import rank_zero_warn

from autotimm_trainer import _log

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


# ----------------------------------------------------------------------------- host memory guard
def _process_rss() -> int | None:
    """Resident memory of this process in bytes (None where it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except Exception:
        return None


def _available_memory() -> int | None:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup limit if any."""
    values: list[int] = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    values.append(int(line.split()[1]) * 1024)
                    break
    except (OSError, ValueError):
        try:
            import psutil

            values.append(int(psutil.virtual_memory().available))
        except Exception:
            pass
    try:  # a container's limit, which MemAvailable does not see (cgroup v2)
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        used = Path("/sys/fs/cgroup/memory.current").read_text().strip()
        if limit != "max":
            values.append(int(limit) - int(used))
    except (OSError, ValueError):
        pass
    return min(values) if values else None


class HostMemoryGuard:
    """Bounds Lightning's batch-size search on CPU by the memory the host has left.

    Lightning's search doubles the batch size until an out-of-memory error, which on a CUDA
    device is caught and undone; on CPU the allocator swaps or the process is killed first. The
    guard measures how much memory a step holds per sample (resident memory growth from the
    start of the step to ``on_before_backward``, when the activations are all alive) and, before
    a step at a larger size, raises the CPU out-of-memory error Lightning recognises when that
    size would need more than ``fraction`` of the memory still available. Lightning then keeps
    the last size that fitted.

    Args:
        model: the model being tuned; two of its hooks are wrapped while the guard is active.
        fraction: share of the available memory a step may take. Default 0.5.
        headroom: factor on the measured per-sample memory for gradients and allocator slack.
            Default 1.5.
        rss: reads the process's resident bytes. Default: ``/proc/self/statm`` (or psutil).
        available: reads the bytes still available. Default: ``MemAvailable``, cgroup-capped.
    """

    def __init__(
        self,
        model: pl.LightningModule,
        fraction: float = 0.5,
        headroom: float = 1.5,
        rss: Callable[[], int | None] | None = None,
        available: Callable[[], int | None] | None = None,
    ) -> None:
        self.model = model
        self.fraction = fraction
        self.headroom = headroom
        self._rss = rss if rss is not None else _process_rss
        self._available = available if available is not None else _available_memory
        self.bytes_per_sample = 0.0
        self.stopped_at: int | None = None
        self._step_rss: int | None = None
        self._step_size = 0

    def _on_train_batch_start(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def hook(batch: Any, batch_idx: int) -> Any:
            try:
                size = extract_batch_size(batch)
            except Exception:  # unusual batch structure: fall back to the tuned attribute
                size = int(lightning_getattr(self.model, "batch_size"))
            available = self._available()
            if self.bytes_per_sample and available is not None:
                need = size * self.bytes_per_sample * self.headroom
                if need > self.fraction * available:
                    self.stopped_at = size
                    # One argument, this wording: Lightning's is_oom_error() treats it as OOM.
                    raise RuntimeError(
                        "DefaultCPUAllocator: can't allocate memory: autotimm stopped the batch "
                        f"size search at {size} (needs about {need / 2**20:.0f} MiB, "
                        f"{available / 2**20:.0f} MiB available)"
                    )
            self._step_rss, self._step_size = self._rss(), size
            return original(batch, batch_idx)

        return hook

    def _on_before_backward(self, original: Callable[..., Any]) -> Callable[..., Any]:
        def hook(loss: Any) -> Any:
            now = self._rss()
            if now is not None and self._step_rss is not None and self._step_size:
                per_sample = max(now - self._step_rss, 0) / self._step_size
                self.bytes_per_sample = max(self.bytes_per_sample, per_sample)
            return original(loss)

        return hook

    @contextmanager
    def active(self) -> Iterator[HostMemoryGuard]:
        """Wrap the model's hooks for the duration of the ``with`` block."""
        names = {
            "on_train_batch_start": self._on_train_batch_start,
            "on_before_backward": self._on_before_backward,
        }
        own = {n: self.model.__dict__[n] for n in names if n in self.model.__dict__}
        for name, wrap in names.items():
            object.__setattr__(self.model, name, wrap(getattr(self.model, name)))
        try:
            yield self
        finally:
            for name in names:
                if name in own:
                    object.__setattr__(self.model, name, own[name])
                else:
                    object.__delattr__(self.model, name)


# ----------------------------------------------------------------------------- the tuning pass
def run_tuning(
    trainer: pl.Trainer,
    config: TunerConfig,
    model: pl.LightningModule,
    run_dir: Path,
    datamodule: pl.LightningDataModule | None = None,
    train_dataloaders: Any = None,
    val_dataloaders: Any = None,
) -> dict[str, Any]:
    """Run the tuner on ``trainer`` (single process): batch size first, then learning rate.

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
        guard = HostMemoryGuard(model)
        on_cpu = trainer.strategy.root_device.type == "cpu"
        if on_cpu:
            with guard.active():
                found = tuner.scale_batch_size(model, **data, **kwargs)
        else:
            found = tuner.scale_batch_size(model, **data, **kwargs)
        results["batch_size"] = found
        note = (
            f" (stopped below {guard.stopped_at}: host memory)"
            if guard.stopped_at is not None
            else ""
        )
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
