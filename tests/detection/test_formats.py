"""YOLO, Pascal VOC and CSV detection data: the same records and mAP as COCO, and bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from shapes import make_dataset, make_split, to_csv, to_voc, to_yolo

from autotimm_detection import COCOMeanAveragePrecision, DetectionDataModule
from autotimm_detection.data import load_csv, load_voc, load_yolo

FORMAT_WRITERS = {"yolo": to_yolo, "voc": to_voc, "csv": to_csv}


@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    """One generated set (6 train, 4 val images of 128x96, some without objects) in all four
    layouts: ``{format: root}``."""
    base = tmp_path_factory.mktemp("formats")
    coco = base / "coco"
    # Every class occurs in training (VOC and CSV take their classes from it); validation has
    # images without objects.
    make_split(coco, "train", 6, seed=1)
    make_split(coco, "val", 4, seed=2, empty_every=3)
    roots = {"coco": coco}
    for name, write in FORMAT_WRITERS.items():
        roots[name] = write(roots["coco"], base / name)
    return roots


def _dm(root, **kw):
    return DetectionDataModule(root, image_size=64, batch_size=2, num_workers=0, **kw)


def _key(path):
    """An image's name without the split prefix that the VOC copy adds."""
    return path.stem.rsplit("_", 1)[-1]


def _by_image(dm, split):
    """``{file stem: (boxes, class names, crowd, area)}`` of a split's records."""
    names = dict(zip(dm.category_ids, dm.class_names))
    ann = dm._load(split)
    return {
        _key(r.path): (r.boxes, [names[int(c)] for c in r.category_ids], r.iscrowd, r.area)
        for r in ann.records
    }


def _fixed_predictions(coco_dm):
    """Detections in class-name space, the same for every layout: the validation boxes shifted
    by a few pixels with decreasing scores, some relabelled, plus a false positive per image."""
    rng = np.random.default_rng(0)
    preds = {}
    for stem, (boxes, names, _, _) in sorted(_by_image(coco_dm, "val").items()):
        shifted = boxes + rng.uniform(-4, 4, size=boxes.shape).astype(np.float32)
        labels = [n if rng.random() > 0.25 else "blue" for n in names] + ["red"]
        preds[stem] = (
            np.concatenate([shifted, [[5, 5, 30, 30]]]).astype(np.float32),
            rng.uniform(0.1, 1.0, size=len(labels)).astype(np.float32),
            labels,
        )
    return preds


def _map(dm, preds):
    label_of = {n: i for i, n in enumerate(dm.class_names)}
    metric = COCOMeanAveragePrecision(backend="pycocotools")
    dm.setup("validate")
    for i in range(len(dm.datasets["val"])):
        _, t = dm.datasets["val"][i]
        stem = _key(dm.datasets["val"].records[i].path)
        boxes, scores, names = preds[stem]
        pred = {
            "boxes": torch.from_numpy(boxes),
            "scores": torch.from_numpy(scores),
            "labels": torch.tensor([label_of[n] for n in names]),
        }
        target = {
            "boxes": t["orig_boxes"],
            "labels": t["orig_labels"],
            "iscrowd": t["orig_iscrowd"].long(),
            "area": t["orig_area"],
        }
        metric.update([pred], [target])
    return {k: float(v) for k, v in metric.compute().items()}


def test_every_layout_gives_the_coco_records_and_the_same_map(layouts):
    coco = _dm(layouts["coco"])
    assert coco.format == "coco"
    reference = {s: _by_image(coco, s) for s in ("train", "val")}
    assert any(len(v[0]) == 0 for v in reference["val"].values())  # negatives are compared too
    preds = _fixed_predictions(coco)
    expected_map = _map(coco, preds)
    assert 0.1 < expected_map["map"] < 0.95  # a score that the comparison can tell apart
    for name in FORMAT_WRITERS:
        dm = _dm(layouts[name])
        assert dm.format == name and sorted(dm.class_names) == ["blue", "green", "red"]
        for split in ("train", "val"):
            got = _by_image(dm, split)
            assert got.keys() == reference[split].keys(), (name, split)
            for stem, (boxes, names, crowd, area) in reference[split].items():
                g_boxes, g_names, g_crowd, g_area = got[stem]
                np.testing.assert_allclose(g_boxes, boxes, atol=1e-3, err_msg=f"{name} {stem}")
                assert g_names == names and g_crowd.tolist() == crowd.tolist()
                np.testing.assert_allclose(g_area, area, rtol=1e-4)
        assert _map(dm, preds) == pytest.approx(expected_map, abs=1e-6), name


