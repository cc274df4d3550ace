"""ObjectDetector.export: ONNX with decoding and class-wise NMS in the graph, parity-checked."""

import json

import numpy as np
import onnx
import pytest
import torch

from autotimm_core.export import ExportParityError, load_onnx, run_onnx, sample_images
from autotimm_detection import ObjectDetector
from autotimm_detection.export import compare_detections, padded_detections


def _detector(**kw):
    torch.manual_seed(0)
    return ObjectDetector(
        "test_resnet",
        num_classes=3,
        pretrained=False,
        image_size=64,
        fpn_channels=16,
        head_num_convs=1,
        max_detections=20,
        class_names=["a", "b", "c"],
        category_ids=[1, 5, 9],
        **kw,
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _detector()
    return model, model.export(tmp_path_factory.mktemp("d") / "det.onnx")  # check=True passed


def test_graph_outputs_final_padded_detections(exported):
    model, path = exported
    session = load_onnx(path)
    assert [o.name for o in session.get_outputs()] == [
        "boxes",
        "scores",
        "labels",
        "num_detections",
    ]
    graph = onnx.load(str(path)).graph
    assert any(n.op_type == "NonMaxSuppression" for n in graph.node)
    images = sample_images(64, 3, seed=7)
    out = run_onnx(session, images)
    assert out["boxes"].shape == (3, 20, 4) and out["labels"].shape == (3, 20)
    with torch.no_grad():
        dets = model.eval().postprocess(model(images))
    assert out["num_detections"].tolist() == [len(d["scores"]) for d in dets]
    # The same detections as the PyTorch post-processing, matched one to one.
    compare_detections(padded_detections(dets, 20), out)
    n = int(out["num_detections"][0])
    assert (out["labels"][0, n:] == -1).all() and (out["scores"][0, n:] == 0).all()
    assert (np.diff(out["scores"][0, :n]) <= 0).all()  # best first


def test_metadata_carries_category_ids_and_thresholds(exported):
    _, path = exported
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert meta["autotimm.task"] == "detection"
    assert meta["autotimm.category_ids"] == [1, 5, 9]
    assert meta["autotimm.class_names"] == ["a", "b", "c"]
    assert meta["autotimm.resize_mode"] == "letterbox"
    assert meta["autotimm.fill"] == 114
    assert meta["autotimm.score_threshold"] == 0.05
    assert meta["autotimm.nms_threshold"] == 0.6
    assert meta["autotimm.max_detections"] == 20


def test_compare_detections_names_what_differs():
    model = _detector()
    with torch.no_grad():
        ref = model.export_reference(sample_images(64, 1))
    assert ref["num_detections"][0] > 0
    moved = {k: v.copy() for k, v in ref.items()}
    moved["boxes"][0, 0, 0] += 0.5
    with pytest.raises(ExportParityError, match=r"'boxes' differs .* by up to 0\.5"):
        compare_detections(ref, moved)
    fewer = {k: v.copy() for k, v in ref.items()}
    fewer["num_detections"][0] -= 1
    with pytest.raises(ExportParityError, match="'num_detections'"):
        compare_detections(ref, fewer)
    relabelled = {k: v.copy() for k, v in ref.items()}
    relabelled["labels"][0, 0] = (relabelled["labels"][0, 0] + 1) % 3
    with pytest.raises(ExportParityError, match="'labels'"):
        compare_detections(ref, relabelled)
