"""Fuzzed classification CSV files (single- and multi-label). The only outcomes allowed are a
set-up data module whose targets are valid, or a ValueError / FileNotFoundError naming the CSV."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from autotimm_classification import ImageDataModule, MultiLabelImageDataModule

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
cell = st.one_of(
    st.sampled_from(["a.png", "b.png", "nope.png", "", "cat", "dog", "0", "1", "2", "-1", '"']),
    st.text(alphabet=" ,;\t\\x00é", max_size=3),
)
row = st.lists(cell, min_size=0, max_size=4).map(",".join)
header = st.sampled_from(["image_path,label", "image,cat,dog", "image,tags", "label", ""])


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("csv-images")
    for name in ("a.png", "b.png"):
        Image.new("RGB", (20, 16), (10, 200, 30)).save(root / name)
    return root


def _setup_or_named_error(data, csv_path) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data.setup("fit")
    except (ValueError, FileNotFoundError) as err:
        assert csv_path.name in str(err), str(err)
        return
    n = data.num_classes
    assert n >= 1 and len(data.class_names) == n
    for target in data.train_dataset.targets:
        if isinstance(target, torch.Tensor):
            assert target.shape == (n,) and set(target.unique().tolist()) <= {0.0, 1.0}
        else:
            assert 0 <= target < n


@FUZZ
@given(head=header, rows=st.lists(row, max_size=4))
def test_single_label_csv_survives_garbage(head, rows, image_dir):
    path = image_dir / "train.csv"
    path.write_text("\n".join([head, *rows]) + "\n")
    data = ImageDataModule(train_csv=path, val_split=0, image_size=16, num_workers=0)
    _setup_or_named_error(data, path)


@FUZZ
@given(head=header, rows=st.lists(row, max_size=4), tags=st.booleans())
def test_multi_label_csv_survives_garbage(head, rows, tags, image_dir):
    path = image_dir / "labels.csv"
    path.write_text("\n".join([head, *rows]) + "\n")
    column = {"labels_column": "tags"} if tags else {}
    data = MultiLabelImageDataModule(
        path, image_dir=image_dir, val_split=0, image_size=16, num_workers=0, **column
    )
    _setup_or_named_error(data, path)