def test_yolo_class_ids_are_its_indices_and_voc_csv_names_are_sorted(layouts):
    yolo = _dm(layouts["yolo"])
    assert yolo.category_ids == [0, 1, 2] and yolo.class_names == ["red", "green", "blue"]
    for name in ("voc", "csv"):
        dm = _dm(layouts[name])
        assert dm.category_ids == [0, 1, 2] and dm.class_names == ["blue", "green", "red"]
    # The loaders work as for COCO.
    yolo.setup("fit")
    images, targets = next(iter(yolo.train_dataloader()))
    assert images.shape == (2, 3, 64, 64) and len(targets) == 2


def test_auto_prefers_coco_and_explicit_format_arguments_are_checked(layouts, tmp_path):
    both = make_dataset(tmp_path / "both", 2, 2)
    to_yolo(both, both)  # a data.yaml beside the COCO files
    assert _dm(both).format == "coco" and _dm(both, format="yolo").format == "yolo"
    with pytest.raises(ValueError, match=r"format must be one of \['auto', 'coco', 'yolo'"):
        _dm(both, format="kitti")
    with pytest.raises(ValueError, match=r"train_ann are for format='coco', not 'yolo'"):
        _dm(layouts["yolo"], format="yolo", train_ann=both / "annotations/x.json")
    with pytest.raises(ValueError, match=r"val_csv are for format='csv', not 'coco'"):
        _dm(both, val_csv=tmp_path / "v.csv", format="coco")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        FileNotFoundError,
        match=r"no training annotations found under .*instances_train2017.json.*data.yaml.*"
        r"ImageSets/Main/train.txt.*train.csv",
    ):
        _dm(empty)
    # A YOLO description given as the file itself.
    assert _dm(layouts["yolo"] / "data.yaml").format == "yolo"


def test_csv_explicit_files_with_image_dir(layouts, tmp_path):
    root = layouts["csv"]
    moved = tmp_path / "ann"
    moved.mkdir()
    for split in ("train", "val"):
        (moved / f"{split}_boxes.csv").write_text((root / f"{split}.csv").read_text())
    dm = _dm(tmp_path, train_csv=moved / "train_boxes.csv", image_dir=root)
    assert dm.format == "csv" and dm.paths["val"] is None and dm.val_dataloader() == []
    dm = _dm(
        tmp_path,
        train_csv=moved / "train_boxes.csv",
        val_csv=moved / "val_boxes.csv",
        image_dir=root,
    )
    dm.setup("validate")
    assert len(dm.datasets["val"]) == 4
    with pytest.raises(FileNotFoundError, match=r"no test annotations .*test.csv.*test_csv="):
        dm.test_dataloader()


# ----------------------------------------------------------------------------- bad input


