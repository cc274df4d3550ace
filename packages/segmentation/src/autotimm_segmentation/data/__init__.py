"""Segmentation data: layouts, mask reading and checks, mask-aware transforms, the data module."""

from autotimm_segmentation.data.datamodule import SegmentationDataModule
from autotimm_segmentation.data.dataset import CocoMasks, SegmentationDataset
from autotimm_segmentation.data.masks import VOC_CLASSES, check_mask, read_mask
from autotimm_segmentation.data.transforms import (
    SegmentationTransform,
    build_segmentation_transform,
)

__all__ = [
    "VOC_CLASSES",
    "CocoMasks",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SegmentationTransform",
    "build_segmentation_transform",
    "check_mask",
    "read_mask",
]
