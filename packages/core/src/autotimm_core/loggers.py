"""What a task logs (LoggingConfig) and where logs go (LoggerConfig, LoggerManager)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pytorch_lightning.loggers import Logger

from autotimm_core._imports import require
from autotimm_core.validation import check_choice


@dataclass
class LoggingConfig:
    """Extra values a task logs during training.

    Args:
        log_learning_rate: log the first parameter group's learning rate every step as
            ``train/lr``. Default False.
        log_gradient_norm: log the global L2 norm of the gradients (before clipping) every step
            as ``train/grad_norm``. Default False.
        log_every_n_steps: how often the two values above are logged, in optimizer steps. Default 1.
        log_confusion_matrix: for single-label classification (``metric_task="multiclass"``),
            compute a confusion matrix on val and test and, at the end of each validation and
            test, write ``confusion_matrix_<stage>.png`` (needs matplotlib) and
            ``per_class_<stage>.csv`` (precision, recall, F1 and support per class) into the
            run folder (``trainer.log_dir``) and send the image to TensorBoard, W&B or MLflow
            loggers. Default True.
    """

    log_learning_rate: bool = False
    log_gradient_norm: bool = False
    log_every_n_steps: int = 1
    log_confusion_matrix: bool = True

    def __post_init__(self) -> None:
        for name in ("log_learning_rate", "log_gradient_norm", "log_confusion_matrix"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(
                    f"LoggingConfig.{name} must be True or False, got {getattr(self, name)!r}"
                )
        if not isinstance(self.log_every_n_steps, int) or self.log_every_n_steps < 1:
            raise ValueError(
                f"LoggingConfig.log_every_n_steps must be a positive int, got {self.log_every_n_steps!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def coerce(cls, value: LoggingConfig | dict[str, Any] | None) -> LoggingConfig:
        if value is None:
            return cls()
        if isinstance(value, LoggingConfig):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise TypeError(f"expected a LoggingConfig or a dict, got {type(value).__name__}")


# backend -> (Lightning class path, import that must work, pip package)
_BACKENDS: dict[str, tuple[str, str | None, str | None]] = {
    "tensorboard": ("TensorBoardLogger", "tensorboard", "autotimm-core[tensorboard]"),
    "csv": ("CSVLogger", None, None),
    "wandb": ("WandbLogger", "wandb", "wandb"),
    "mlflow": ("MLFlowLogger", "mlflow", "mlflow"),
}


@dataclass
class LoggerConfig:
    """One experiment logger.

    Args:
        backend: ``"tensorboard"``, ``"csv"``, ``"wandb"`` or ``"mlflow"``.
        params: arguments of the Lightning logger (``save_dir``, ``name``, ``project``...).
            ``save_dir`` defaults to the trainer's ``default_root_dir``/logs for the file-based ones.
    """

    backend: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("LoggerConfig.backend", self.backend, sorted(_BACKENDS))
        if not isinstance(self.params, dict):
            raise ValueError(
                f"LoggerConfig.params must be a dict, got {type(self.params).__name__}"
            )

    def build(self, default_root_dir: str = ".") -> Logger:
        """Create the Lightning logger; ImportError naming the pip package if it is missing."""
        import pytorch_lightning.loggers as pl_loggers

        cls_name, module, pip_name = _BACKENDS[self.backend]
        if module is not None:
            require(module, pip_name, purpose=f"the '{self.backend}' logger")
        params = dict(self.params)
        if self.backend in ("tensorboard", "csv"):
            params.setdefault("save_dir", f"{default_root_dir.rstrip('/')}/logs")
        return getattr(pl_loggers, cls_name)(**params)


class LoggerManager:
    """A set of loggers built from LoggerConfigs.

    Args:
        configs: the LoggerConfigs (or their dict forms).
    """

    def __init__(self, configs: list[LoggerConfig | dict[str, Any]]) -> None:
        self.configs = [c if isinstance(c, LoggerConfig) else LoggerConfig(**c) for c in configs]
        self._loggers: list[Logger] | None = None

    @property
    def loggers(self) -> list[Logger]:
        """The built Lightning loggers (upstream AutoTimm's API), built once on first use with
        the default ``save_dir`` under ``"."`` (``./logs``). Passed to ``AutoTrainer(logger=...)``
        the manager is rebuilt from its configs into each run folder instead."""
        if self._loggers is None:
            self._loggers = self.build()
        return self._loggers

    def build(self, default_root_dir: str = ".") -> list[Logger]:
        """The Lightning loggers, in the order given."""
        return [c.build(default_root_dir) for c in self.configs]

    def __len__(self) -> int:
        return len(self.configs)

    def __iter__(self):
        return iter(self.configs)
