"""autotimm-runtime on its own (no torch): loading, preprocessing, predict, errors and the CLI."""

import json

import numpy as np
import onnx_files as files
import pytest
from PIL import Image

import autotimm_runtime
from autotimm_runtime import MetadataError, letterbox, resize, resize_crop
from autotimm_runtime.cli import main


def _solid(h, w, rgb):
    return np.broadcast_to(np.asarray(rgb, np.uint8), (h, w, 3)).copy()


def test_classifier_predicts_the_brightest_channel_from_paths_pil_and_arrays(tmp_path):
    model = autotimm_runtime.load(files.classifier_file(tmp_path / "c.onnx"))
    assert model.task == "classification"
    Image.fromarray(_solid(20, 30, (250, 10, 10))).save(tmp_path / "red.png")
    images = [
        str(tmp_path / "red.png"),
        Image.fromarray(_solid(12, 12, (0, 200, 0))),
        _solid(40, 25, (0, 0, 255)),
    ]
    out = model.predict(images, batch_size=2, top_k=2)
    assert [r[0]["label"] for r in out] == ["red", "green", "blue"]
    assert [r[0]["index"] for r in out] == [0, 1, 2]
    assert all(len(r) == 2 for r in out)
    # Softmax of (10 * channel mean / 255): the red image's exact probability.
    logits = np.array([250, 10, 10]) / 255 * 10
    expected = np.exp(logits) / np.exp(logits).sum()
    assert out[0][0]["score"] == pytest.approx(expected[0], abs=1e-5)
    # One image (not a list) gives a list of one, as ImageClassifier.predict.
    assert model.predict(_solid(16, 16, (0, 0, 9)))[0][0]["label"] == "blue"


def test_fixed_batch_file_runs_any_number_of_images(tmp_path):
    model = autotimm_runtime.load(files.classifier_file(tmp_path / "c.onnx", batch=2))
    out = model.predict([_solid(16, 16, (0, 0, 200))] * 3, batch_size=3)
    assert [r[0]["label"] for r in out] == ["blue"] * 3


def test_detector_maps_boxes_back_to_the_original_image(tmp_path):
    model = autotimm_runtime.load(files.detector_file(tmp_path / "d.onnx"))
    # 64x128 letterboxed to 32: scale 0.25 both ways, padded below.
    out = model.predict([_solid(64, 128, (1, 2, 3)), _solid(32, 32, (0, 0, 0))])
    first = out[0]
    # (4, 8, 20, 24) / 0.25, its bottom clipped to the image (64 rows).
    np.testing.assert_allclose(first["boxes"], [[16, 32, 80, 64], [0, 0, 128, 64]])
    np.testing.assert_allclose(first["scores"], [0.9, 0.5])
    assert first["labels"].tolist() == [7, 3]  # category ids, not contiguous indices
    assert first["label_names"] == ["dog", "cat"]
    np.testing.assert_allclose(out[1]["boxes"], files.BOXES[0, :2])


def test_letterbox_and_crop_geometry():
    boxed, scale = letterbox(_solid(10, 20, (9, 9, 9)), 8, "bilinear", 114)
    assert boxed.shape == (8, 8, 3) and scale == (0.4, 0.4)
    assert (boxed[:4] == 9).all() and (boxed[4:] == 114).all()
    crop = resize_crop(_solid(30, 60, (5, 6, 7)), 16, 0.5, "bicubic")
    assert crop.shape == (16, 16, 3) and (crop == [5, 6, 7]).all()


