"""autotimm-runtime: run AutoTimm's ONNX exports with onnxruntime, numpy and Pillow (no torch).

``load(path)`` reads the task and preprocessing from the file's metadata and returns a
predictor whose ``predict`` gives what the PyTorch model's ``predict`` gives, with numpy arrays.
"""

from importlib.metadata import PackageNotFoundError, version

from autotimm_runtime.images import letterbox, read_image, resize_crop
from autotimm_runtime.metadata import MetadataError, read_metadata
from autotimm_runtime.predictor import (
    ClassificationPredictor,
    DetectionPredictor,
    Predictor,
    load,
)
from autotimm_runtime.resize import resize

try:
    __version__ = version("autotimm-runtime")
except PackageNotFoundError:  # a source tree without installing
    __version__ = "0.0.0"

__all__ = [
    "ClassificationPredictor",
    "DetectionPredictor",
    "MetadataError",
    "Predictor",
    "__version__",
    "letterbox",
    "load",
    "read_image",
    "read_metadata",
    "resize",
    "resize_crop",
]
