"""SemanticSegmentor.export through BaseTask: class probabilities and the class map at the input
size, with the segmentation metadata and the parity check."""

import json

import numpy as np
import onnx
import pytest
import torch

from autotimm_core.export import ExportParityError, load_onnx, run_onnx, sample_images
from autotimm_segmentation import SemanticSegmentor


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = SemanticSegmentor(
        "test_resnet", num_classes=3, pretrained=False, image_size=32, class_names=["bg", "a", "b"]
    )
    path = model.export(tmp_path_factory.mktemp("s") / "seg.onnx")  # check=True passed
    return model, path


def test_exported_probabilities_and_mask_match_the_model(exported):
    model, path = exported
    images = sample_images(32, 2, seed=5)
    out = run_onnx(load_onnx(path), images)
    assert out["probabilities"].shape == (2, 3, 32, 32) and out["mask"].shape == (2, 32, 32)
    with torch.no_grad():
        probs = model.eval()(images).softmax(dim=1).numpy()
    np.testing.assert_allclose(out["probabilities"], probs, atol=1e-4)
    assert (out["mask"] == probs.argmax(1)).mean() > 0.999
    meta = {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}
    assert meta["autotimm.task"] == "segmentation"
    assert meta["autotimm.class_names"] == ["bg", "a", "b"]
    assert meta["autotimm.ignore_index"] == 255


def test_a_differing_mask_fails_the_parity_check(exported):
    model, _ = exported
    reference = model.export_reference(sample_images(32, 1, seed=1))
    broken = {k: v.copy() for k, v in reference.items()}
    probs = broken["probabilities"]
    # A confident pixel (best class well ahead) given another class.
    top2 = np.sort(probs, axis=1)[:, -2:]
    y, x = np.argwhere((top2[0, 1] - top2[0, 0]) > 1e-2)[0]
    broken["mask"][0, y, x] = (broken["mask"][0, y, x] + 1) % 3
    with pytest.raises(ExportParityError, match=r"'mask'.*1 pixel\(s\) get another class"):
        model.compare_export_outputs(reference, broken)
