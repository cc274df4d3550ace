"""Small data, models and probes for the reliability tests (tiny: one CPU thread, seconds)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch
from pytorch_lightning.loggers import Logger

TESTS = Path(__file__).resolve().parents[1]
for sub in ("classification", "detection", "trainer"):
    if str(TESTS / sub) not in sys.path:
        sys.path.insert(0, str(TESTS / sub))

from helpers import make_image_folder  # noqa: E402  (tests/classification)
from shapes import make_dataset  # noqa: E402  (tests/detection)

#: Arguments of a small, fast ObjectDetector.
SMALL_DETECTOR = {"pretrained": False, "fpn_channels": 32, "head_num_convs": 1}


def colour_folder(root: Path) -> Path:
    """train/ (4 per class) and val/ (2 per class) of three colour classes."""
    return make_image_folder(root, {"train": 4, "val": 2})


def shapes_folder(root: Path) -> Path:
    """A COCO layout with 8 training and 4 validation images."""
    return make_dataset(root, num_train=8, num_val=4, size=(96, 80))


def classifier_and_data(root: Path, **model_kw: Any):
    from autotimm_classification import ImageClassifier, ImageDataModule

    data = ImageDataModule(
        root,
        image_size=32,
        batch_size=4,
        num_workers=0,
        augmentation_preset="default",  # random crops and flips: resume must replay them
    )
    model = ImageClassifier("test_resnet", num_classes=3, pretrained=False, lr=1e-2, **model_kw)
    return model, data


def detector_and_data(root: Path, **model_kw: Any):
    from autotimm_detection import DetectionDataModule, ObjectDetector

    data = DetectionDataModule(
        root, image_size=64, batch_size=4, num_workers=0, augmentation_preset="default"
    )
    model = ObjectDetector("test_resnet", num_classes=3, lr=1e-3, **SMALL_DETECTOR, **model_kw)
    return model, data


def trainer(root: Path, **kw: Any):
    from autotimm_trainer import AutoTrainer

    kw.setdefault("accelerator", "cpu")
    kw.setdefault("devices", 1)
    kw.setdefault("enable_progress_bar", False)
    kw.setdefault("enable_model_summary", False)
    return AutoTrainer(default_root_dir=root, **kw)


class RecordingLogger(Logger):
    """Keeps every ``log_metrics`` call in memory as ``(step, {name: float})``."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[int, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        pass

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        self.records.append((int(step or 0), {k: float(v) for k, v in metrics.items()}))


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
