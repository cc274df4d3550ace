"""Export of AutoTimm tasks: ONNX (whole pipeline, NMS inside) and torch.export, with checks.

Needs the ``autotimm-core[export]`` extra (onnx, onnxscript, onnxruntime) for ONNX.
"""

from autotimm_core.export.metadata import COMMON_KEYS, FORMAT_VERSION, PREFIX, decode_metadata
from autotimm_core.export.modules import UInt8Normalize
from autotimm_core.export.nms import class_nms
from autotimm_core.export.onnx_export import (
    FORMATS,
    INPUT_NAME,
    export_model,
    export_to_onnx,
    load_onnx,
    run_onnx,
    sample_images,
    validate_onnx_export,
)
from autotimm_core.export.parity import ExportParityError, compare_arrays

__all__ = [
    "COMMON_KEYS",
    "FORMATS",
    "FORMAT_VERSION",
    "INPUT_NAME",
    "PREFIX",
    "ExportParityError",
    "UInt8Normalize",
    "class_nms",
    "compare_arrays",
    "decode_metadata",
    "export_model",
    "export_to_onnx",
    "load_onnx",
    "run_onnx",
    "sample_images",
    "validate_onnx_export",
]
