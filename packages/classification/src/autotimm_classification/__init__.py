"""autotimm-classification: image classification with any timm backbone on PyTorch Lightning."""

from autotimm_classification.builtin import BUILTIN_DATASETS
from autotimm_classification.data import ImageDataModule
from autotimm_classification.model import ImageClassifier
from autotimm_classification.multilabel import MultiLabelImageDataModule
from autotimm_classification.transforms import build_classification_transform
from autotimm_classification.visualize import draw_classification
from autotimm_core._imports import distribution_version

# Public here before the reader moved to autotimm_core.data (which every task shares).
from autotimm_core.data import read_image_rgb

__version__ = distribution_version("autotimm-classification")

__all__ = [
    "BUILTIN_DATASETS",
    "ImageClassifier",
    "ImageDataModule",
    "MultiLabelImageDataModule",
    "__version__",
    "build_classification_transform",
    "draw_classification",
    "read_image_rgb",
]
