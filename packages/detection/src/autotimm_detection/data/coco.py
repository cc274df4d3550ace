"""COCO-format annotations: loading with validation, and the detection Dataset."""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from autotimm_core.data import read_image_rgb
from autotimm_detection.assign import PAD_LABEL, bucket_size
from autotimm_detection.data.transforms import letterbox_target

#: Missing files named in an error message (the rest are counted).
_LIST_FIRST = 5


@dataclass
class ImageRecord:
    """One image and its annotations in original pixels.

    ``boxes`` are xyxy, clipped to the image, without the boxes too small to train on; ``area``
    is COCO's annotation area (what the COCO evaluation uses for the small/medium/large ranges).
    ``eval`` holds every annotation exactly as the file gives it (``boxes`` xyxy unclipped,
    ``category_ids``, ``iscrowd``, ``area``), the ground truth evaluation compares with; None
    where it equals the training fields.
    """

    image_id: int
    path: Path
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    category_ids: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))
    iscrowd: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))
    area: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.float32))
    eval: dict[str, np.ndarray] | None = None

    def eval_targets(self) -> dict[str, np.ndarray]:
        """The evaluation ground truth (see the class docstring)."""
        if self.eval is not None:
            return self.eval
        fields = ("boxes", "category_ids", "iscrowd", "area")
        return {k: getattr(self, k) for k in fields}


@dataclass
class CocoAnnotations:
    """A validated COCO annotation file: its images (with boxes) and categories (sorted by id)."""

    ann_file: Path
    image_dir: Path
    records: list[ImageRecord]
    categories: list[dict[str, Any]]


def _require(cond: bool, ann_file: Path, msg: str) -> None:
    if not cond:
        raise ValueError(f"{ann_file}: {msg}")


def _number(value: Any, ann_file: Path, where: str, integer: bool = False) -> float:
    """``value`` as a finite number (an integral one with ``integer``), else a ValueError naming
    the field: wrong types, NaN, infinities and numbers too large for a float are refused."""
    kind = "an integer" if integer else "a finite number"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{ann_file}: {where} must be {kind}, got {_short(value)}")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ValueError(f"{ann_file}: {where} must be {kind}, got {_short(value)}") from None
    if not math.isfinite(number) or (integer and not number.is_integer()):
        raise ValueError(f"{ann_file}: {where} must be {kind}, got {_short(value)}")
    return number


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge integer"
    return text if len(text) <= 40 else text[:37] + "..."


