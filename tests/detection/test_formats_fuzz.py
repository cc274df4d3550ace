"""Fuzzed YOLO, Pascal VOC and CSV annotations. The only outcomes allowed are loaded records
whose boxes are finite, inside their image and of a known class, or a ValueError /
FileNotFoundError whose message names the file that is wrong."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from shapes import assert_valid_records

from autotimm_detection.data.formats import load_csv, load_voc, load_yolo

FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
W, H = 40, 30

token = st.one_of(
    st.sampled_from(["0", "1", "2", "-1", "0.5", "1.5", "-0.2", "nan", "inf", "1e400", "x", ""]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-5, 5).map(str),
    st.text(alphabet=" \t,;#\\x00é", max_size=3),
)
line = st.lists(token, min_size=0, max_size=7).map(" ".join)
text_file = st.lists(line, max_size=5).map("\n".join)


def _load_or_named_error(load, *names: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loaded = load()
    except (ValueError, FileNotFoundError) as err:
        assert any(n in str(err) for n in names), str(err)
        return
    assert_valid_records(loaded)


# ----------------------------------------------------------------------------- YOLO
@pytest.fixture(scope="module")
def yolo_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("yolo")
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (W, H), (90, 20, 20)).save(root / "images" / "train" / "a.png")
    return root


@FUZZ
@given(label=text_file)
def test_yolo_label_files_survive_garbage(label, yolo_root):
    (yolo_root / "data.yaml").write_text("train: images/train\nnames: [cat, dog]\n")
    (yolo_root / "labels" / "train" / "a.txt").write_text(label)
    _load_or_named_error(lambda: load_yolo(yolo_root / "data.yaml"), "a.txt")


yaml_value = st.one_of(
    st.none(),
    st.integers(-3, 3),
    st.sampled_from(["images/train", "nope", "", "[a, b]", "{0: a}", "{x: 1}"]),
    st.lists(st.sampled_from(["cat", "", "1", "images/train"]), max_size=3),
)


@FUZZ
@given(
    entries=st.dictionaries(
        st.sampled_from(["path", "train", "val", "names", "nc"]), yaml_value, max_size=5
    )
)
def test_yolo_data_yaml_survives_garbage(entries, yolo_root):
    import yaml

    (yolo_root / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (yolo_root / "data.yaml").write_text(yaml.safe_dump(entries))
    _load_or_named_error(lambda: load_yolo(yolo_root / "data.yaml"), "data.yaml")


# ----------------------------------------------------------------------------- VOC
number = st.one_of(st.integers(-5, 60).map(str), token)
voc_object = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["cat", "dog", "", " cat "]),
        "difficult": st.sampled_from(["0", "1", "2", "x", ""]),
        "xmin": number,
        "ymin": number,
        "xmax": number,
        "ymax": number,
    },
)
voc_doc = st.fixed_dictionaries(
    {"objects": st.lists(voc_object, max_size=4)},
    optional={"width": number, "height": number, "raw": st.sampled_from(["<", "&", "<a>"])},
)


def _xml(doc: dict) -> str:
    if "raw" in doc:
        return doc["raw"]
    size = "".join(f"<{k}>{doc[k]}</{k}>" for k in ("width", "height") if k in doc)
    objs = ""
    for o in doc["objects"]:
        box = "".join(f"<{k}>{o[k]}</{k}>" for k in ("xmin", "ymin", "xmax", "ymax") if k in o)
        extra = "".join(f"<{k}>{o[k]}</{k}>" for k in ("name", "difficult") if k in o)
        objs += f"<object>{extra}<bndbox>{box}</bndbox></object>"
    return f"<annotation><size>{size}</size>{objs}</annotation>"


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("voc")
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True)
    Image.new("RGB", (W, H), (90, 20, 20)).save(root / "JPEGImages" / "a.jpg")
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    return root


@FUZZ
@given(doc=voc_doc)
def test_voc_xml_survives_garbage(doc, voc_root):
    (voc_root / "Annotations" / "a.xml").write_text(_xml(doc))
    _load_or_named_error(lambda: load_voc(voc_root, "train"), "a.xml")


# ----------------------------------------------------------------------------- CSV
csv_cell = st.one_of(number, st.sampled_from(["cat", "dog", "a.png", "nope.png", '"', ""]))
csv_row = st.lists(csv_cell, min_size=0, max_size=7).map(",".join)


@FUZZ
@given(rows=st.lists(csv_row, max_size=5), header=st.booleans())
def test_detection_csv_survives_garbage(rows, header, tmp_path_factory):
    root = tmp_path_factory.mktemp("csv")
    Image.new("RGB", (W, H), (90, 20, 20)).save(root / "a.png")
    lines = (["image_path,x_min,y_min,x_max,y_max,label"] if header else []) + rows
    (root / "train.csv").write_text("\n".join(lines) + "\n")
    _load_or_named_error(lambda: load_csv(root / "train.csv", root), "train.csv")
