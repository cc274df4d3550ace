"""What the docs-examples test changes before it runs a code block, declared in one place.

The documentation shows the values a user would type (``resnet50``, CIFAR10, 50 epochs, 224 px).
The test runs the same blocks on CPU in seconds, so it swaps a few of those values for toy ones.
Everything it swaps is in the tables below, with the reason; nothing else is changed or patched.

A block's page is run in a fresh temporary directory holding the files made by ``make_files``:

- ``data/``: an image-folder data set (``train/``, ``val/``, ``test/``) of 10 classes of coloured
  32x32 squares, 4 training and 2 validation/test images per class. It stands in for the
  built-in torchvision data sets (CIFAR10...), so ``data_dir="./data"`` works for both.
- ``coco/``: a COCO-2017 layout (``annotations/instances_{train,val}2017.json``, ``train2017/``,
  ``val2017/``) of 64x64 images with one to three coloured rectangles, and the 80 COCO category
  ids (1-90, with gaps) of which the rectangles use three; ``num_classes=80`` is right for it.
- ``images/``: single images for prediction examples: ``cat.jpg``, ``dog.jpg``, ``street.jpg``.
- ``scenes/``: a semantic-segmentation set in the folder layout (``{train,val}/images`` with
  palette PNG ``{train,val}/masks``, ``classes.txt``: background, red, green, blue) of 64x48
  images with coloured shapes and 255 ignore bands along their borders, with ``train.csv`` and
  ``val.csv`` (``image,mask`` rows); the same data in Pascal VOC's segmentation layout inside
  ``VOCdevkit/VOC2012/`` (beside the detection files, as in the real VOC2012) and as COCO
  instance masks in ``scenes_coco/`` (where pycocotools is installed). Written by the segmentation tests' own generator
  (tests/segmentation/scenes.py).

Markers (HTML comments on the line(s) just above a fenced Python block):

- ``<!-- not-run: REASON -->``: the block is not run (it needs a GPU, several machines, a
  download...). The reason is required. It is still compiled, and the keyword arguments it passes
  to AutoTimm classes are checked against their signatures.
- ``<!-- setup: NAME -->``: before the block runs, ``SETUPS[NAME]`` runs in the page's namespace.
  It provides names that the page uses without defining (``model``, ``data``...), the way a guide
  reuses what an earlier section built.

Blocks of one page share one namespace and run in page order.
"""

from __future__ import annotations

import importlib.util
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# --------------------------------------------------------------------------- substitutions


@dataclass(frozen=True)
class Substitution:
    """A regular expression replaced in every runnable block (before it runs), and why."""

    pattern: str
    replacement: str | Callable[[re.Match[str]], str]
    reason: str

    def apply(self, code: str) -> tuple[str, int]:
        return re.subn(self.pattern, self.replacement, code)


def _fewer_epochs(m: re.Match[str]) -> str:
    # 10 -> 1, 20 -> 2, 50 or more -> 3: a "train on to 20 epochs" resume still trains.
    return f"max_epochs={min(3, max(1, int(m.group(1)) // 10))}"


_TOY_BACKBONES = {
    # CNNs -> timm's tiny test ResNet; transformers -> timm's tiny test ViT / ConvNeXt.
    "resnet18": "test_resnet",
    "resnet34": "test_resnet",
    "resnet50": "test_resnet",
    "efficientnet_b0": "test_efficientnet",
    "convnext_tiny": "test_convnext",
    "vit_small_patch16_224": "test_vit",
    "vit_base_patch16_224": "test_vit",
    "swin_tiny_patch4_window7_224": "test_convnext",
}

_TRAINER_LIMITS = (
    "limit_train_batches=2, limit_val_batches=2, limit_test_batches=2, "
    "limit_predict_batches=2, enable_progress_bar=False, enable_model_summary=False, "
)