def _image(path, size=(40, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (100, 100, 100)).save(path)


def _yolo(tmp_path, label_text, names="[a, b]"):
    _image(tmp_path / "images/train/0.png")
    (tmp_path / "labels/train").mkdir(parents=True, exist_ok=True)
    (tmp_path / "labels/train/0.txt").write_text(label_text)
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\ntrain: images/train\nnames: {names}\n")
    return tmp_path / "data.yaml"


@pytest.mark.parametrize(
    "text,match",
    [
        (
            "0 0.5 0.5 0.2 0.2\n1 1.5 0.5 0.2 0.2\n",
            r"0.txt, line 2: field 'cx' is 1.5, outside 0..1",
        ),
        ("0 0.5 0.5 0.2 -0.2\n", r"0.txt, line 1: field 'h' is -0.2, outside 0..1"),
        ("2 0.5 0.5 0.2 0.2\n", r"0.txt, line 1: field 'class' is '2', not a class index"),
        ("cat 0.5 0.5 0.2 0.2\n", r"line 1: field 'class' is 'cat'"),
        ("0 0.5 0.5 0.2\n", r"line 1: expected 'class cx cy w h'"),
        ("0 0.5 x 0.2 0.2\n", r"0.txt: line 1, field 'cy' must be a finite number"),
    ],
)
def test_yolo_bad_label_lines_name_file_line_and_field(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_yolo(_yolo(tmp_path, text))


def test_yolo_names_dict_polygons_negatives_and_orphan_labels(tmp_path):
    yaml_file = _yolo(tmp_path, "2 0.25 0.5 0.5 1.0\n0 0.1 0.1 0.5 0.1 0.5 0.6\n", "{0: a, 2: c}")
    _image(tmp_path / "images/train/1.png")  # no label file: a negative
    (tmp_path / "labels/train/ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with pytest.warns(UserWarning, match=r"skipping 1 label files without an image: .*ghost.txt"):
        ann = load_yolo(yaml_file)
    assert ann.categories == [{"id": 0, "name": "a"}, {"id": 2, "name": "c"}]
    first, second = ann.records
    np.testing.assert_allclose(first.boxes, [[0, 0, 20, 30], [4, 3, 20, 18]], atol=1e-4)
    assert first.category_ids.tolist() == [2, 0] and len(second.boxes) == 0
    dm = _dm(tmp_path)
    assert dm.class_names == ["a", "c"] and dm.num_classes == 2


def test_yolo_yaml_without_names_or_images(tmp_path):
    yaml_file = _yolo(tmp_path, "", names="[]")
    with pytest.raises(ValueError, match=r"data.yaml: field 'names' must be a non-empty list"):
        load_yolo(yaml_file)
    (tmp_path / "data.yaml").write_text("train: images/nowhere\nnames: [a]\n")
    with pytest.raises(FileNotFoundError, match=r"image folder or list not found: .*nowhere"):
        load_yolo(yaml_file)


def _voc(tmp_path, xml, split="train", image_id="0"):
    _image(tmp_path / f"JPEGImages/{image_id}.jpg")
    (tmp_path / "Annotations").mkdir(exist_ok=True)
    (tmp_path / f"Annotations/{image_id}.xml").write_text(xml)
    (tmp_path / "ImageSets/Main").mkdir(parents=True, exist_ok=True)
    (tmp_path / f"ImageSets/Main/{split}.txt").write_text(f"{image_id}\n")
    return tmp_path


def _obj(name, box=(1, 1, 10, 10), difficult=0):
    corners = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    return f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{corners}</bndbox></object>"


SIZE = "<size><width>40</width><height>30</height></size>"


def test_voc_bad_xml_names_file_and_element(tmp_path):
    with pytest.raises(ValueError, match=r"0.xml: no <size> element"):
        load_voc(_voc(tmp_path, f"<annotation>{_obj('a')}</annotation>"))
    with pytest.raises(ValueError, match=r"0.xml: object\[1\]/bndbox/xmax must be a finite"):
        load_voc(
            _voc(tmp_path, f"<annotation>{SIZE}{_obj('a')}{_obj('a', (1, 1, 'x', 3))}</annotation>")
        )
    with pytest.raises(ValueError, match=r"0.xml: not valid XML"):
        load_voc(_voc(tmp_path, "<annotation><size>"))
    _voc(tmp_path, f"<annotation>{SIZE}{_obj('a')}</annotation>")
    _voc(tmp_path, f"<annotation>{SIZE}{_obj('zebra')}</annotation>", "val", "1")
    dm = _dm(tmp_path)
    assert dm.format == "voc" and dm.class_names == ["a"]
    with pytest.raises(
        ValueError,
        match=r"1.xml: object\[0\] name 'zebra' is not a class of the training split \(a\)",
    ):
        dm.setup("validate")


def test_voc_difficult_is_crowd_and_scores_as_coco_iscrowd(tmp_path):
    coco = make_dataset(tmp_path / "coco", 6, 2)  # 6 training images hold every class
    path = coco / "annotations/instances_val2017.json"
    data = json.loads(path.read_text())
    data["annotations"][0]["iscrowd"] = 1
    path.write_text(json.dumps(data))
    voc = to_voc(coco, tmp_path / "voc")
    coco_dm, voc_dm = _dm(coco), _dm(voc)
    assert "<difficult>1</difficult>" in (voc / "Annotations/val_00000.xml").read_text()
    first = voc_dm._load("val").records[0]
    assert first.iscrowd.tolist()[0] is True and first.iscrowd.sum() == 1
    preds = _fixed_predictions(coco_dm)
    assert _map(voc_dm, preds) == pytest.approx(_map(coco_dm, preds), abs=1e-6)


def test_voc_id_without_xml_is_a_negative_and_missing_images_are_listed(tmp_path):
    _voc(tmp_path, f"<annotation>{SIZE}{_obj('a')}</annotation>")
    _image(tmp_path / "JPEGImages/7.jpg", size=(20, 10))
    (tmp_path / "ImageSets/Main/train.txt").write_text("0\n7\n")
    ann = load_voc(tmp_path)
    assert [(r.width, r.height, len(r.boxes)) for r in ann.records] == [(40, 30, 1), (20, 10, 0)]
    (tmp_path / "ImageSets/Main/train.txt").write_text("0\n7\n8\n")
    with pytest.raises(
        FileNotFoundError, match=r"1 images are missing .*8 \(.*train.txt, line 3\)"
    ):
        load_voc(tmp_path)


def _csv(tmp_path, text, name="train.csv"):
    _image(tmp_path / "a.png")
    (tmp_path / name).write_text(text)
    return tmp_path / name


HEADER = "image_path,x_min,y_min,x_max,y_max,label\n"


@pytest.mark.parametrize(
    "text,match",
    [
        (
            HEADER + "a.png,1,2,10,10,cat\na.png,1,two,10,10,cat\n",
            r"train.csv: line 3, column 'y_min' must be a finite number",
        ),
        (HEADER + "a.png,1,2,10,10,\n", r"train.csv, line 2: column 'label' is empty"),
        (
            "image_path,x1,y1,x2,y2,label\n",
            r"train.csv: missing columns x_min, y_min, x_max, y_max",
        ),
        (HEADER + "b.png,1,2,10,10,cat\n", r"1 images are missing on disk: .*b.png"),
    ],
)
def test_csv_bad_rows_name_file_line_and_column(tmp_path, text, match):
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        load_csv(_csv(tmp_path, text), tmp_path)


def test_csv_negatives_unknown_labels_and_degenerate_boxes(tmp_path):
    _image(tmp_path / "b.png")
    _csv(tmp_path, HEADER + "a.png,1,2,11,12,cat\na.png,5,5,5,9,dog\nb.png,,,,,\n")
    with pytest.warns(UserWarning, match=r"train.csv: dropped 1 boxes smaller than 1.0 px"):
        ann = load_csv(tmp_path / "train.csv", tmp_path)
    assert [len(r.boxes) for r in ann.records] == [1, 0]
    assert ann.records[0].boxes.tolist() == [[1, 2, 11, 12]]
    assert ann.categories == [{"id": 0, "name": "cat"}, {"id": 1, "name": "dog"}]
    _csv(tmp_path, HEADER + "a.png,1,2,11,12,bird\n", "val.csv")
    with pytest.raises(ValueError, match=r"val.csv, line 2: column 'label' is 'bird', not a class"):
        load_csv(tmp_path / "val.csv", tmp_path, class_names=["cat", "dog"])
