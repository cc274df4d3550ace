"""ImageClassifier.export: ONNX with metadata and the parity check, .pt2, bad arguments."""

import json

import numpy as np
import onnx
import pytest
import torch

from autotimm_classification import ImageClassifier
from autotimm_core.export import (
    ExportParityError,
    export_to_onnx,
    load_onnx,
    run_onnx,
    sample_images,
    validate_onnx_export,
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = ImageClassifier(
        "test_resnet", num_classes=3, pretrained=False, image_size=32, class_names=["a", "b", "c"]
    )
    path = model.export(tmp_path_factory.mktemp("c") / "model.onnx")  # check=True passed
    return model, path


def test_onnx_takes_uint8_and_returns_the_model_probabilities(exported):
    model, path = exported
    session = load_onnx(path)
    assert session.get_inputs()[0].type == "tensor(uint8)"
    assert session.get_inputs()[0].shape[1:] == [3, 32, 32]
    images = sample_images(32, 5, seed=3)  # another batch size than the export's
    probs = run_onnx(session, images)["probabilities"]
    with torch.no_grad():
        expected = model.eval().probabilities(model(images)).numpy()
    assert probs.shape == (5, 3)
    np.testing.assert_allclose(probs, expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def test_metadata_has_what_a_runtime_needs(exported):
    model, path = exported
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert meta["autotimm.task"] == "classification"
    assert meta["autotimm.class_names"] == ["a", "b", "c"]
    assert meta["autotimm.input_size"] == [32, 32]
    assert meta["autotimm.resize_mode"] == "crop"
    assert meta["autotimm.interpolation"] == model.data_config.interpolation
    assert meta["autotimm.crop_pct"] == model.data_config.crop_pct
    assert meta["autotimm.multi_label"] is False
    assert meta["autotimm.output_names"] == ["probabilities"]
    assert meta["autotimm.version"]


def test_parity_failure_names_the_output(exported, tmp_path):
    _, path = exported
    torch.manual_seed(1)  # other weights than the exported model's
    changed = ImageClassifier("test_resnet", num_classes=3, pretrained=False, image_size=32)
    with pytest.raises(ExportParityError, match=r"'probabilities' differs .* by up to"):
        validate_onnx_export(changed, path, sample_images(32, 2))


def test_multilabel_sigmoid_fixed_batch_and_free_function(tmp_path):
    model = ImageClassifier(
        "test_resnet", num_classes=4, pretrained=False, image_size=32, multi_label=True
    )
    example = sample_images(32, 3, seed=1)
    path = export_to_onnx(model, tmp_path / "m.onnx", example_input=example, dynamic_batch=False)
    session = load_onnx(path)
    assert session.get_inputs()[0].shape[0] == 3
    probs = run_onnx(session, example)["probabilities"]
    assert (probs.sum(1) > 1.01).any()  # independent sigmoids, not a softmax


def test_pt2_export_runs_with_torch_export(tmp_path):
    model = ImageClassifier("test_resnet", num_classes=3, pretrained=False, image_size=32)
    path = model.export(tmp_path / "m.pt2")
    extra = {"autotimm.json": ""}
    program = torch.export.load(str(path), extra_files=extra)
    assert json.loads(extra["autotimm.json"])["task"] == "classification"
    images = sample_images(32, 2)
    with torch.no_grad():
        (probs,) = program.module()(images)
        np.testing.assert_allclose(probs, model.eval().probabilities(model(images)), atol=1e-5)


@pytest.mark.parametrize(
    ("name", "message"),
    [("m.pt", "TorchScript is deprecated"), ("m.ts", "TorchScript"), ("m.tflite", r"\.onnx")],
)
def test_bad_suffix_is_refused(tmp_path, name, message):
    model = ImageClassifier("test_resnet", num_classes=3, pretrained=False, image_size=32)
    with pytest.raises(ValueError, match=message):
        model.export(tmp_path / name)


def test_float_example_input_is_refused(tmp_path):
    model = ImageClassifier("test_resnet", num_classes=3, pretrained=False, image_size=32)
    with pytest.raises(ValueError, match="example_input must be a uint8 tensor"):
        model.export(tmp_path / "m.onnx", example_input=torch.zeros(1, 3, 32, 32))