SUBSTITUTIONS: list[Substitution] = [
    Substitution(
        r'"(' + "|".join(map(re.escape, _TOY_BACKBONES)) + r')"',
        lambda m: f'"{_TOY_BACKBONES[m.group(1)]}"',
        "real backbones take minutes per CPU epoch; timm's test_* models are the same code at "
        "toy size (ResNet for CNNs, ViT/ConvNeXt for transformers)",
    ),
    Substitution(
        r'dataset_name="(CIFAR10|CIFAR100|MNIST|FashionMNIST)"',
        "dataset_name=None",
        "no downloads in tests: the generated ./data folder (10 classes) stands in",
    ),
    Substitution(
        r"\bimage_size=(224|256|384)\b",
        "image_size=32",
        "classification at 32 px",
    ),
    Substitution(
        r"\bimage_size=(512|640|800|1024)\b",
        "image_size=64",
        "detection and segmentation at 64 px",
    ),
    Substitution(r"\bbatch_size=\d+", "batch_size=4", "small batches of small data"),
    Substitution(
        r"\bnum_workers=\d+,?\s*",
        "",
        "loader processes are set below",
    ),
    Substitution(
        r"\b(ImageDataModule|MultiLabelImageDataModule|DetectionDataModule|SegmentationDataModule)\(",
        r"\1(num_workers=0, ",
        "no loader worker processes in tests (the default is 4)",
    ),
    Substitution(r"\bmax_epochs=(\d+)", _fewer_epochs, "a few epochs of two batches"),
    Substitution(
        r"\bval_check_interval=(\d{2,})\b",
        "val_check_interval=2",
        "an epoch here has 2 batches, fewer than the steps the example validates after",
    ),
    Substitution(
        r'\bprecision="bf16-mixed"',
        "precision=32",
        "bfloat16 on CPU is emulated and about 10x slower here (40 s instead of 4 s for one "
        "detection epoch); tests/trainer covers bf16-mixed on CPU",
    ),
    Substitution(
        r'"num_training":\s*\d+',
        '"num_training": 5',
        "the LR finder tries 5 learning rates instead of 100",
    ),
    Substitution(
        r'"init_val":\s*\d+',
        '"init_val": 2, "max_trials": 2',
        "the batch-size finder starts at 2 and tries twice",
    ),
    Substitution(
        r"\bpretrained=(True|False),?\s*",
        "",
        "weights are never downloaded in tests (pretrained=False is added below)",
    ),
    Substitution(
        r"\b(ImageClassifier|ObjectDetector|SemanticSegmentor)\(",
        r"\1(pretrained=False, ",
        "no network: models start from random weights",
    ),
    Substitution(
        r"\b(AutoTrainer|pl\.Trainer)\(",
        r"\1(" + _TRAINER_LIMITS,
        "two batches per epoch and stage; no progress bar or model summary in test logs",
    ),
]

#: A runnable block must not contain these: it needs to be marked not-run with the reason.
NEEDS_NOT_RUN: list[tuple[str, str]] = [
    (r"""accelerator=["'](gpu|cuda|tpu|mps)["']""", "needs a GPU or other accelerator"),
    (r"\bnum_nodes=", "needs several machines"),
    (r"""strategy=["']ddp""", "starts several processes (DDP is tested in tests/integration)"),
    (r"\bdevices=([2-9]|\d{2,})\b", "needs several devices"),
]


def substitute(code: str) -> tuple[str, list[Substitution]]:
    """``code`` with every substitution applied, and the substitutions that changed something."""
    used = []
    for sub in SUBSTITUTIONS:
        code, n = sub.apply(code)
        if n:
            used.append(sub)
    return code, used


# --------------------------------------------------------------------------- API names

#: Names a block can use, and the module that must provide them for the block to run. A block (or
#: one before it on its page) that uses a name whose module is not installed is skipped, saying
#: which package is missing (the combination sessions install only some task packages).
#: Optional extras a block needs, by a pattern of its code: ``{regex: (module, extra)}``. A
#: block whose page needs one that is not installed is skipped (failed with
#: AUTOTIMM_REQUIRE_ALL), as for a missing package.
EXTRA_MODULES: dict[str, tuple[str, str]] = {
    r"\.export\(|\bexport_to_onnx\b|\bvalidate_onnx_export\b|\bload_onnx\b": (
        "onnx",
        "autotimm-core[export]",
    ),
}

