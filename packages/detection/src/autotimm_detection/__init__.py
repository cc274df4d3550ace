"""autotimm-detection: FCOS-style object detection on any timm backbone, with COCO data and mAP."""

from importlib.metadata import PackageNotFoundError, version

from autotimm_detection.data import CocoDetection, DetectionDataModule, build_transform, load_coco
from autotimm_detection.metrics import COCOMeanAveragePrecision
from autotimm_detection.model import ObjectDetector
from autotimm_detection.visualize import draw_detections

try:
    __version__ = version("autotimm-detection")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "COCOMeanAveragePrecision",
    "CocoDetection",
    "DetectionDataModule",
    "ObjectDetector",
    "__version__",
    "build_transform",
    "draw_detections",
    "load_coco",
]
