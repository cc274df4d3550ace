"""autotimm-runtime against the PyTorch models' predict, on real photos (scikit-learn's samples)."""

import copy
import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import sklearn.datasets
import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as F

import autotimm_runtime
from autotimm_classification import ImageClassifier
from autotimm_detection import ObjectDetector
from autotimm_runtime import resize

PHOTOS = sorted(str(p) for p in (Path(sklearn.datasets.__file__).parent / "images").glob("*.jpg"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    # The two JPEG photos plus a PNG crop of another shape (portrait) of one of them.
    from PIL import Image

    crop = tmp_path_factory.mktemp("img") / "portrait.png"
    Image.open(PHOTOS[0]).crop((100, 0, 350, 400)).save(crop)
    return [*PHOTOS, str(crop)]


@pytest.mark.parametrize("interp", ["nearest", "bilinear", "bicubic"])
def test_runtime_resize_is_torchvision_pixel_for_pixel(photos, interp):
    image = np.asarray(autotimm_runtime.read_image(photos[0]))
    tensor = torch.from_numpy(image.copy()).permute(2, 0, 1)
    for size in [(37, 53), (146, 100), (500, 700)]:
        expected = F.resize(tensor, list(size), InterpolationMode(interp), antialias=True)
        assert (resize(image, *size, interp) == expected.permute(1, 2, 0).numpy()).all()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """One classifier exported once (ONNX export is the slow part): the tests vary the rest."""
    torch.manual_seed(0)
    model = ImageClassifier(
        "test_resnet",
        num_classes=4,
        pretrained=False,
        image_size=48,
        class_names=["w", "x", "y", "z"],
        data_config={"interpolation": "bicubic", "crop_pct": 0.9},
    )
    return model, model.export(tmp_path_factory.mktemp("c") / "c.onnx")


@pytest.mark.parametrize("interpolation", ["bicubic", "bilinear"])
def test_classifier_runtime_matches_predict(photos, tmp_path, classifier, interpolation):
    model, path = classifier
    if interpolation != model.data_config.interpolation:
        # The graph starts after the resize, so another interpolation changes the model's
        # data_config and the file's metadata only: both are changed here instead of exporting
        # a second time.
        model = copy.deepcopy(model)
        model.data_config = dataclasses.replace(model.data_config, interpolation=interpolation)
        proto = onnx.load(str(path))
        for entry in proto.metadata_props:
            if entry.key == "autotimm.interpolation":
                entry.value = json.dumps(interpolation)
        path = tmp_path / "c.onnx"
        onnx.save(proto, str(path))
    predictor = autotimm_runtime.load(path)
    assert predictor.metadata["interpolation"] == interpolation
    expected = model.predict(photos, top_k=4)
    got = predictor.predict(photos, batch_size=2, top_k=4)
    for e, g in zip(expected, got):
        assert g[0]["label"] == e[0]["label"] and g[0]["index"] == e[0]["index"]
        by_index = {r["index"]: r["score"] for r in g}
        for r in e:
            assert by_index[r["index"]] == pytest.approx(r["score"], abs=1e-4)


def test_detector_runtime_matches_predict(photos, tmp_path):
    model = ObjectDetector(
        "test_resnet",
        num_classes=3,
        pretrained=False,
        image_size=64,
        fpn_channels=16,
        head_num_convs=1,
        max_detections=200,  # never saturated here: every detection is compared
        class_names=["a", "b", "c"],
        category_ids=[2, 4, 8],
    )
    predictor = autotimm_runtime.load(model.export(tmp_path / "d.onnx"))
    expected = model.predict(photos)
    got = predictor.predict(photos, batch_size=3)
    for e, g in zip(expected, got):
        assert len(g["scores"]) == len(e["scores"]) > 0
        assert set(g["labels"].tolist()) <= {2, 4, 8}
        free = np.ones(len(g["scores"]), bool)
        for box, score, label, name in zip(
            e["boxes"].numpy(), e["scores"].numpy(), e["labels"].tolist(), e["label_names"]
        ):
            same = free & (g["labels"] == label)
            dist = np.where(same, np.abs(g["boxes"] - box).max(axis=1), np.inf)
            j = int(dist.argmin())
            free[j] = False
            assert dist[j] <= 1.0  # within 1 px in the original image
            assert g["label_names"][j] == name
            assert g["scores"][j] == pytest.approx(score, abs=1e-4)
