"""autotimm-classification: image classification with any timm backbone on PyTorch Lightning."""

from importlib.metadata import PackageNotFoundError, version

from autotimm_classification.builtin import BUILTIN_DATASETS
from autotimm_classification.data import ImageDataModule
from autotimm_classification.image_io import read_image_rgb
from autotimm_classification.model import ImageClassifier
from autotimm_classification.transforms import build_transform

try:
    __version__ = version("autotimm-classification")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "BUILTIN_DATASETS",
    "ImageClassifier",
    "ImageDataModule",
    "__version__",
    "build_transform",
    "read_image_rgb",
]
