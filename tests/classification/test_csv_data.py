"""ImageDataModule's CSV mode: image_path,label rows instead of class folders."""

import numpy as np
import pytest
import torch
from helpers import COLOURS, coloured_image

from autotimm_classification import ImageDataModule


def write_images(folder, names, seed=0):
    """Write a small coloured JPEG for each ``(file name, colour name)``; returns ``folder``."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name, colour in names:
        coloured_image(COLOURS[colour], rng).save(folder / name)
    return folder


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header), *(",".join(map(str, r)) for r in rows)]) + "\n")
    return path


@pytest.fixture
def csv_root(tmp_path):
    """images/ with 4 images per colour, train.csv (all 12), val.csv and test.csv (one per colour)."""
    items = [(f"{c}{i}.jpg", c) for c in sorted(COLOURS) for i in range(4)]
    write_images(tmp_path / "images", items)
    rows = [(f"images/{n}", c) for n, c in items]
    write_csv(tmp_path / "train.csv", ["image_path", "label"], rows)
    write_csv(tmp_path / "val.csv", ["image_path", "label"], rows[::4])
    write_csv(tmp_path / "test.csv", ["image_path", "label"], rows[1::4])
    return tmp_path


def dm(**kwargs) -> ImageDataModule:
    return ImageDataModule(**{"image_size": 32, "batch_size": 4, "num_workers": 0, **kwargs})


def test_csv_files_give_sorted_classes_and_all_splits(csv_root):
    data = dm(
        train_csv=csv_root / "train.csv",
        val_csv=csv_root / "val.csv",
        test_csv=csv_root / "test.csv",
    )
    data.setup("fit")
    assert data.class_names == ["blue", "green", "red"] and data.num_classes == 3
    assert len(data.train_dataset) == 12 and len(data.val_dataset) == 3
    assert len(data.test_dataset) == 3
    # paths are relative to the CSV's own folder (image_dir=None); labels follow the sorted names
    for path, label in data.train_dataset.samples:
        assert path.startswith(str(csv_root / "images"))
        assert path.rsplit("/", 1)[-1].startswith(data.class_names[label])
    images, labels = next(iter(data.train_dataloader()))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.dtype == torch.int64
    assert sum(len(b[1]) for b in data.test_dataloader()) == 3


def test_without_val_csv_a_seeded_stratified_split_validates(csv_root):
    data = dm(train_csv=csv_root / "train.csv", val_split=0.25)
    data.setup("fit")
    assert len(data.train_dataset) == 9 and sorted(data.val_dataset.targets) == [0, 1, 2]
    again = dm(train_csv=csv_root / "train.csv", val_split=0.25)
    again.setup("fit")
    assert again.val_dataset.samples == data.val_dataset.samples
    with pytest.raises(RuntimeError, match="No test split: pass test_csv"):
        data.test_dataloader()


def test_column_names_and_image_dir_are_settable(tmp_path):
    write_images(tmp_path / "pics", [("a.jpg", "red"), ("b.jpg", "blue"), ("c.jpg", "red")])
    (tmp_path / "meta").mkdir()
    csv = write_csv(
        tmp_path / "meta" / "list.csv",
        ["file", "extra", "colour"],
        [("a.jpg", "x", "red"), ("b.jpg", "y", "blue"), ("c.jpg", "z", "red")],
    )
    data = dm(
        train_csv=csv,
        image_dir=tmp_path / "pics",
        image_column="file",
        label_column="colour",
        val_split=0,
    )
    data.setup("fit")
    assert data.class_names == ["blue", "red"] and data.val_dataset is None
    assert data.train_dataset.samples == [
        (str(tmp_path / "pics" / "a.jpg"), 1),
        (str(tmp_path / "pics" / "b.jpg"), 0),
        (str(tmp_path / "pics" / "c.jpg"), 1),
    ]


def test_a_val_label_unknown_to_train_names_file_line_and_label(csv_root):
    write_csv(
        csv_root / "val.csv",
        ["image_path", "label"],
        [("images/red0.jpg", "red"), ("images/red1.jpg", "purple")],
    )
    data = dm(train_csv=csv_root / "train.csv", val_csv=csv_root / "val.csv")
    with pytest.raises(
        ValueError,
        match=r"val\.csv' line 3, column 'label': label 'purple' is not in the training CSV "
        r".*\['blue', 'green', 'red'\]",
    ):
        data.setup("fit")


def test_missing_images_are_named_by_csv_line_or_left_out_with_verify(csv_root):
    rows = [(f"images/{c}0.jpg", c) for c in sorted(COLOURS)]
    rows += [("images/gone1.jpg", "red"), ("images/gone2.jpg", "blue")]
    write_csv(csv_root / "train.csv", ["image_path", "label"], rows)
    with pytest.raises(
        FileNotFoundError,
        match=r"2 of 5 image files listed in '.*train\.csv' do not exist: "
        r"line 5: '.*gone1\.jpg'; line 6: '.*gone2\.jpg'",
    ):
        dm(train_csv=csv_root / "train.csv").setup("fit")
    data = dm(train_csv=csv_root / "train.csv", verify=True, val_split=0)
    with pytest.warns(UserWarning, match=r"left out 2 of 5 image files.*gone1\.jpg \(FileNotFound"):
        data.setup("fit")
    assert len(data.train_dataset) == 3


@pytest.mark.parametrize(
    ("text", "kwargs", "message"),
    [
        ("", {}, r"train\.csv' is empty"),
        (
            "image_path,label\n",
            {},
            r"train\.csv' has a header \['image_path', 'label'\] but no rows",
        ),
        (
            "path,label\na.jpg,red\n",
            {},
            r"train\.csv' has no column 'image_path' \(image_column\); its columns: \['path', 'label'\]",
        ),
        ("image_path,label\nimages/red0.jpg,\n", {}, r"line 2, column 'label': no label"),
        ("image_path,label\nimages/red0.jpg,red,x\n", {}, r"line 2: 3 values, but the header"),
        (
            "image_path,label\nimages/red0.jpg,red\n",
            {"label_column": "class"},
            r"no column 'class' \(label_column\)",
        ),
    ],
)
def test_bad_csv_files_fail_at_setup_naming_file_line_and_column(csv_root, text, kwargs, message):
    (csv_root / "train.csv").write_text(text)
    with pytest.raises(ValueError, match=message):
        dm(train_csv=csv_root / "train.csv", **kwargs).setup("fit")


def test_a_missing_csv_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"CSV file '.*nope\.csv' not found"):
        dm(train_csv=tmp_path / "nope.csv").setup("fit")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"train_csv": "t.csv", "dataset_name": "digits"}, "pass train_csv .* or dataset_name"),
        ({"train_csv": "t.csv", "data_dir": "./data"}, "pass train_csv .* or data_dir"),
        ({"val_csv": "v.csv"}, "val_csv need.* train_csv"),
        ({"data_dir": "./data", "test_csv": "t.csv"}, "test_csv need.* train_csv"),
        ({"train_csv": "t.csv", "label_column": "image_path"}, "image_column and label_column"),
    ],
)
def test_two_data_sources_are_refused_at_construction(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dm(**kwargs)


def test_folder_mode_keeps_its_default_data_dir():
    data = dm()
    assert str(data.data_dir) == "data" and data.train_csv is None
