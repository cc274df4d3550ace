"""autotimm-core: what AutoTimm's task packages share."""

from autotimm_core._imports import distribution_version
from autotimm_core.backbones import (
    backbone_data_config,
    check_backbone_name,
    create_backbone,
    list_backbones,
)
from autotimm_core.data import (
    BaseDataModule,
    DataConfig,
    DataContract,
    read_image,
    resolve_data_config,
)
from autotimm_core.features import (
    FeatureAdapter,
    SimpleFeaturePyramid,
    accepts_img_size,
    build_feature_backbone,
)
from autotimm_core.loggers import LoggerConfig, LoggerManager, LoggingConfig
from autotimm_core.metrics import MetricConfig, MetricManager
from autotimm_core.optimizers import create_optimizer, list_optimizers, resolve_optimizer_name
from autotimm_core.registry import Registry
from autotimm_core.schedulers import create_scheduler, list_schedulers, resolve_scheduler_name
from autotimm_core.task import BaseTask

__version__ = distribution_version("autotimm-core")

__all__ = [
    "BaseDataModule",
    "BaseTask",
    "DataConfig",
    "DataContract",
    "FeatureAdapter",
    "LoggerConfig",
    "LoggerManager",
    "LoggingConfig",
    "MetricConfig",
    "MetricManager",
    "Registry",
    "SimpleFeaturePyramid",
    "__version__",
    "accepts_img_size",
    "backbone_data_config",
    "build_feature_backbone",
    "check_backbone_name",
    "create_backbone",
    "create_optimizer",
    "create_scheduler",
    "list_backbones",
    "list_optimizers",
    "list_schedulers",
    "read_image",
    "resolve_data_config",
    "resolve_optimizer_name",
    "resolve_scheduler_name",
]
