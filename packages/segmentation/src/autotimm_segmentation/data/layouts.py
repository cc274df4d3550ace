"""Where a split's images and masks are, for each layout: folders, Pascal VOC, CSV, COCO.

Every layout is read into the same records, ``(image file, mask source)`` pairs, where the
mask source is a mask file or a COCO image id (rasterised when the sample is read).
"""

from __future__ import annotations

import csv
from pathlib import Path

from autotimm_core.data import is_image_file

#: The layouts ``SegmentationDataModule`` reads.
LAYOUTS = ("auto", "folder", "voc", "csv", "coco")
#: Extensions of mask files in the folder layout, by preference.
MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".gif")


def folder_dirs(data_dir: Path, split: str) -> list[tuple[Path, Path]]:
    """The ``(images, masks)`` folder pairs a split may use, in the order they are tried:
    ``{split}/images`` with ``{split}/masks``, then ``images/{split}`` with ``masks/{split}``."""
    return [
        (data_dir / split / "images", data_dir / split / "masks"),
        (data_dir / "images" / split, data_dir / "masks" / split),
    ]


def find_folder_split(data_dir: Path, split: str) -> tuple[Path, Path] | None:
    """The first folder pair of :func:`folder_dirs` whose two folders exist."""
    for images, masks in folder_dirs(data_dir, split):
        if images.is_dir() and masks.is_dir():
            return images, masks
    return None


def folder_pairs(images: Path, masks: Path) -> list[tuple[Path, Path]]:
    """Each image with the mask of the same stem (``masks/NAME.png`` for ``images/NAME.jpg``).

    Raises:
        FileNotFoundError: an image without a mask, naming both.
    """
    by_stem: dict[str, Path] = {}
    for m in sorted(masks.iterdir()):
        if m.suffix.lower() in MASK_EXTENSIONS and m.stem not in by_stem:
            by_stem[m.stem] = m
    pairs = []
    for img in sorted(p for p in images.iterdir() if is_image_file(p)):
        mask = by_stem.get(img.stem)
        if mask is None:
            raise FileNotFoundError(
                f"image {img} has no mask: expected {masks / (img.stem + '.png')} "
                "(a mask with the same file name stem)"
            )
        pairs.append((img, mask))
    if not pairs:
        raise FileNotFoundError(f"no images found in {images}")
    return pairs


def voc_split_file(data_dir: Path, split: str) -> Path:
    """``ImageSets/Segmentation/{split}.txt`` of a VOC layout."""
    return data_dir / "ImageSets" / "Segmentation" / f"{split}.txt"


def voc_pairs(data_dir: Path, split: str) -> list[tuple[Path, Path]]:
    """``JPEGImages/ID.jpg`` with ``SegmentationClass/ID.png`` for each id of the split's list.

    Raises:
        FileNotFoundError: a listed id whose image or mask is missing, naming the file.
    """
    pairs = []
    list_file = voc_split_file(data_dir, split)
    for line in list_file.read_text().splitlines():
        stem = line.strip().split(" ")[0]
        if not stem:
            continue
        image = data_dir / "JPEGImages" / f"{stem}.jpg"
        mask = data_dir / "SegmentationClass" / f"{stem}.png"
        for path, what in ((image, "image"), (mask, "mask")):
            if not path.is_file():
                raise FileNotFoundError(
                    f"{list_file} lists '{stem}' but its {what} {path} is missing"
                )
        pairs.append((image, mask))
    return pairs


_IMAGE_COLUMNS = ("image", "image_path")
_MASK_COLUMNS = ("mask", "mask_path")


def csv_pairs(csv_file: Path, root: Path) -> list[tuple[Path, Path]]:
    """The ``image,mask`` rows of a CSV (``image_path,mask_path`` also read), paths relative to
    ``root`` unless absolute.

    Raises:
        ValueError: a CSV without those columns (naming the ones it has).
        FileNotFoundError: a row whose image or mask is missing (naming the file and row).
    """
    with open(csv_file, newline="") as f:
        reader = csv.DictReader(f)
        fields = reader.fieldnames or []
        image_col = next((c for c in _IMAGE_COLUMNS if c in fields), None)
        mask_col = next((c for c in _MASK_COLUMNS if c in fields), None)
        if image_col is None or mask_col is None:
            raise ValueError(
                f"{csv_file} needs the columns 'image' and 'mask' (one row per image), "
                f"found {fields}"
            )
        pairs = []
        for row_no, row in enumerate(reader, start=2):
            image, mask = root / row[image_col].strip(), root / row[mask_col].strip()
            for path, what in ((image, "image"), (mask, "mask")):
                if not path.is_file():
                    raise FileNotFoundError(f"{csv_file} row {row_no}: {what} {path} is missing")
            pairs.append((image, mask))
    return pairs


def coco_files(data_dir: Path, split: str) -> list[tuple[Path, Path]]:
    """``(annotation file, image folder)`` pairs a COCO layout may use, in the order tried:
    ``annotations/instances_{split}.json`` (or ``{split}2017``) with ``{split}/`` (or
    ``{split}2017/``), then ``{split}/annotations.json`` with ``{split}/images`` (or ``{split}/``)."""
    out = []
    for suffix in ("", "2017"):
        out.append(
            (
                data_dir / "annotations" / f"instances_{split}{suffix}.json",
                data_dir / f"{split}{suffix}",
            )
        )
    images = data_dir / split / "images"
    out.append(
        (data_dir / split / "annotations.json", images if images.is_dir() else data_dir / split)
    )
    return out


def find_coco_split(data_dir: Path, split: str) -> tuple[Path, Path] | None:
    """The first pair of :func:`coco_files` whose annotation file exists."""
    return next(((a, i) for a, i in coco_files(data_dir, split) if a.is_file()), None)
