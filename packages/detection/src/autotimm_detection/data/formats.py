"""Detection data in YOLO, Pascal VOC and CSV layouts, read into the records COCO data gives.

Each reader returns the :class:`~autotimm_detection.data.coco.CocoAnnotations` that
:func:`~autotimm_detection.data.coco.load_coco` returns, so the dataset, the transforms and the
mAP evaluation are the same whatever the layout:

- YOLO (Ultralytics): category ids are the class indices of ``data.yaml``'s ``names``.
- VOC and CSV: the class names of the training split, sorted, get ids ``0..n-1``; the other
  splits may only use those names. VOC ``difficult`` objects become crowd boxes (ignored in
  training and evaluation, as COCO's ``iscrowd``).
"""

from __future__ import annotations

import csv
import os
import warnings

# The standard library's parser (defusedxml is not a dependency): the expat it uses (>= 2.4.1)
# refuses entity-expansion bombs, and it never fetches external entities.
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from autotimm_detection.data.coco import (
    _LIST_FIRST,
    CocoAnnotations,
    ImageRecord,
    _arrays,
    _number,
)

#: The layouts ``DetectionDataModule(format=...)`` reads; "auto" recognises them.
FORMATS = ("auto", "coco", "yolo", "voc", "csv")
#: Image suffixes of a YOLO image folder (Ultralytics' list, less formats PIL cannot read).
IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp")
#: The columns of a CSV annotation file (one row per box).
CSV_COLUMNS = ("image_path", "x_min", "y_min", "x_max", "y_max", "label")
#: Names of a YOLO data set description looked for in ``data_dir``.
YOLO_YAMLS = ("data.yaml", "dataset.yaml")
#: Slack for normalised coordinates written with rounding (``1.0000001``).
_NORM_EPS = 1e-6

# One box while reading: xyxy in pixels (unclipped), category id, crowd/difficult.
_Box = tuple[float, float, float, float, int, bool]


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_LIST_FIRST])
    more = f" and {len(items) - _LIST_FIRST} more" if len(items) > _LIST_FIRST else ""
    return shown + more


def _image_size(path: Path) -> tuple[int, int] | str:
    """``(width, height)`` from the image header, or why it cannot be read."""
    try:
        with Image.open(path) as img:
            return img.size
    except (OSError, UnidentifiedImageError, ValueError) as err:
        return str(err) or type(err).__name__


def _records(
    entries: list[tuple[Path, int, int, list[_Box]]],
    source: Path,
    image_dir: Path,
    categories: list[dict[str, Any]],
    min_box_size: float,
) -> CocoAnnotations:
    """Records as ``load_coco`` makes them: boxes clipped to the image, too-small ones dropped
    (one warning), area the unclipped box's (COCO's default for a box annotation); evaluation
    keeps every box as the file gives it (``ImageRecord.eval``)."""
    records, dropped = [], 0
    for image_id, (path, w, h, boxes) in enumerate(entries, start=1):
        rec = ImageRecord(image_id, path, w, h)
        kept, exact = [], []
        for x0, y0, x1, y1, cat, crowd in boxes:
            exact.append(([x0, y0, x1, y1], cat, crowd, (x1 - x0) * (y1 - y0)))
            box = [min(max(x0, 0.0), w), min(max(y0, 0.0), h)]
            box += [min(max(x1, 0.0), w), min(max(y1, 0.0), h)]
            if box[2] - box[0] < min_box_size or box[3] - box[1] < min_box_size:
                dropped += 1
                continue
            kept.append((box, cat, crowd, (x1 - x0) * (y1 - y0)))
        if kept:
            rec.boxes = np.asarray([k[0] for k in kept], np.float32).reshape(-1, 4)
            rec.category_ids = np.asarray([k[1] for k in kept], np.int64)
            rec.iscrowd = np.asarray([k[2] for k in kept], bool)
            rec.area = np.asarray([k[3] for k in kept], np.float32)
        if exact:
            fields = dict(zip(("boxes", "category_ids", "iscrowd", "area"), _arrays(exact)))
            rec.eval = fields
        records.append(rec)
    if dropped:
        warnings.warn(
            f"{source}: dropped {dropped} boxes smaller than {min_box_size} px "
            "(zero, negative or outside the image)",
            stacklevel=3,
        )
    return CocoAnnotations(source, image_dir, records, categories)