def _integer(value: Any, ann_file: Path, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # exact, however large
    return int(_number(value, ann_file, where, integer=True))


def read_categories(ann_file: str | Path) -> list[dict[str, Any]]:
    """The validated ``categories`` of an annotation file, sorted by id (reads the whole JSON)."""
    return _read_json(Path(ann_file))[1]


def _read_json(ann_file: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    if not ann_file.is_file():
        raise FileNotFoundError(f"annotation file not found: {ann_file}")
    try:
        with open(ann_file, encoding="utf-8") as f:
            data = json.load(f)
    except (ValueError, RecursionError) as err:  # also bad UTF-8, too-long integers, deep nesting
        raise ValueError(f"{ann_file}: not valid JSON ({err})") from err
    _require(isinstance(data, dict), ann_file, "top level must be a JSON object")
    for key in ("images", "annotations", "categories"):
        _require(
            key in data,
            ann_file,
            f"missing field '{key}' (COCO format needs images, annotations, categories)",
        )
        _require(isinstance(data[key], list), ann_file, f"field '{key}' must be a list")
    _require(len(data["categories"]) > 0, ann_file, "field 'categories' is empty")
    cats = []
    for i, c in enumerate(data["categories"]):
        _require(isinstance(c, dict) and "id" in c, ann_file, f"categories[{i}] has no 'id'")
        cat_id = _integer(c["id"], ann_file, f"categories[{i}].id")
        cats.append({"id": cat_id, "name": str(c.get("name", c["id"]))})
    ids = [c["id"] for c in cats]
    _require(len(set(ids)) == len(ids), ann_file, "categories: repeated 'id'")
    return data, sorted(cats, key=lambda c: c["id"])


def load_coco(
    ann_file: str | Path,
    image_dir: str | Path,
    categories: list[dict[str, Any]] | None = None,
    min_box_size: float = 1.0,
) -> CocoAnnotations:
    """Read and check a COCO detection annotation file.

    Args:
        ann_file: ``instances_*.json``.
        image_dir: folder the images' ``file_name`` is relative to.
        categories: the category list labels are defined by (the training set's); the file's
            annotations may only use these ids. Default: the file's own categories.
        min_box_size: boxes (after clipping to the image) with a side shorter than this many pixels
            are dropped, counted in one warning. Default 1.0.

    Raises:
        FileNotFoundError: missing annotation file, image folder or images (the first few named).
        ValueError: malformed JSON, missing fields, unknown image or category ids (file and field
            named).
    """
    ann_file, image_dir = Path(ann_file), Path(image_dir)
    data, own_categories = _read_json(ann_file)
    if not image_dir.is_dir():
        raise FileNotFoundError(f"image folder not found: {image_dir} (images of {ann_file})")
    categories = own_categories if categories is None else categories
    known_cats = {c["id"] for c in categories}

    records: dict[int, ImageRecord] = {}
    for i, img in enumerate(data["images"]):
        for key in ("id", "file_name", "width", "height"):
            _require(isinstance(img, dict) and key in img, ann_file, f"images[{i}] has no '{key}'")
        image_id = _integer(img["id"], ann_file, f"images[{i}].id")
        _require(image_id not in records, ann_file, f"images[{i}].id {image_id} is repeated")
        name = img["file_name"]
        _require(
            isinstance(name, str) and name.strip("./") != "" and "\x00" not in name,
            ann_file,
            f"images[{i}].file_name must name a file, got {_short(name)}",
        )
        size = [_integer(img[k], ann_file, f"images[{i}].{k}") for k in ("width", "height")]
        _require(min(size) > 0, ann_file, f"images[{i}] has width/height {size}: must be > 0")
        records[image_id] = ImageRecord(image_id, image_dir / name, *size)
    missing = [str(r.path) for r in records.values() if not r.path.is_file()]
    if missing:
        shown = ", ".join(missing[:_LIST_FIRST])
        more = f" and {len(missing) - _LIST_FIRST} more" if len(missing) > _LIST_FIRST else ""
        raise FileNotFoundError(
            f"{ann_file}: {len(missing)} images listed in 'images' are missing on disk: {shown}{more}"
        )

    per_image: dict[int, list[tuple[list[float], int, bool, float]]] = {}
    # Evaluation sees every annotation as written (no clipping, no dropping), as pycocotools does.
    exact: dict[int, list[tuple[list[float], int, bool, float]]] = {}
    dropped = 0
    for i, ann in enumerate(data["annotations"]):
        _require(isinstance(ann, dict), ann_file, f"annotations[{i}] is not an object")
        for key in ("image_id", "category_id", "bbox"):
            _require(key in ann, ann_file, f"annotations[{i}] has no '{key}'")
        image_id = _integer(ann["image_id"], ann_file, f"annotations[{i}].image_id")
        cat = _integer(ann["category_id"], ann_file, f"annotations[{i}].category_id")
        _require(
            image_id in records,
            ann_file,
            f"annotations[{i}].image_id {image_id} is not in 'images'",
        )
        _require(
            cat in known_cats,
            ann_file,
            f"annotations[{i}].category_id {cat} is not in 'categories'",
        )
        bbox = ann["bbox"]
        _require(
            isinstance(bbox, (list, tuple)) and len(bbox) == 4,
            ann_file,
            f"annotations[{i}].bbox must be [x, y, width, height], got {_short(bbox)}",
        )
        rec = records[image_id]
        x, y, w, h = (_number(v, ann_file, f"annotations[{i}].bbox") for v in bbox)
        box = [
            min(max(x, 0.0), rec.width),
            min(max(y, 0.0), rec.height),
            min(max(x + w, 0.0), rec.width),
            min(max(y + h, 0.0), rec.height),
        ]
        area = _number(ann["area"], ann_file, f"annotations[{i}].area") if "area" in ann else w * h
        crowd = bool(ann.get("iscrowd", 0))
        exact.setdefault(image_id, []).append(([x, y, x + w, y + h], cat, crowd, area))
        if box[2] - box[0] < min_box_size or box[3] - box[1] < min_box_size:
            dropped += 1
            continue
        per_image.setdefault(image_id, []).append((box, cat, crowd, area))
    if dropped:
        warnings.warn(
            f"{ann_file}: dropped {dropped} annotations whose bbox is smaller than "
            f"{min_box_size} px (zero, negative or outside the image) from training; "
            "evaluation keeps them, as pycocotools does",
            stacklevel=2,
        )
    for image_id, anns in per_image.items():
        rec = records[image_id]
        rec.boxes, rec.category_ids, rec.iscrowd, rec.area = _arrays(anns)
    for image_id, anns in exact.items():
        boxes, cats, crowd, area = _arrays(anns)
        fields = {"boxes": boxes, "category_ids": cats, "iscrowd": crowd, "area": area}
        records[image_id].eval = fields
    return CocoAnnotations(ann_file, image_dir, list(records.values()), categories)


def _arrays(
    anns: list[tuple[list[float], int, bool, float]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.asarray([a[0] for a in anns], np.float32).reshape(-1, 4),
        np.asarray([a[1] for a in anns], np.int64),
        np.asarray([a[2] for a in anns], bool),
        np.asarray([a[3] for a in anns], np.float32),
    )


class CocoDetection(Dataset):
    """COCO images with their targets, transformed for training or evaluation.

    Each item is ``(image, target)``: a ``uint8`` (3, S, S) tensor and a dict with ``boxes``
    (n, 4) xyxy in input pixels, ``labels`` (n,) contiguous, ``iscrowd`` (n,), ``image_id``,
    ``orig_size`` (h, w), ``scale`` (sx, sy) of the letterbox, and the original annotations
    ``orig_boxes``, ``orig_labels``, ``orig_iscrowd``, ``orig_area`` that evaluation compares with.
    An unreadable image is reported in a warning naming it; in training the next readable image
    takes its place (the epoch keeps its length), in evaluation (``skip_unreadable=True``) the
    item is None, which :func:`collate_detection` leaves out: it is in neither the predictions
    nor the ground truth.

    Args:
        annotations: from :func:`load_coco`.
        transform: from :func:`~autotimm_detection.data.build_detection_transform` (or a callable
            with the same signature: ``(image (3, H, W) uint8, boxes, labels, iscrowd)``).
        cat_to_label: category id -> contiguous label.
        image_size: network input side (for the letterbox scale).
        skip_unreadable: give None for an unreadable image instead of the next one. Default
            False.
    """

    def __init__(
        self,
        annotations: CocoAnnotations,
        transform: Callable[..., tuple[Tensor, Tensor, Tensor, Tensor]],
        cat_to_label: dict[int, int],
        image_size: int,
        skip_unreadable: bool = False,
    ) -> None:
        self.annotations = annotations
        self.records = annotations.records
        self.transform = transform
        self.cat_to_label = cat_to_label
        self.image_size = image_size
        self.skip_unreadable = skip_unreadable
        self._unreadable: set[Path] = set()

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]] | None:
        if self.skip_unreadable:
            rec = self.records[index]
            try:
                return self._item(rec, read_image_rgb(rec.path))
            except (OSError, ValueError) as err:
                warnings.warn(
                    f"left out of evaluation (predictions and ground truth): unreadable image "
                    f"{rec.path}: {err}",
                    stacklevel=2,
                )
                return None
        for attempt in range(len(self.records)):
            rec = self.records[(index + attempt) % len(self.records)]
            if rec.path in self._unreadable:
                continue
            try:
                image = read_image_rgb(rec.path)
            except (OSError, ValueError) as err:
                self._unreadable.add(rec.path)
                warnings.warn(f"skipping unreadable image {rec.path}: {err}", stacklevel=2)
                continue
            return self._item(rec, image)
        raise RuntimeError(
            f"{self.annotations.ann_file}: no readable image in {self.annotations.image_dir}"
        )

    def _item(self, rec: ImageRecord, image: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        h, w = image.shape[-2:]
        labels = np.asarray([self.cat_to_label[int(c)] for c in rec.category_ids], np.int64)
        img, boxes, out_labels, crowd = self.transform(image, rec.boxes, labels, rec.iscrowd)
        gt = rec.eval_targets()
        eval_labels = np.asarray([self.cat_to_label[int(c)] for c in gt["category_ids"]], np.int64)
        target = {
            "boxes": boxes,
            "labels": out_labels,
            "iscrowd": crowd,
            "image_id": torch.tensor(rec.image_id),
            **letterbox_target(h, w, self.image_size),
            "orig_boxes": torch.from_numpy(gt["boxes"]),
            "orig_labels": torch.from_numpy(eval_labels),
            "orig_iscrowd": torch.from_numpy(gt["iscrowd"]),
            "orig_area": torch.from_numpy(gt["area"]),
        }
        return img, target


def collate_detection(
    batch: list[tuple[Tensor, dict[str, Tensor]] | None],
) -> tuple[Tensor, list[dict[str, Tensor]]]:
    """Stack the (equal-size) images; keep targets as a list (their box counts differ).

    Each target also gets its boxes padded to the batch's bucketed box count M
    (:func:`~autotimm_detection.assign.bucket_size`: a power of two, so a run sees few shapes):
    ``padded_boxes`` (M, 4), ``padded_labels`` (M,) with -1 for padding and ``padded_iscrowd``
    (M,). ``ObjectDetector.loss`` stacks these as they are, without per-image work in the step.
    None items (unreadable evaluation images) are left out; a batch of only those gives a
    (0, 3, 0, 0) image tensor and no targets.
    """
    items = [item for item in batch if item is not None]
    if not items:
        return torch.zeros(0, 3, 0, 0, dtype=torch.uint8), []
    images, targets = zip(*items)
    m = bucket_size(max([0, *(int(t["boxes"].shape[0]) for t in targets)]))
    out = []
    for t in targets:
        t = dict(t)
        n = int(t["boxes"].shape[0])
        boxes = torch.zeros(m, 4)
        boxes[:n] = torch.as_tensor(t["boxes"], dtype=torch.float32).reshape(n, 4)
        labels = torch.full((m,), PAD_LABEL, dtype=torch.long)
        labels[:n] = torch.as_tensor(t["labels"], dtype=torch.long)
        crowd = torch.zeros(m, dtype=torch.bool)
        if "iscrowd" in t:
            crowd[:n] = torch.as_tensor(t["iscrowd"]).bool()
        t.update(padded_boxes=boxes, padded_labels=labels, padded_iscrowd=crowd)
        out.append(t)
    return torch.stack(images), out
