"""Detection data (COCO, YOLO, Pascal VOC, CSV): annotations, datasets, transforms, data module."""

from autotimm_detection.data.coco import (
    CocoAnnotations,
    CocoDetection,
    collate_detection,
    load_coco,
)
from autotimm_detection.data.datamodule import DetectionDataModule
from autotimm_detection.data.formats import FORMATS, load_csv, load_voc, load_yolo
from autotimm_detection.data.transforms import build_detection_transform, letterbox_size

__all__ = [
    "FORMATS",
    "CocoAnnotations",
    "CocoDetection",
    "DetectionDataModule",
    "build_detection_transform",
    "collate_detection",
    "letterbox_size",
    "load_coco",
    "load_csv",
    "load_voc",
    "load_yolo",
]
