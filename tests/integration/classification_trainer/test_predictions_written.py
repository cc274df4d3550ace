"""``AutoTrainer.predict(output_dir=..., draw=True)`` on ImageClassifier: one JSON line per image
in ``predict``'s form, with the file it came from, and one drawn PNG per image."""

from __future__ import annotations

import json

import pytest
import torch
from reliability_helpers import classifier_and_data, colour_folder, trainer
from torchvision.io import read_image

from autotimm_classification import draw_classification

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


def test_predictions_jsonl_and_drawn_pngs(tmp_path):
    model, data = classifier_and_data(colour_folder(tmp_path / "data"))
    t = trainer(tmp_path / "runs", max_epochs=1, logger=False)
    t.fit(model, datamodule=data)
    out = tmp_path / "out"
    t.predict(model, datamodule=data, output_dir=out, draw=True)
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    # the predict split is val/ here: 2 images of each of the 3 colours, in data set order
    assert [line["index"] for line in lines] == list(range(6))
    assert [line["source"].split("/")[-2] for line in lines] == ["blue"] * 2 + ["green"] * 2 + [
        "red"
    ] * 2
    for line in lines:
        top = line["predictions"]
        assert [d["label"] for d in top] and {d["label"] for d in top} == {"blue", "green", "red"}
        assert [d["score"] for d in top] == sorted((d["score"] for d in top), reverse=True)
        assert sum(d["score"] for d in top) == pytest.approx(1.0, abs=1e-4)
    # the same structure as model.predict on the file
    direct = model.predict(lines[0]["source"], top_k=5)[0]
    assert [d["label"] for d in direct] == [d["label"] for d in lines[0]["predictions"]]
    pngs = sorted(out.glob("*.png"))
    assert len(pngs) == 6 and pngs[0].name.startswith("0_")
    drawn = read_image(str(pngs[0]))
    # 32 px inputs are enlarged so the captions can be read; the caption band is dark
    assert drawn.shape[0] == 3 and min(drawn.shape[1:]) >= 256


def test_draw_classification_writes_the_labels(tmp_path):
    image = torch.full((3, 40, 60), 200, dtype=torch.uint8)
    prediction = [
        {"label": "cat", "index": 0, "score": 0.9},
        {"label": "dog", "index": 1, "score": 0.1},
    ]
    path = draw_classification(image, prediction, tmp_path / "sub" / "c.png")
    drawn = read_image(str(path))
    assert drawn.shape == (3, 256, 384)
    # the band with the captions darkens the top, text pixels differ from the band
    band = drawn[:, :20, :]
    assert float(band.float().mean()) < 200 and int(band.max()) > 200
    assert bool((drawn[:, 100:, :] == 200).all())  # the rest of the image is untouched


def test_predict_dir_images_are_predicted_with_their_files(tmp_path):
    from autotimm_classification import ImageDataModule

    model, data = classifier_and_data(colour_folder(tmp_path / "data"))
    images = tmp_path / "data" / "val"  # class folders here, but predict_dir needs none
    data = ImageDataModule(
        tmp_path / "data", image_size=32, batch_size=4, num_workers=0, predict_dir=images
    )
    t = trainer(tmp_path / "runs", max_epochs=1, logger=False)
    t.fit(model, datamodule=data)
    out = tmp_path / "out"
    t.predict(model, datamodule=data, output_dir=out)
    lines = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    expected = sorted(str(p) for p in images.rglob("*") if p.is_file())
    assert len(expected) == 6
    assert [line["source"] for line in lines] == expected
    with pytest.raises(FileNotFoundError, match="predict_dir='nowhere' is not a folder"):
        ImageDataModule(tmp_path / "data", predict_dir="nowhere").setup("predict")
