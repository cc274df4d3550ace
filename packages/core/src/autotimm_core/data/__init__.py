"""The data contract and what every task's data pipeline shares."""

from autotimm_core.data.config import (
    DEFAULT_IMAGE_SIZE,
    INTERPOLATIONS,
    RESIZE_MODES,
    DataConfig,
    coerce_data_config,
    interpolation_name,
    merge_data_configs,
    resolve_data_config,
)
from autotimm_core.data.contract import ClassCounts, DataContract
from autotimm_core.data.datamodule import (
    BACKENDS,
    PRESETS,
    BaseDataModule,
    available_cpus,
    check_batch_size,
)
from autotimm_core.data.image_io import (
    IMAGE_EXTENSIONS,
    ImageInput,
    check_image_file,
    is_image_file,
    read_image,
    read_image_rgb,
)
from autotimm_core.data.letterbox import Letterbox, as_letterbox_config, letterbox_size
from autotimm_core.data.normalize import mean_fill, normalize_images
from autotimm_core.data.seeding import seed_albumentations

__all__ = [
    "BACKENDS",
    "DEFAULT_IMAGE_SIZE",
    "IMAGE_EXTENSIONS",
    "INTERPOLATIONS",
    "PRESETS",
    "RESIZE_MODES",
    "BaseDataModule",
    "ClassCounts",
    "DataConfig",
    "DataContract",
    "ImageInput",
    "Letterbox",
    "as_letterbox_config",
    "available_cpus",
    "check_batch_size",
    "check_image_file",
    "coerce_data_config",
    "interpolation_name",
    "is_image_file",
    "letterbox_size",
    "mean_fill",
    "merge_data_configs",
    "normalize_images",
    "read_image",
    "read_image_rgb",
    "resolve_data_config",
    "seed_albumentations",
]
