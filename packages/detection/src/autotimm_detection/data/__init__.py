"""COCO-format data: annotations, datasets, transforms and the data module."""

from autotimm_detection.data.coco import (
    CocoAnnotations,
    CocoDetection,
    collate_detection,
    load_coco,
)
from autotimm_detection.data.datamodule import DetectionDataModule
from autotimm_detection.data.transforms import build_detection_transform, letterbox_size

__all__ = [
    "CocoAnnotations",
    "CocoDetection",
    "DetectionDataModule",
    "build_detection_transform",
    "collate_detection",
    "letterbox_size",
    "load_coco",
]
