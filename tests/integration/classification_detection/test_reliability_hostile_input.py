"""Fuzzed hostile input: malformed COCO JSON and odd image-folder trees. The only outcomes allowed
are a loaded data set or a ValueError/FileNotFoundError whose message names the file/folder."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import pytest
import reliability_helpers  # noqa: F401  (puts tests/detection on sys.path)
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image
from shapes import assert_valid_records

from autotimm_classification import ImageDataModule
from autotimm_detection.data.coco import load_coco

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# ----------------------------------------------------------------------------- COCO JSON
scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=4),
)
ident = st.one_of(st.integers(-2, 8), scalar)
number = st.one_of(st.integers(-50, 300), st.floats(-1e12, 1e12), scalar)
junk = st.one_of(
    scalar, st.lists(scalar, max_size=2), st.dictionaries(st.text(max_size=3), scalar, max_size=2)
)

image_entry = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "id": ident,
            "file_name": st.one_of(
                st.sampled_from(["a.png", "b.png", "nope.png", "", "."]), scalar
            ),
            "width": number,
            "height": number,
        },
    ),
    junk,
)
annotation_entry = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "image_id": ident,
            "category_id": ident,
            "bbox": st.one_of(st.lists(number, min_size=0, max_size=5), junk),
            "area": number,
            "iscrowd": st.one_of(st.integers(0, 1), scalar),
        },
    ),
    junk,
)
category_entry = st.one_of(
    st.fixed_dictionaries(
        {}, optional={"id": ident, "name": st.one_of(st.text(max_size=4), scalar)}
    ),
    junk,
)
coco_doc = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "images": st.one_of(st.lists(image_entry, max_size=4), junk),
            "annotations": st.one_of(st.lists(annotation_entry, max_size=6), junk),
            "categories": st.one_of(st.lists(category_entry, max_size=3), junk),
        },
    ),
    junk,
)
# Mostly-valid documents, so that the fuzzing also reaches the per-annotation checks.
valid_images = st.just(
    [
        {"id": 1, "file_name": "a.png", "width": 40, "height": 30},
        {"id": 2, "file_name": "b.png", "width": 40, "height": 30},
    ]
)
valid_categories = st.just([{"id": 1, "name": "x"}, {"id": 5, "name": "y"}])
near_valid_doc = st.fixed_dictionaries(
    {
        "images": st.one_of(valid_images, st.lists(image_entry, max_size=3)),
        "annotations": st.lists(annotation_entry, max_size=6),
        "categories": st.one_of(valid_categories, st.lists(category_entry, max_size=3)),
    }
)


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco")
    for name in ("a.png", "b.png"):
        Image.new("RGB", (40, 30), (120, 20, 20)).save(root / name)
    return root


def _check_coco(doc, coco_dir: Path) -> None:
    path = coco_dir / "ann.json"
    path.write_text(json.dumps(doc, allow_nan=True))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = load_coco(path, coco_dir)
    except (ValueError, FileNotFoundError) as err:
        assert str(path) in str(err) or "ann.json" in str(err), str(err)
        return
    # Loaded: every box is finite, inside its image and labelled with a known category.
    assert_valid_records(result)
    assert all(rec.path.is_file() for rec in result.records)


@FUZZ
@given(doc=coco_doc)
def test_coco_loader_survives_malformed_json(doc, coco_dir):
    _check_coco(doc, coco_dir)


IMG = {"id": 1, "file_name": "a.png", "width": 40, "height": 30}
CATS = [{"id": 1}]


def _ann(**kw):
    return {
        "images": [IMG],
        "categories": CATS,
        "annotations": [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 5, 5], **kw}],
    }


@FUZZ
@given(doc=near_valid_doc)
# Cases that broke the loader before (TypeError, OverflowError, NaN boxes let through):
@example(doc={"images": [dict(IMG, id=None)], "annotations": [], "categories": CATS})
@example(doc={"images": [dict(IMG, file_name=5)], "annotations": [], "categories": CATS})
@example(doc={"images": [dict(IMG, width=-3)], "annotations": [], "categories": CATS})
@example(doc={"images": [IMG], "annotations": [], "categories": [{"id": float("inf")}]})
@example(doc=_ann(bbox=[float("nan"), 0, 5, 5]))
@example(doc=_ann(bbox=[0, 0, 10**400, 5]))
@example(doc=_ann(area=float("nan")))
@example(doc=_ann(image_id={}))
def test_coco_loader_survives_bad_annotations(doc, coco_dir):
    _check_coco(doc, coco_dir)


def test_coco_loader_rejects_non_json_and_missing_file(coco_dir):
    bad = coco_dir / "broken.json"
    bad.write_text('{"images": [')
    with pytest.raises(ValueError, match=r"broken\.json: not valid JSON"):
        load_coco(bad, coco_dir)
    with pytest.raises(FileNotFoundError, match="annotation file not found"):
        load_coco(coco_dir / "absent.json", coco_dir)


# ----------------------------------------------------------------------------- image folders
ENTRY_KINDS = [
    "png",
    "garbage.jpg",
    "empty.png",
    "notes.txt",
    "unreadable.png",
    "loop_link",
    "dangling.png",
    "dir.png",
    "nested/deep.png",
]
tree = st.dictionaries(
    st.sampled_from(["cat", "dog", "eel", ".hidden"]),
    st.lists(st.sampled_from(ENTRY_KINDS), max_size=5),
    max_size=3,
)


def _write_entry(folder: Path, kind: str, i: int) -> None:
    if kind == "png":
        Image.new("RGB", (12, 10), (i * 40 % 255, 90, 30)).save(folder / f"img{i}.png")
    elif kind == "garbage.jpg":
        (folder / f"g{i}.jpg").write_bytes(os.urandom(64))
    elif kind == "empty.png":
        (folder / f"e{i}.png").write_bytes(b"")
    elif kind == "notes.txt":
        (folder / f"n{i}.txt").write_text("not an image")
    elif kind == "unreadable.png":
        p = folder / f"u{i}.png"
        Image.new("RGB", (12, 10)).save(p)
        p.chmod(0)  # unreadable for a normal user (root reads it anyway)
    elif kind == "loop_link":
        link = folder / f"loop{i}"
        if not link.exists():
            link.symlink_to(folder, target_is_directory=True)  # a symlink loop
    elif kind == "dangling.png":
        (folder / f"d{i}.png").symlink_to(folder / "does-not-exist.png")
    elif kind == "dir.png":
        (folder / f"dir{i}.png").mkdir(exist_ok=True)
    elif kind == "nested/deep.png":
        (folder / "nested").mkdir(exist_ok=True)
        Image.new("RGB", (12, 10), (10, 10, 200)).save(folder / "nested" / f"deep{i}.png")


def _build_tree(root: Path, spec: dict[str, list[str]]) -> None:
    (root / "train").mkdir(parents=True)
    for name, kinds in spec.items():
        folder = root / "train" / name
        folder.mkdir()
        for i, kind in enumerate(kinds):
            _write_entry(folder, kind, i)


@FUZZ
@given(spec=tree, verify=st.booleans())
def test_folder_loader_survives_odd_trees(spec, verify):
    root = Path(tempfile.mkdtemp(prefix="odd_tree_"))
    try:
        _build_tree(root, spec)
        data = ImageDataModule(
            root, image_size=16, batch_size=2, num_workers=0, val_split=0.0, verify=verify
        )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                data.setup("fit")
        except (ValueError, FileNotFoundError) as err:
            assert str(root) in str(err), str(err)
            return
        dataset = data.train_dataset
        assert len(dataset) > 0
        paths = [p for p, _ in dataset.samples]
        assert len(paths) == len(set(paths))
        assert not any(f"{os.sep}loop" in p for p in paths)  # a symlink loop is entered once
        assert data.num_classes == len(data.class_names) > 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for batch in data.train_dataloader():
                if batch is not None:  # None: every image of the batch was unreadable
                    images, labels = batch
                    assert images.shape[1:] == (3, 16, 16)
                    assert math.isfinite(float(images.float().sum()))
                    assert ((labels >= 0) & (labels < data.num_classes)).all()
    finally:
        for p in root.rglob("*"):
            if p.is_file() and not p.is_symlink():
                p.chmod(0o644)
        shutil.rmtree(root, ignore_errors=True)


def test_missing_and_empty_folders_name_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        ImageDataModule(tmp_path / "absent", num_workers=0).setup("fit")
    (tmp_path / "empty" / "train").mkdir(parents=True)
    with pytest.raises(ValueError, match="has no class folders"):
        ImageDataModule(tmp_path / "empty", num_workers=0).setup("fit")