API_MODULES: dict[str, str] = {
    "ImageClassifier": "autotimm_classification",
    "ImageDataModule": "autotimm_classification",
    "MultiLabelImageDataModule": "autotimm_classification",
    "ObjectDetector": "autotimm_detection",
    "DetectionDataModule": "autotimm_detection",
    "draw_detections": "autotimm_detection",
    "SemanticSegmentor": "autotimm_segmentation",
    "SegmentationDataModule": "autotimm_segmentation",
    "draw_segmentation": "autotimm_segmentation",
    "AutoTrainer": "autotimm_trainer",
    "TunerConfig": "autotimm_trainer",
}

# --------------------------------------------------------------------------- setups

SETUPS: dict[str, str] = {
    # A classifier and its data, as the Classification page builds them (toy sizes).
    "classifier": """
from autotimm import ImageClassifier, ImageDataModule
data = ImageDataModule(data_dir="./data", image_size=32, batch_size=4, num_workers=0)
model = ImageClassifier(backbone="test_resnet", num_classes=10, pretrained=False)
""",
    # The metric list the guide's optimizer and scheduler examples pass along.
    "classification-metrics": """
from autotimm import MetricConfig
metrics = [MetricConfig(name="accuracy", metric_class="Accuracy", params={"task": "multiclass"})]
""",
    # A detector, its COCO data and the mAP metric, as the Detection page builds them.
    "detector": """
from autotimm import DetectionDataModule, MetricConfig, ObjectDetector
data = DetectionDataModule(data_dir="./coco", image_size=64, batch_size=4, num_workers=0)
metrics = [
    MetricConfig(
        name="mAP",
        metric_class="MeanAveragePrecision",
        params={"box_format": "xyxy", "iou_type": "bbox"},
        stages=["val", "test"],
    )
]
model = ObjectDetector(backbone="test_resnet", num_classes=80, metrics=metrics, pretrained=False)
""",
}

# --------------------------------------------------------------------------- files

_COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 200, 60),
    "blue": (30, 60, 220),
    "yellow": (230, 220, 40),
    "cyan": (40, 220, 220),
    "magenta": (220, 40, 200),
    "white": (245, 245, 245),
    "black": (15, 15, 15),
    "orange": (240, 140, 20),
    "purple": (120, 40, 160),
}
#: COCO 2017's 80 category ids (1-90 with gaps); the generated boxes use the first three.
COCO_IDS = [i for i in range(1, 91) if i not in {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}]


def _square(colour: tuple[int, int, int], size: int, rng: random.Random):
    from PIL import Image

    jitter = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in colour)
    return Image.new("RGB", (size, size), jitter)


def _make_folder(root: Path, rng: random.Random) -> None:
    for split, per_class in (("train", 4), ("val", 2), ("test", 2)):
        for name, colour in _COLOURS.items():
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                _square(colour, 32, rng).save(folder / f"{i}.png")


_PALETTE = [(220, 30, 30), (30, 200, 60), (30, 60, 220)]