def _sized(paths: list[Path], source: Path) -> list[tuple[Path, int, int]]:
    """The images with their sizes; unreadable ones skipped with one warning naming them."""
    out, bad = [], []
    for path in paths:
        size = _image_size(path)
        if isinstance(size, str):
            bad.append(f"{path} ({size})")
        else:
            out.append((path, *size))
    if bad:
        warnings.warn(
            f"{source}: skipping {len(bad)} unreadable images: {_listing(bad)}", stacklevel=3
        )
    return out


# ----------------------------------------------------------------------------- YOLO


def find_yolo_yaml(data_dir: Path) -> Path | None:
    """``data_dir`` itself when it is a ``.yaml`` file, else its ``data.yaml``/``dataset.yaml``."""
    if data_dir.is_file() and data_dir.suffix in (".yaml", ".yml"):
        return data_dir
    return next((data_dir / n for n in YOLO_YAMLS if (data_dir / n).is_file()), None)


def read_yolo_yaml(yaml_file: Path) -> dict[str, Any]:
    """The checked description: ``root`` (Path), ``names`` ({index: name}), and the split
    entries ``train``/``val``/``test`` (lists of paths) that it has."""
    import yaml  # PyYAML, a dependency (Lightning's too)

    try:
        data = yaml.safe_load(yaml_file.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise ValueError(f"{yaml_file}: not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ValueError(f"{yaml_file}: must be a mapping with 'names', 'train', 'val'")
    names = data.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise ValueError(
            f"{yaml_file}: field 'names' must be a non-empty list or {{index: name}} mapping, "
            f"got {names!r}"
        )
    for key in names:
        if isinstance(key, bool) or not isinstance(key, int) or key < 0:
            raise ValueError(f"{yaml_file}: 'names' key {key!r} must be a class index >= 0")
    # Ultralytics: 'path' is the root the splits are relative to (default: the YAML's folder).
    root = Path(os.path.expanduser(str(data.get("path") or yaml_file.parent)))
    if not root.is_absolute():
        root = next(
            (p for p in (yaml_file.parent / root, Path.cwd() / root) if p.is_dir()),
            yaml_file.parent / root,
        )
    out: dict[str, Any] = {"root": root, "names": {k: str(v) for k, v in sorted(names.items())}}
    for split in ("train", "val", "test"):
        value = data.get(split)
        if value:
            items = value if isinstance(value, list) else [value]
            out[split] = [root / str(v) for v in items]
    if "train" not in out:
        raise ValueError(f"{yaml_file}: field 'train' is missing (the training images)")
    return out


def _label_path(image: Path) -> Path:
    """Ultralytics' rule: the last ``/images/`` of the path becomes ``/labels/``, suffix .txt."""
    text = str(image)
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    if sa in text:
        text = sb.join(text.rsplit(sa, 1))
    return Path(text).with_suffix(".txt")


def _yolo_images(entry: Path, yaml_file: Path) -> list[Path]:
    if entry.is_dir():
        return sorted(p for p in entry.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if entry.is_file() and entry.suffix == ".txt":  # a list of image paths
        lines = entry.read_text(encoding="utf-8").splitlines()
        paths = [Path(s.strip()) for s in lines if s.strip()]
        return [p if p.is_absolute() else entry.parent / p for p in paths]
    raise FileNotFoundError(f"{yaml_file}: image folder or list not found: {entry}")


def load_yolo(
    yaml_file: str | Path, split: str = "train", min_box_size: float = 1.0
) -> CocoAnnotations:
    """Read one split of an Ultralytics YOLO data set.

    Images are those of the split's folder(s) (or ``.txt`` list) in ``data.yaml``; each
    ``labels/.../NAME.txt`` beside ``images/.../NAME.jpg`` holds one ``class cx cy w h`` line per
    box, normalised to 0..1 (a polygon ``class x1 y1 x2 y2 ...`` counts as its bounding box). An
    image without a label file has no objects.

    Args:
        yaml_file: the data set's ``data.yaml`` (``path``, ``train``, ``val``, ``test``, ``names``).
        split: ``"train"``, ``"val"`` or ``"test"``. Default ``"train"``.
        min_box_size: boxes with a side shorter than this (pixels) are dropped. Default 1.0.

    Raises:
        ValueError: a malformed line (file, line and field named): a value that is not a number
            or outside 0..1, a class index not in ``names``.
    """
    yaml_file = Path(yaml_file)
    desc = read_yolo_yaml(yaml_file)
    if split not in desc:
        raise FileNotFoundError(f"{yaml_file}: no '{split}' split")
    names = desc["names"]
    paths = [p for entry in desc[split] for p in _yolo_images(entry, yaml_file)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{yaml_file}: {len(missing)} images are missing: {_listing(missing)}"
        )
    entries = []
    for path, w, h in _sized(paths, yaml_file):
        label = _label_path(path)
        boxes = _read_yolo_labels(label, w, h, names) if label.is_file() else []
        entries.append((path, w, h, boxes))
    _warn_orphan_labels(desc[split], paths, yaml_file)
    categories = [{"id": k, "name": v} for k, v in names.items()]
    image_dir = desc[split][0] if desc[split][0].is_dir() else desc["root"]
    return _records(entries, yaml_file, image_dir, categories, min_box_size)


def _read_yolo_labels(label: Path, w: int, h: int, names: dict[int, str]) -> list[_Box]:
    boxes = []
    fields = ("class", "cx", "cy", "w", "h")
    for line_no, line in enumerate(label.read_text(encoding="utf-8").splitlines(), start=1):
        parts = line.split()
        if not parts:
            continue
        where = f"{label}, line {line_no}"
        if len(parts) != 5 and (len(parts) < 7 or len(parts) % 2 == 0):
            raise ValueError(
                f"{where}: expected 'class cx cy w h' (or 'class x1 y1 x2 y2 ...'), "
                f"got {len(parts)} values"
            )
        try:
            cls_value = float(parts[0])
        except ValueError:
            cls_value = float("nan")
        if not cls_value.is_integer() or int(cls_value) not in names:
            raise ValueError(
                f"{where}: field 'class' is {parts[0]!r}, not a class index of 'names' "
                f"(0..{max(names)})"
            )
        values = []
        for i, text in enumerate(parts[1:]):
            field = fields[i + 1] if len(parts) == 5 else f"point {i // 2 + 1} {'xy'[i % 2]}"
            v = _number(text, label, f"line {line_no}, field '{field}'")
            if not -_NORM_EPS <= v <= 1 + _NORM_EPS:
                raise ValueError(
                    f"{where}: field '{field}' is {text}, outside 0..1 (YOLO coordinates are "
                    "normalised by the image size)"
                )
            values.append(v)
        if len(parts) == 5:
            cx, cy, bw, bh = values
            x0, x1, y0, y1 = cx - bw / 2, cx + bw / 2, cy - bh / 2, cy + bh / 2
        else:
            xs, ys = values[0::2], values[1::2]
            x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
        boxes.append((x0 * w, y0 * h, x1 * w, y1 * h, int(cls_value), False))
    return boxes


def _warn_orphan_labels(entries: list[Path], images: list[Path], yaml_file: Path) -> None:
    """Label files whose image is not in the split are skipped, named in one warning."""
    expected = {_label_path(p) for p in images}
    orphans = []
    for entry in entries:
        if not entry.is_dir():
            continue
        labels_dir = _label_path(entry / "x").parent
        if labels_dir == entry or not labels_dir.is_dir():
            continue
        orphans += [
            str(p)
            for p in sorted(labels_dir.rglob("*.txt"))
            if p not in expected and p.name != "classes.txt"
        ]
    if orphans:
        warnings.warn(
            f"{yaml_file}: skipping {len(orphans)} label files without an image: "
            f"{_listing(orphans)}",
            stacklevel=3,
        )


# ----------------------------------------------------------------------------- Pascal VOC


def voc_split_file(root: Path, split: str) -> Path:
    """``ImageSets/Main/{split}.txt`` of a VOC root."""
    return root / "ImageSets" / "Main" / f"{split}.txt"


def load_voc(
    root: str | Path,
    split: str = "train",
    class_names: list[str] | None = None,
    min_box_size: float = 1.0,
) -> CocoAnnotations:
    """Read one split of a Pascal VOC layout.

    ``ImageSets/Main/{split}.txt`` lists image ids; ``Annotations/{id}.xml`` gives the image
    ``size`` and the objects (``name``, ``bndbox``, ``difficult``); images are in
    ``JPEGImages/``. VOC's corners are 1-based pixel indices, inclusive: ``xmin=1, xmax=W``
    covers the whole image, so ``xmin - 1`` and ``xmax`` are the pixel coordinates (as
    Detectron2 reads them). ``difficult`` objects are crowd boxes. An id without an XML file is
    an image without objects.

    Args:
        root: the folder holding ``Annotations/``, ``JPEGImages/`` and ``ImageSets/``.
        split: the ``ImageSets/Main`` list to read. Default ``"train"``.
        class_names: the names category ids ``0..n-1`` stand for (the training split's, sorted);
            other names are an error. Default None: this split's own names, sorted.
        min_box_size: boxes with a side shorter than this (pixels) are dropped. Default 1.0.

    Raises:
        FileNotFoundError: a missing list file or image (named).
        ValueError: an XML file that does not parse, has no ``size``, or an object without a
            name or a numeric ``bndbox``, or with a name not in ``class_names`` (file and
            element named).
    """
    root = Path(root)
    list_file = voc_split_file(root, split)
    if not list_file.is_file():
        raise FileNotFoundError(f"VOC split list not found: {list_file}")
    ids = [s.split()[0] for s in list_file.read_text(encoding="utf-8").splitlines() if s.strip()]
    parsed: list[tuple[Path, Path | None, int, int, list[Any]]] = []
    missing = []
    for line_no, image_id in enumerate(ids, start=1):
        xml_file = root / "Annotations" / f"{image_id}.xml"
        if not xml_file.is_file():
            image = _voc_image(root, image_id, None)
            if image is None:
                missing.append(f"{image_id} ({list_file}, line {line_no})")
                continue
            size = _image_size(image)
            if isinstance(size, str):
                missing.append(f"{image} ({size})")
                continue
            parsed.append((image, None, *size, []))
            continue
        try:
            tree = ET.parse(xml_file).getroot()
        except ET.ParseError as err:
            raise ValueError(f"{xml_file}: not valid XML ({err})") from err
        image = _voc_image(root, image_id, tree.findtext("filename"))
        if image is None:
            missing.append(f"{image_id} ({xml_file})")
            continue
        size = tree.find("size")
        if size is None:
            raise ValueError(f"{xml_file}: no <size> element (width and height of the image)")
        w, h = (_voc_int(size, k, xml_file, "size") for k in ("width", "height"))
        if w <= 0 or h <= 0:
            raise ValueError(f"{xml_file}: <size> is {w}x{h}, must be > 0")
        objects = []
        for i, obj in enumerate(tree.findall("object")):
            where = f"object[{i}]"
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise ValueError(f"{xml_file}: {where} has no <name>")
            bnd = obj.find("bndbox")
            if bnd is None:
                raise ValueError(f"{xml_file}: {where} ({name}) has no <bndbox>")
            x0, y0, x1, y1 = (
                _voc_float(bnd, k, xml_file, f"{where}/bndbox")
                for k in ("xmin", "ymin", "xmax", "ymax")
            )
            difficult = (obj.findtext("difficult") or "0").strip() not in ("0", "")
            objects.append((x0 - 1, y0 - 1, x1, y1, name, difficult))
        parsed.append((image, xml_file, w, h, objects))
    if missing:
        raise FileNotFoundError(
            f"{list_file}: {len(missing)} images are missing in {root / 'JPEGImages'}: "
            f"{_listing(missing)}"
        )
    if class_names is None:
        class_names = sorted({o[4] for *_, objs in parsed for o in objs})
        if not class_names:
            raise ValueError(f"{list_file}: the split has no objects, so no class names")
    index = {n: i for i, n in enumerate(class_names)}
    entries = []
    for image, xml_file, w, h, objects in parsed:
        boxes = []
        for i, (x0, y0, x1, y1, name, difficult) in enumerate(objects):
            if name not in index:
                raise ValueError(
                    f"{xml_file}: object[{i}] name "
                    f"{name!r} is not a class of the training split ({', '.join(class_names)})"
                )
            boxes.append((x0, y0, x1, y1, index[name], difficult))
        entries.append((image, w, h, boxes))
    categories = [{"id": i, "name": n} for i, n in enumerate(class_names)]
    return _records(entries, list_file, root / "JPEGImages", categories, min_box_size)


def _voc_image(root: Path, image_id: str, filename: str | None) -> Path | None:
    folder = root / "JPEGImages"
    candidates = [folder / filename] if filename else []
    candidates += [folder / f"{image_id}{s}" for s in (".jpg", ".jpeg", ".png")]
    return next((p for p in candidates if p.is_file()), None)


def _voc_float(parent: Any, key: str, xml_file: Path, where: str) -> float:
    text = parent.findtext(key)
    if text is None:
        raise ValueError(f"{xml_file}: {where} has no <{key}>")
    return _number(text.strip(), xml_file, f"{where}/{key}")


def _voc_int(parent: Any, key: str, xml_file: Path, where: str) -> int:
    text = parent.findtext(key)
    if text is None:
        raise ValueError(f"{xml_file}: {where} has no <{key}>")
    return int(_number(text.strip(), xml_file, f"{where}/{key}", integer=True))


# ----------------------------------------------------------------------------- CSV


def load_csv(
    csv_file: str | Path,
    image_dir: str | Path,
    class_names: list[str] | None = None,
    min_box_size: float = 1.0,
) -> CocoAnnotations:
    """Read a CSV of boxes: columns ``image_path,x_min,y_min,x_max,y_max,label``, one row per box.

    Coordinates are pixels; a row with only ``image_path`` (the box columns empty) is an image
    without objects. ``image_path`` is relative to ``image_dir`` (or absolute).

    Args:
        csv_file: the annotation file.
        image_dir: the folder ``image_path`` is relative to.
        class_names: the names category ids ``0..n-1`` stand for (the training split's, sorted);
            other labels are an error. Default None: this file's own labels, sorted.
        min_box_size: boxes with a side shorter than this (pixels) are dropped. Default 1.0.

    Raises:
        FileNotFoundError: a missing file, folder or images (the first few named).
        ValueError: a missing column, a value that is not a number, an unknown label (file, line
            and column named).
    """
    csv_file, image_dir = Path(csv_file), Path(image_dir)
    if not csv_file.is_file():
        raise FileNotFoundError(f"CSV annotation file not found: {csv_file}")
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir} (images of {csv_file})")
    rows: dict[Path, list[tuple[float, float, float, float, str, int]]] = {}
    with open(csv_file, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        absent = [c for c in CSV_COLUMNS if c not in (reader.fieldnames or [])]
        if absent:
            raise ValueError(
                f"{csv_file}: missing columns {', '.join(absent)} (needs {','.join(CSV_COLUMNS)})"
            )
        for row in reader:
            line = reader.line_num
            name = (row["image_path"] or "").strip()
            if not name:
                raise ValueError(f"{csv_file}, line {line}: column 'image_path' is empty")
            boxes = rows.setdefault(image_dir / name, [])
            values = [(row[c] or "").strip() for c in CSV_COLUMNS[1:]]
            if not any(values):
                continue  # an image without objects
            coords = [
                _number(v, csv_file, f"line {line}, column '{c}'")
                for v, c in zip(values[:4], CSV_COLUMNS[1:5])
            ]
            if not values[4]:
                raise ValueError(f"{csv_file}, line {line}: column 'label' is empty")
            boxes.append((*coords, values[4], line))
    missing = [str(p) for p in rows if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{csv_file}: {len(missing)} images are missing on disk: {_listing(missing)}"
        )
    if class_names is None:
        class_names = sorted({b[4] for boxes in rows.values() for b in boxes})
        if not class_names:
            raise ValueError(f"{csv_file}: no boxes, so no class names")
    index = {n: i for i, n in enumerate(class_names)}
    entries = []
    for path, w, h in _sized(list(rows), csv_file):
        boxes = []
        for x0, y0, x1, y1, label, line in rows[path]:
            if label not in index:
                raise ValueError(
                    f"{csv_file}, line {line}: column 'label' is {label!r}, not a class of the "
                    f"training split ({', '.join(class_names)})"
                )
            boxes.append((x0, y0, x1, y1, index[label], False))
        entries.append((path, w, h, boxes))
    categories = [{"id": i, "name": n} for i, n in enumerate(class_names)]
    return _records(entries, csv_file, image_dir, categories, min_box_size)
