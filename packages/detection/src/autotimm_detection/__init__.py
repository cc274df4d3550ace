"""autotimm-detection: FCOS-style object detection on any timm backbone, with COCO data and mAP."""

from autotimm_core._imports import distribution_version
from autotimm_detection.data import (
    CocoDetection,
    DetectionDataModule,
    build_detection_transform,
    load_coco,
    load_csv,
    load_voc,
    load_yolo,
)
from autotimm_detection.metrics import COCOMeanAveragePrecision
from autotimm_detection.model import ObjectDetector
from autotimm_detection.visualize import draw_detections

__version__ = distribution_version("autotimm-detection")

__all__ = [
    "COCOMeanAveragePrecision",
    "CocoDetection",
    "DetectionDataModule",
    "ObjectDetector",
    "__version__",
    "build_detection_transform",
    "draw_detections",
    "load_coco",
    "load_csv",
    "load_voc",
    "load_yolo",
]