def _shapes(rng: random.Random, size: int = 64):
    """A grey image with one to three coloured rectangles, and their (palette index, xywh) list."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), (128, 128, 128))
    draw = ImageDraw.Draw(image)
    boxes = []
    for _ in range(rng.randint(1, 3)):
        k = rng.randrange(len(_PALETTE))
        w, h = rng.randint(14, 30), rng.randint(14, 30)
        x, y = rng.randint(0, size - w), rng.randint(0, size - h)
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=_PALETTE[k])
        boxes.append((k, [x, y, w, h]))
    return image, boxes


def _make_coco(root: Path, rng: random.Random) -> None:
    categories = [{"id": cid, "name": f"class_{cid}"} for cid in COCO_IDS]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    ann_id = 1
    for split, count in (("train", 8), ("val", 4)):
        images, annotations = [], []
        folder = root / f"{split}2017"
        folder.mkdir(parents=True, exist_ok=True)
        for image_id in range(1, count + 1):
            image, boxes = _shapes(rng)
            for k, (x, y, w, h) in boxes:
                annotations.append(
                    {
                        "id": ann_id,
                        "image_id": image_id,
                        "category_id": COCO_IDS[k],
                        "bbox": [x, y, w, h],
                        "area": w * h,
                        "iscrowd": 0,
                    }
                )
                ann_id += 1
            name = f"{image_id:012d}.jpg"
            image.save(folder / name, quality=95)
            images.append({"id": image_id, "file_name": name, "width": 64, "height": 64})
        doc = {"images": images, "annotations": annotations, "categories": categories}
        (root / "annotations" / f"instances_{split}2017.json").write_text(json.dumps(doc))


def _make_classification_csvs(root: Path) -> None:
    # labels/{train,val,test}.csv list the data/ folder's images (paths relative to data/).
    (root / "labels").mkdir(exist_ok=True)
    for split in ("train", "val", "test"):
        rows = ["image_path,label"] + [
            f"{split}/{p.parent.name}/{p.name},{p.parent.name}"
            for p in sorted((root / "data" / split).glob("*/*.png"))
        ]
        (root / "labels" / f"{split}.csv").write_text("\n".join(rows) + "\n")
    # Multi-label CSVs of the images/ pictures: 0/1 columns, and one column of tags.
    binary = ["image,cat,dog,outdoor", "cat.jpg,1,0,1", "dog.jpg,1,1,0", "street.jpg,0,0,1"]
    for name in ("train.csv", "val.csv"):
        (root / name).write_text("\n".join(binary) + "\n")
    tags = [
        "image,tags",
        "images/cat.jpg,cat outdoor",
        "images/dog.jpg,cat dog",
        "images/street.jpg,",
    ]
    (root / "tags.csv").write_text("\n".join(tags) + "\n")


def _make_detection_layouts(root: Path) -> None:
    # The coco/ set again in the other layouts the detection page shows, converted by the
    # detection tests' own writers (tests/detection/shapes.py).
    import shutil
    import sys

    detection_tests = str(Path(__file__).resolve().parents[1] / "detection")
    if detection_tests not in sys.path:
        sys.path.insert(0, detection_tests)
    from shapes import to_csv, to_voc, to_yolo

    to_yolo(root / "coco", root / "shapes")
    to_voc(root / "coco", root / "VOCdevkit" / "VOC2012")
    to_csv(root / "coco", root / "photos")  # photos/{train,val}/..., photos/{train,val}.csv
    (root / "boxes").mkdir()
    for split in ("train", "val"):
        shutil.move(root / "photos" / f"{split}.csv", root / "boxes" / f"{split}.csv")


def _make_segmentation_layouts(root: Path) -> None:
    # The segmentation tests' own generator and converters (tests/segmentation/scenes.py).
    import sys

    segmentation_tests = str(Path(__file__).resolve().parents[1] / "segmentation")
    if segmentation_tests not in sys.path:
        sys.path.insert(0, segmentation_tests)
    from scenes import folder_to_coco, folder_to_csv, folder_to_voc, make_folder

    scenes = make_folder(root / "scenes", {"train": 8, "val": 4}, size=(64, 48), seed=0)
    folder_to_csv(scenes)
    folder_to_voc(scenes, root / "VOCdevkit" / "VOC2012")
    # COCO masks are encoded with pycocotools, which a session without the detection or
    # segmentation package lacks (the blocks that read scenes_coco/ are skipped there).
    if importlib.util.find_spec("pycocotools") is not None:
        folder_to_coco(scenes, root / "scenes_coco")


def make_files(root: Path) -> None:
    """Write the fixtures described above into ``root``, and the same data in the other layouts
    the pages show: ``labels/*.csv`` (classification CSVs of ``data/``), ``train.csv``,
    ``val.csv`` and ``tags.csv`` (multi-label CSVs of ``images/``), and ``coco/`` as YOLO
    (``shapes/``), Pascal VOC (``VOCdevkit/VOC2012/``) and CSV (``boxes/*.csv`` of
    ``photos/``), and the segmentation sets (``scenes/``, ``VOCdevkit/VOC2012/``'s
    segmentation lists and masks, ``scenes_coco/``)."""
    rng = random.Random(0)
    _make_folder(root / "data", rng)
    _make_coco(root / "coco", rng)
    (root / "images").mkdir(parents=True, exist_ok=True)
    _square(_COLOURS["orange"], 48, rng).save(root / "images" / "cat.jpg")
    _square(_COLOURS["black"], 48, rng).save(root / "images" / "dog.jpg")
    _shapes(rng, size=96)[0].save(root / "images" / "street.jpg")
    _make_classification_csvs(root)
    _make_detection_layouts(root)
    _make_segmentation_layouts(root)
