"""autotimm-core: what AutoTimm's task packages share."""

from importlib.metadata import PackageNotFoundError, version

from autotimm_core.backbones import backbone_data_config, create_backbone, list_backbones
from autotimm_core.loggers import LoggerConfig, LoggerManager, LoggingConfig
from autotimm_core.metrics import MetricConfig, MetricManager
from autotimm_core.optimizers import create_optimizer, list_optimizers
from autotimm_core.schedulers import create_scheduler, list_schedulers
from autotimm_core.task import BaseTask

try:
    __version__ = version("autotimm-core")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "BaseTask",
    "LoggerConfig",
    "LoggerManager",
    "LoggingConfig",
    "MetricConfig",
    "MetricManager",
    "__version__",
    "backbone_data_config",
    "create_backbone",
    "create_optimizer",
    "create_scheduler",
    "list_backbones",
    "list_optimizers",
    "list_schedulers",
]
