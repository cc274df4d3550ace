"""``autotimm export``: a short fit's checkpoint to an ONNX file with the runtime's metadata."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from reliability_helpers import classifier_and_data, colour_folder, trainer

from autotimm_core.export import load_onnx, run_onnx, sample_images
from autotimm_trainer import cli

onnx = pytest.importorskip("onnx", reason="needs the autotimm-core[export] extra")

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """One epoch of a tiny classifier: its best checkpoint and the model that wrote it."""
    root = tmp_path_factory.mktemp("fit")
    model, data = classifier_and_data(colour_folder(root / "data"))
    t = trainer(root / "out", max_epochs=1)
    t.fit(model, datamodule=data)
    return model.eval(), t.checkpoint_callback.best_model_path


def _metadata(path):
    return {p.key: json.loads(p.value) for p in onnx.load(str(path)).metadata_props}


def test_export_from_the_checkpoint_alone(fitted, tmp_path):
    model, ckpt = fitted
    out = tmp_path / "model.onnx"
    cli.main(["export", "--ckpt_path", ckpt, "--output", str(out), "--image_size", "40"])
    meta = _metadata(out)
    assert meta["autotimm.task"] == "classification"
    # The class names come from the data module the fit saw, through the checkpoint.
    assert meta["autotimm.class_names"] == ["blue", "green", "red"]
    assert meta["autotimm.input_size"] == [40, 40]
    session = load_onnx(out)
    images = sample_images(40, 3, seed=2)
    with torch.no_grad():
        expected = model.probabilities(model(images)).numpy()
    np.testing.assert_allclose(run_onnx(session, images)["probabilities"], expected, atol=1e-4)


def test_export_with_the_run_config_and_a_fixed_batch(fitted, tmp_path):
    _, ckpt = fitted
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": {"class_path": "ImageClassifier"}}))
    out = tmp_path / "m.onnx"
    cli.main(
        [
            *("export", "--config", str(config), "--ckpt_path", ckpt, "--output", str(out)),
            *("--batch_size", "2", "--opset", "18", "--no-check"),
        ]
    )
    proto = onnx.load(str(out))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [18]
    assert load_onnx(out).get_inputs()[0].shape == [2, 3, 32, 32]


def test_unknown_task_is_named(tmp_path):
    ckpt = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {}}, ckpt)
    with pytest.raises(ValueError, match=r"plain\.ckpt does not record its task class.*--config"):
        cli.main(["export", "--ckpt_path", str(ckpt), "--output", str(tmp_path / "m.onnx")])
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"model": {"class_path": "NoSuchTask"}}))
    with pytest.raises(ValueError, match=r"unknown task class 'NoSuchTask'.*ImageClassifier"):
        cli.main(
            ["export", "--ckpt_path", str(ckpt), "--config", str(config), "--output", "m.onnx"]
        )
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: missing\.ckpt"):
        cli.main(["export", "--ckpt_path", "missing.ckpt", "--output", "m.onnx"])