def test_resize_keeps_a_constant_image_and_nearest_takes_floor_indices():
    assert (resize(_solid(7, 9, (40, 80, 120)), 13, 5, "bicubic") == [40, 80, 120]).all()
    ramp = np.arange(8, dtype=np.uint8).reshape(1, 8, 1).repeat(3, -1)
    assert resize(ramp, 1, 3, "nearest")[0, :, 0].tolist() == [0, 2, 5]  # floor(i * 8 / 3)
    with pytest.raises(ValueError, match=r"interpolation must be one of .*'lanczos'"):
        resize(ramp, 2, 2, "lanczos")


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
def test_a_window_of_the_resize_is_computed_alone_with_the_same_pixels(interpolation):
    """resize_crop computes only the crop (resize_window): the pixels must be exactly those of
    resizing the whole image and cropping, for down- and upscaling and any window."""
    from autotimm_runtime.resize import resize_window

    rng = np.random.default_rng(0)
    for (h, w), (oh, ow) in [((427, 640), (256, 383)), ((61, 97), (150, 40)), ((30, 30), (30, 70))]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        full = resize(image, oh, ow, interpolation)
        for top, left, wh, ww in [
            (0, 0, oh, ow),
            (oh // 4, ow // 3, oh // 2, ow // 2),
            (oh - 1, ow - 1, 1, 1),
        ]:
            window = resize_window(image, oh, ow, (top, left, wh, ww), interpolation)
            assert np.array_equal(window, full[top : top + wh, left : left + ww])
    image = rng.integers(0, 256, (427, 640, 3), dtype=np.uint8)
    crop = resize_crop(image, 224, 0.875, interpolation)  # short side to 256, centre 224
    assert np.array_equal(crop, resize(image, 256, 383, interpolation)[16:240, 80:304])


def test_not_an_autotimm_file_is_named(tmp_path):
    plain = files.classifier_file(tmp_path / "plain.onnx", metadata={})
    with pytest.raises(MetadataError, match=r"plain\.onnx is not an AutoTimm export"):
        autotimm_runtime.load(plain)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(MetadataError, match=r"junk\.onnx is not an ONNX model"):
        autotimm_runtime.load(junk)
    with pytest.raises(FileNotFoundError, match=r"missing\.onnx"):
        autotimm_runtime.load(tmp_path / "missing.onnx")


@pytest.mark.parametrize("key", ["input_size", "class_names", "crop_pct"])
def test_missing_metadata_key_is_named(tmp_path, key):
    meta = files.classification_metadata()
    del meta[key]
    path = files.classifier_file(tmp_path / "m.onnx", metadata=meta)
    with pytest.raises(MetadataError, match=rf"m\.onnx: metadata key 'autotimm\.{key}' is missing"):
        autotimm_runtime.load(path)


def test_detector_without_category_ids_is_named(tmp_path):
    meta = files.detection_metadata()
    del meta["category_ids"]
    with pytest.raises(MetadataError, match=r"'autotimm\.category_ids' is missing"):
        autotimm_runtime.load(files.detector_file(tmp_path / "d.onnx", metadata=meta))


def test_wrong_image_types_are_named(tmp_path):
    model = autotimm_runtime.load(files.classifier_file(tmp_path / "c.onnx"))
    with pytest.raises(TypeError, match="got dtype float32"):
        model.predict(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(TypeError, match="got int"):
        model.predict(3)
    with pytest.raises(ValueError, match=r"got \(8, 8, 2\)"):
        model.predict(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(FileNotFoundError, match=r"nope\.jpg"):
        model.predict(str(tmp_path / "nope.jpg"))
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    with pytest.raises(OSError, match=r"bad\.jpg"):
        model.predict(str(bad))


def test_cli_writes_jsonl_and_drawings(tmp_path):
    model = files.detector_file(tmp_path / "d.onnx")
    Image.fromarray(_solid(64, 128, (200, 200, 200))).save(tmp_path / "a.png")
    out = tmp_path / "out" / "pred.jsonl"
    assert (
        main(
            [
                model,
                str(tmp_path / "a.png"),
                "--output",
                str(out),
                "--draw",
                str(tmp_path / "drawn"),
            ]
        )
        == 0
    )
    line = json.loads(out.read_text().splitlines()[0])
    assert line["image"].endswith("a.png")
    assert line["prediction"]["labels"] == [7, 3]
    drawn = np.asarray(Image.open(tmp_path / "drawn" / "a.png"))
    assert drawn.shape == (64, 128, 3)
    assert (drawn[32, 16] != 200).any()  # the first box's left edge is drawn over the grey
    classifier = files.classifier_file(tmp_path / "c.onnx")
    with pytest.raises(SystemExit):
        main([classifier, str(tmp_path / "a.png"), "--draw", str(tmp_path / "x")])


def test_session_options_reach_onnxruntime(tmp_path):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    model = autotimm_runtime.load(
        files.classifier_file(tmp_path / "c.onnx"), session_options=options
    )
    used = model.session.get_session_options()
    assert used.intra_op_num_threads == 1
    assert used.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert model.predict(_solid(16, 16, (200, 0, 0)))[0][0]["label"] == "red"
