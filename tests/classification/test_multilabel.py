"""MultiLabelImageDataModule, multi-label training with mAP/F1 metrics, and predict(threshold=)."""

import math

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from helpers import COLOURS, coloured_image
from torchmetrics.functional.classification import multilabel_average_precision, multilabel_f1_score

from autotimm_classification import ImageClassifier, MultiLabelImageDataModule
from autotimm_core import MetricConfig

#: Rows of a small multi-label set: file name, its tags (its colour and whether it is "bright").
ROWS = [(f"{c}{i}.jpg", c, i % 2) for c in sorted(COLOURS) for i in range(4)]


def write_images(folder):
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour, _ in ROWS:
        coloured_image(COLOURS[colour], rng).save(folder / name)


def write_csv(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def binary_csv(tmp_path):
    """images/ and labels.csv: image,red,green,blue,bright (0/1 columns; red first on purpose)."""
    write_images(tmp_path / "images")
    lines = ["image,red,green,blue,bright"]
    for name, colour, bright in ROWS:
        flags = [int(colour == c) for c in ("red", "green", "blue")]
        lines.append(",".join([f"images/{name}", *map(str, flags), str(bright)]))
    return write_csv(tmp_path / "labels.csv", lines)


@pytest.fixture
def tags_csv(tmp_path):
    """images/ and tags.csv: path,tags with space-separated tags; blue images have no tag."""
    write_images(tmp_path / "images")
    lines = ["path,tags"]
    for name, colour, bright in ROWS:
        tags = [] if colour == "blue" else [colour] + (["bright"] if bright else [])
        lines.append(f"images/{name},{' '.join(tags)}")
    return write_csv(tmp_path / "tags.csv", lines)


def dm(train_csv, **kwargs) -> MultiLabelImageDataModule:
    kwargs = {"image_dir": None, "image_size": 32, "batch_size": 4, "num_workers": 0, **kwargs}
    return MultiLabelImageDataModule(train_csv, **kwargs)


def test_binary_columns_give_multi_hot_float_targets_in_column_order(binary_csv):
    data = dm(binary_csv, val_split=0.25)
    data.setup("fit")
    assert data.class_names == ["red", "green", "blue", "bright"] and data.num_classes == 4
    assert data.label_names == data.class_names and data.num_labels == 4  # upstream's names
    assert len(data.train_dataset) == 9 and len(data.val_dataset) == 3
    by_file = dict(data.train_dataset.samples + data.val_dataset.samples)
    assert torch.equal(
        by_file[str(binary_csv.parent / "images" / "red1.jpg")], torch.tensor([1.0, 0, 0, 1])
    )
    assert torch.equal(
        by_file[str(binary_csv.parent / "images" / "blue0.jpg")], torch.tensor([0.0, 0, 1, 0])
    )
    images, targets = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert targets.shape == (4, 4) and targets.dtype == torch.float32
    again = dm(binary_csv, val_split=0.25)
    again.setup("fit")
    assert [p for p, _ in again.val_dataset.samples] == [p for p, _ in data.val_dataset.samples]


def test_chosen_label_columns_and_image_dir_relative_to_the_working_directory(
    binary_csv, monkeypatch
):
    monkeypatch.chdir(binary_csv.parent)
    data = MultiLabelImageDataModule(
        "labels.csv",
        label_columns=["bright", "red"],
        image_column="image",
        val_split=0,
        image_size=32,
        num_workers=0,
    )  # image_dir="." (upstream's default): the working directory
    data.setup("fit")
    assert data.class_names == ["bright", "red"]
    path, target = data.train_dataset.samples[-1]  # red3.jpg
    assert path == "./images/red3.jpg" and torch.equal(target, torch.tensor([1.0, 1.0]))


def test_one_column_of_delimited_labels(tags_csv, tmp_path):
    data = dm(tags_csv, labels_column="tags", val_split=0)
    data.setup("fit")
    assert data.class_names == ["bright", "green", "red"]  # sorted labels of the training CSV
    targets = dict(data.train_dataset.samples)
    images = tags_csv.parent / "images"
    assert torch.equal(targets[str(images / "green1.jpg")], torch.tensor([1.0, 1.0, 0.0]))
    assert torch.equal(targets[str(images / "blue2.jpg")], torch.zeros(3))  # no labels
    comma = write_csv(tmp_path / "comma.csv", ["path,tags", 'images/red0.jpg,"red, bright"'])
    data = dm(comma, labels_column="tags", label_delimiter=",", val_split=0)
    data.setup("fit")
    assert data.class_names == ["bright", "red"]


def test_a_test_label_unknown_to_train_names_file_line_and_label(tags_csv, tmp_path):
    test = write_csv(
        tmp_path / "test.csv", ["path,tags", "images/red0.jpg,red", "images/red1.jpg,red pink"]
    )
    data = dm(tags_csv, labels_column="tags", test_csv=test)
    with pytest.raises(
        ValueError,
        match=r"test\.csv' line 3, column 'tags': label 'pink' is not in the training CSV .*tags\.csv",
    ):
        data.setup("fit")


@pytest.mark.parametrize(
    ("lines", "kwargs", "message"),
    [
        ([], {}, r"train\.csv' is empty"),
        (
            ["image,a,b", "images/red0.jpg,1,2"],
            {},
            r"train\.csv' line 2, column 'b': expected 0 or 1, got '2'",
        ),
        (
            ["image,a,b", "images/red0.jpg,1,0", "images/red1.jpg,yes,0"],
            {},
            r"line 3, column 'a': expected 0 or 1, got 'yes'",
        ),
        (
            ["image,a", "images/red0.jpg,1"],
            {"label_columns": ["a", "c"]},
            r"no column 'c' \(label_columns\); its columns: \['image', 'a'\]",
        ),
        (
            ["image,a", "images/red0.jpg,1"],
            {"labels_column": "tags"},
            r"no column 'tags' \(labels_column\)",
        ),
        (
            ["image,a", "images/red0.jpg,1"],
            {"image_column": "file"},
            r"no column 'file' \(image_column\)",
        ),
        (["image", "images/red0.jpg"], {}, r"has only the image column 'image'"),
        (
            ["image,tags", "images/red0.jpg,"],
            {"labels_column": "tags"},
            r"column 'tags' holds no labels",
        ),
    ],
)
def test_bad_csv_input_is_named_by_file_line_and_column(tmp_path, lines, kwargs, message):
    write_images(tmp_path / "images")
    csv = tmp_path / "train.csv"
    csv.write_text("\n".join(lines))
    with pytest.raises(ValueError, match=message):
        dm(csv, **kwargs).setup("fit")


def test_val_columns_must_match_the_training_columns(binary_csv, tmp_path):
    val = write_csv(tmp_path / "val.csv", ["image,red,green,blue", "images/red0.jpg,1,0,0"])
    with pytest.raises(ValueError, match=r"val\.csv' line 1: .*missing here: \['bright'\]"):
        dm(binary_csv, val_csv=val).setup("fit")


def test_missing_images_are_named_by_line_or_left_out_with_verify(tmp_path):
    write_images(tmp_path / "images")
    csv = write_csv(tmp_path / "t.csv", ["image,a", "images/red0.jpg,1", "images/nope.jpg,0"])
    with pytest.raises(FileNotFoundError, match=r"1 of 2 image files .* line 3: '.*nope\.jpg'"):
        dm(csv).setup("fit")
    data = dm(csv, verify=True, val_split=0)
    with pytest.warns(UserWarning, match=r"left out 1 of 2 image files.*nope\.jpg"):
        data.setup("fit")
    assert len(data.train_dataset) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"label_columns": ["a"], "labels_column": "tags"}, "pass one of them"),
        ({"label_columns": "a"}, "label_columns must be a list of column names"),
        ({"label_delimiter": ""}, "label_delimiter must be a non-empty string"),
        ({"val_split": 1.5}, r"val_split must be in \[0, 1\)"),
    ],
)
def test_bad_settings_fail_at_construction(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        dm(tmp_path / "t.csv", **kwargs)


def multilabel_metrics(num_labels):
    """mAP and F1 (micro, macro) as the docs configure them. The task wrappers (AveragePrecision,
    F1Score) get task and num_labels filled in; the Multilabel* class takes num_labels itself."""
    return [
        MetricConfig(
            name="mAP",
            metric_class="MultilabelAveragePrecision",
            params={"num_labels": num_labels, "average": "macro"},
            stages=["val"],
        ),
        MetricConfig(
            name="ap",
            metric_class="AveragePrecision",
            params={"task": "multilabel"},
            stages=["val"],
        ),
        MetricConfig(
            name="f1_micro", metric_class="F1Score", params={"average": "micro"}, stages=["val"]
        ),
        MetricConfig(
            name="f1_macro", metric_class="F1Score", params={"average": "macro"}, stages=["val"]
        ),
    ]


def test_multilabel_metric_configs_compute_what_torchmetrics_computes():
    model = ImageClassifier(
        "test_resnet",
        num_classes=3,
        pretrained=False,
        multi_label=True,
        metrics=multilabel_metrics(3),
    )
    probs = torch.tensor([[0.9, 0.2, 0.6], [0.1, 0.8, 0.4], [0.7, 0.3, 0.2], [0.4, 0.6, 0.2]])
    target = torch.tensor([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    model.metric_manager.update("val", probs, target)
    out = {k: float(v) for k, (v, _) in model.metric_manager.compute("val").items()}
    expected_map = float(multilabel_average_precision(probs, target, num_labels=3))
    assert out["val/mAP"] == pytest.approx(expected_map) and out["val/ap"] == pytest.approx(
        expected_map
    )
    assert out["val/f1_micro"] == pytest.approx(
        float(multilabel_f1_score(probs, target, 3, average="micro"))
    )
    assert out["val/f1_macro"] == pytest.approx(
        float(multilabel_f1_score(probs, target, 3, average="macro"))
    )
    assert out["val/f1_micro"] != pytest.approx(out["val/f1_macro"])  # the two averages differ here


def test_multi_label_model_trains_and_validates_with_multilabel_metrics(binary_csv):
    data = dm(binary_csv, val_split=0.25)
    model = ImageClassifier(
        "test_resnet",
        num_classes=4,
        pretrained=False,
        multi_label=True,
        metrics=multilabel_metrics(4),
    )
    trainer = pl.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 2  # 9 training images, batches of 4, the last one dropped
    assert model.class_names == ["red", "green", "blue", "bright"]  # taken from the data module
    logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
    for name in ("val/mAP", "val/ap", "val/f1_micro", "val/f1_macro"):
        assert 0.0 <= logged[name] <= 1.0, name
    assert math.isfinite(logged["val/loss"]) and math.isfinite(logged["train/loss"])


def test_predict_with_threshold_gives_every_label_at_or_above_it_highest_first(binary_csv):
    images = [str(binary_csv.parent / "images" / n) for n in ("red0.jpg", "blue1.jpg")]
    model = ImageClassifier(
        "test_resnet",
        pretrained=False,
        multi_label=True,
        class_names=["red", "green", "blue", "bright"],
    )
    everything = model.predict(images, threshold=0.0)
    assert [len(r) for r in everything] == [4, 4]
    for result in everything:
        scores = [r["score"] for r in result]
        assert scores == sorted(scores, reverse=True)
        assert {r["label"] for r in result} == {"red", "green", "blue", "bright"}
        assert all(model.class_names[r["index"]] == r["label"] for r in result)
    cut = sorted(r["score"] for r in everything[0])[1]  # keeps the three highest of image 0
    kept = model.predict(images, threshold=cut)
    assert [r["label"] for r in kept[0]] == [r["label"] for r in everything[0][:3]]
    assert all(r["score"] >= cut for r in kept[1])
    above = everything[0][0]["score"] + 1e-4  # above every score of image 0: no label
    assert model.predict(images[0], threshold=min(above, 1.0))[0] == []
    assert len(model.predict(images, top_k=2)[0]) == 2  # top-k stays the default form
    with pytest.raises(ValueError, match=r"threshold must be a number in \[0, 1\], got 1.5"):
        model.predict(images, threshold=1.5)


def test_threshold_on_a_single_label_model_says_to_use_top_k(binary_csv):
    model = ImageClassifier("test_resnet", num_classes=3, pretrained=False)
    with pytest.raises(ValueError, match=r"threshold applies to multi-label models.*use top_k"):
        model.predict(str(binary_csv.parent / "images" / "red0.jpg"), threshold=0.5)


def test_balanced_sampling_for_multilabel_data(binary_csv):
    from autotimm_core.distributed import WeightedDistributedSampler

    data = MultiLabelImageDataModule(
        binary_csv, image_dir=binary_csv.parent, image_size=32, batch_size=4, num_workers=0,
        val_split=0, balanced_sampling=True,
    )  # fmt: skip
    data.setup("fit")
    sampler = data.train_dataloader().sampler
    assert isinstance(sampler, WeightedDistributedSampler)
    # Each image weighs as its rarest label: 4 images per colour, 6 bright ones.
    assert sampler.weights.tolist() == pytest.approx([1 / 4] * 12)
    counts = data.class_counts()
    assert counts.per_class == [4, 4, 4, 6] and counts.samples == 12
