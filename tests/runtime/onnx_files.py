"""Small AutoTimm-style ONNX files built with the ``onnx`` helper API (no torch needed).

They have the graph interface and metadata of real exports, with tiny hand-made graphs whose
outputs the tests can predict: the classifier's probabilities are a softmax of per-channel
means, the detector returns fixed boxes for every image.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def _meta(values: dict) -> list:
    return [
        onnx.StringStringEntryProto(key=f"autotimm.{k}", value=json.dumps(v))
        for k, v in values.items()
    ]


def _save(graph, path, metadata: dict | None) -> str:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 10
    if metadata is not None:
        model.metadata_props.extend(_meta(metadata))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


def classification_metadata(size: int = 16, **changes) -> dict:
    meta = {
        "format_version": 1,
        "version": "0.1.0",
        "task": "classification",
        "input_name": "images",
        "output_names": ["probabilities"],
        "input_size": [size, size],
        "resize_mode": "crop",
        "interpolation": "bilinear",
        "crop_pct": 0.875,
        "fill": None,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "class_names": ["red", "green", "blue"],
        "multi_label": False,
    }
    meta.update(changes)
    return meta


def classifier_file(path, size: int = 16, metadata: dict | None = None, batch: int | None = None):
    """probabilities = softmax(mean colour of each channel / 255 * 10): the brightest channel wins."""
    images = helper.make_tensor_value_info(
        "images", TensorProto.UINT8, [batch or "B", 3, size, size]
    )
    probs = helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [batch or "B", 3])
    scale = numpy_helper.from_array(np.array(10.0 / 255.0, np.float32), "scale")
    axes = numpy_helper.from_array(np.array([2, 3], np.int64), "axes")
    nodes = [
        helper.make_node("Cast", ["images"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["f", "axes"], ["m"], keepdims=0),
        helper.make_node("Mul", ["m", "scale"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
    ]
    graph = helper.make_graph(nodes, "classifier", [images], [probs], [scale, axes])
    meta = classification_metadata(size) if metadata is None else metadata
    return _save(graph, path, meta)


#: The fixed detections of :func:`detector_file`, in input pixels (K = 3, two valid).
BOXES = np.array([[[4, 8, 20, 24], [0, 0, 32, 16], [0, 0, 0, 0]]], np.float32)
SCORES = np.array([[0.9, 0.5, 0.0]], np.float32)
LABELS = np.array([[1, 0, -1]], np.int64)


def detection_metadata(size: int = 32, **changes) -> dict:
    meta = {
        "format_version": 1,
        "version": "0.1.0",
        "task": "detection",
        "input_name": "images",
        "output_names": ["boxes", "scores", "labels", "num_detections"],
        "input_size": [size, size],
        "resize_mode": "letterbox",
        "interpolation": "bilinear",
        "crop_pct": 0.875,
        "fill": 114,
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "class_names": ["cat", "dog"],
        "category_ids": [3, 7],
        "score_threshold": 0.05,
        "nms_threshold": 0.6,
        "max_detections": 3,
    }
    meta.update(changes)
    return meta


def detector_file(path, size: int = 32, metadata: dict | None = None):
    """Returns BOXES/SCORES/LABELS and num_detections 2 for every image of the batch."""
    images = helper.make_tensor_value_info("images", TensorProto.UINT8, ["B", 3, size, size])
    outs = [
        helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["B", 3, 4]),
        helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["B", 3]),
        helper.make_tensor_value_info("labels", TensorProto.INT64, ["B", 3]),
        helper.make_tensor_value_info("num_detections", TensorProto.INT64, ["B"]),
    ]
    inits = [
        numpy_helper.from_array(BOXES, "c_boxes"),
        numpy_helper.from_array(SCORES, "c_scores"),
        numpy_helper.from_array(LABELS, "c_labels"),
        numpy_helper.from_array(np.array([2], np.int64), "c_num"),
        numpy_helper.from_array(np.array([0], np.int64), "zero"),
        numpy_helper.from_array(np.array([3, 4], np.int64), "tail3"),
        numpy_helper.from_array(np.array([3], np.int64), "tail2"),
    ]
    nodes = [
        helper.make_node("Shape", ["images"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["b"], axis=0),
        helper.make_node("Concat", ["b", "tail3"], ["s3"], axis=0),
        helper.make_node("Concat", ["b", "tail2"], ["s2"], axis=0),
        helper.make_node("Expand", ["c_boxes", "s3"], ["boxes"]),
        helper.make_node("Expand", ["c_scores", "s2"], ["scores"]),
        helper.make_node("Expand", ["c_labels", "s2"], ["labels"]),
        helper.make_node("Expand", ["c_num", "b"], ["num_detections"]),
    ]
    graph = helper.make_graph(nodes, "detector", [images], outs, inits)
    meta = detection_metadata(size) if metadata is None else metadata
    return _save(graph, path, meta)
