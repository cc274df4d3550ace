"""autotimm-segmentation: semantic segmentation on any timm backbone, with mIoU."""

from autotimm_core._imports import distribution_version
from autotimm_segmentation.data import (
    VOC_CLASSES,
    CocoMasks,
    SegmentationDataModule,
    SegmentationDataset,
    SegmentationTransform,
    build_segmentation_transform,
    read_mask,
)
from autotimm_segmentation.heads import DeepLabV3PlusHead, FPNHead, UNetHead
from autotimm_segmentation.losses import build_loss
from autotimm_segmentation.model import SemanticSegmentor
from autotimm_segmentation.visualize import draw_segmentation

__version__ = distribution_version("autotimm-segmentation")

__all__ = [
    "VOC_CLASSES",
    "CocoMasks",
    "DeepLabV3PlusHead",
    "FPNHead",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SegmentationTransform",
    "SemanticSegmentor",
    "UNetHead",
    "__version__",
    "build_loss",
    "build_segmentation_transform",
    "draw_segmentation",
    "read_mask",
]
