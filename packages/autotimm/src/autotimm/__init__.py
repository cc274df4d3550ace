"""AutoTimm: train any timm backbone for image classification, object detection and semantic
segmentation.

This meta-package re-exports the public API of the AutoTimm packages that are installed. Names
are imported on first use, so ``import autotimm`` stays light and a task package you do not use
is never loaded. A name whose package is missing raises an ImportError that names the
distribution and how to install it: ``pip install "./packages/detection"`` in a clone of the
AutoTimm repository, or its wheel from ``nox -s build``. (The name ``autotimm`` on the public
package registry is another project's.)
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

try:
    __version__ = version("autotimm")
except PackageNotFoundError:  # a source tree without installing
    __version__ = "0.0.0"

# name -> (module, extra that installs it; None for core, which is always installed)
_EXPORTS: dict[str, tuple[str, str | None]] = {
    # core
    "BaseDataModule": ("autotimm_core", None),
    "BaseTask": ("autotimm_core", None),
    "DataConfig": ("autotimm_core", None),
    "DataContract": ("autotimm_core", None),
    "LoggerConfig": ("autotimm_core", None),
    "LoggerManager": ("autotimm_core", None),
    "LoggingConfig": ("autotimm_core", None),
    "MetricConfig": ("autotimm_core", None),
    "MetricManager": ("autotimm_core", None),
    "Registry": ("autotimm_core", None),
    "backbone_data_config": ("autotimm_core", None),
    "check_backbone_name": ("autotimm_core", None),
    "create_backbone": ("autotimm_core", None),
    "create_optimizer": ("autotimm_core", None),
    "create_scheduler": ("autotimm_core", None),
    "list_backbones": ("autotimm_core", None),
    "list_optimizers": ("autotimm_core", None),
    "list_schedulers": ("autotimm_core", None),
    "read_image": ("autotimm_core", None),
    "resolve_data_config": ("autotimm_core", None),
    "resolve_optimizer_name": ("autotimm_core", None),
    "resolve_scheduler_name": ("autotimm_core", None),
    "FeatureAdapter": ("autotimm_core", None),
    "SimpleFeaturePyramid": ("autotimm_core", None),
    "accepts_img_size": ("autotimm_core", None),
    "build_feature_backbone": ("autotimm_core", None),
    # export (in core; ONNX itself needs the `export` extra when called)
    "ExportParityError": ("autotimm_core.export", None),
    "export_to_onnx": ("autotimm_core.export", None),
    "load_onnx": ("autotimm_core.export", None),
    "validate_onnx_export": ("autotimm_core.export", None),
    # classification
    "BUILTIN_DATASETS": ("autotimm_classification", "classification"),
    "ImageClassifier": ("autotimm_classification", "classification"),
    "ImageDataModule": ("autotimm_classification", "classification"),
    "MultiLabelImageDataModule": ("autotimm_classification", "classification"),
    "build_classification_transform": ("autotimm_classification", "classification"),
    "draw_classification": ("autotimm_classification", "classification"),
    "read_image_rgb": ("autotimm_classification", "classification"),
    # detection
    "COCOMeanAveragePrecision": ("autotimm_detection", "detection"),
    "CocoDetection": ("autotimm_detection", "detection"),
    "DetectionDataModule": ("autotimm_detection", "detection"),
    "ObjectDetector": ("autotimm_detection", "detection"),
    "build_detection_transform": ("autotimm_detection", "detection"),
    "draw_detections": ("autotimm_detection", "detection"),
    "load_coco": ("autotimm_detection", "detection"),
    "load_csv": ("autotimm_detection", "detection"),
    "load_voc": ("autotimm_detection", "detection"),
    "load_yolo": ("autotimm_detection", "detection"),
    # segmentation
    "VOC_CLASSES": ("autotimm_segmentation", "segmentation"),
    "CocoMasks": ("autotimm_segmentation", "segmentation"),
    "DeepLabV3PlusHead": ("autotimm_segmentation", "segmentation"),
    "FPNHead": ("autotimm_segmentation", "segmentation"),
    "SegmentationDataModule": ("autotimm_segmentation", "segmentation"),
    "SegmentationDataset": ("autotimm_segmentation", "segmentation"),
    "SegmentationTransform": ("autotimm_segmentation", "segmentation"),
    "SemanticSegmentor": ("autotimm_segmentation", "segmentation"),
    "UNetHead": ("autotimm_segmentation", "segmentation"),
    "build_loss": ("autotimm_segmentation", "segmentation"),
    "build_segmentation_transform": ("autotimm_segmentation", "segmentation"),
    "draw_segmentation": ("autotimm_segmentation", "segmentation"),
    "read_mask": ("autotimm_segmentation", "segmentation"),
    # trainer
    "AutoTrainer": ("autotimm_trainer", "trainer"),
    "FiniteCheck": ("autotimm_trainer", "trainer"),
    "InterruptCheckpoint": ("autotimm_trainer", "trainer"),
    "NonFiniteLossError": ("autotimm_trainer", "trainer"),
    "TunerConfig": ("autotimm_trainer", "trainer"),
}

__all__ = [
    "BUILTIN_DATASETS",
    "VOC_CLASSES",
    "AutoTrainer",
    "BaseDataModule",
    "BaseTask",
    "COCOMeanAveragePrecision",
    "CocoDetection",
    "CocoMasks",
    "DataConfig",
    "DataContract",
    "DeepLabV3PlusHead",
    "DetectionDataModule",
    "ExportParityError",
    "FPNHead",
    "FeatureAdapter",
    "FiniteCheck",
    "ImageClassifier",
    "ImageDataModule",
    "InterruptCheckpoint",
    "LoggerConfig",
    "LoggerManager",
    "LoggingConfig",
    "MetricConfig",
    "MetricManager",
    "MultiLabelImageDataModule",
    "NonFiniteLossError",
    "ObjectDetector",
    "Registry",
    "SegmentationDataModule",
    "SegmentationDataset",
    "SegmentationTransform",
    "SemanticSegmentor",
    "SimpleFeaturePyramid",
    "TunerConfig",
    "UNetHead",
    "accepts_img_size",
    "backbone_data_config",
    "build_classification_transform",
    "build_detection_transform",
    "build_feature_backbone",
    "build_loss",
    "build_segmentation_transform",
    "check_backbone_name",
    "create_backbone",
    "create_optimizer",
    "create_scheduler",
    "draw_classification",
    "draw_detections",
    "draw_segmentation",
    "export_to_onnx",
    "list_backbones",
    "list_optimizers",
    "list_schedulers",
    "load_coco",
    "load_csv",
    "load_onnx",
    "load_voc",
    "load_yolo",
    "read_image",
    "read_image_rgb",
    "read_mask",
    "resolve_data_config",
    "resolve_optimizer_name",
    "resolve_scheduler_name",
    "validate_onnx_export",
]

if TYPE_CHECKING:  # for IDEs and type checkers; nothing is imported at run time
    from autotimm_classification import (
        BUILTIN_DATASETS,
        ImageClassifier,
        ImageDataModule,
        MultiLabelImageDataModule,
        build_classification_transform,
        draw_classification,
        read_image_rgb,
    )
    from autotimm_core import (
        BaseDataModule,
        BaseTask,
        DataConfig,
        DataContract,
        FeatureAdapter,
        LoggerConfig,
        LoggerManager,
        LoggingConfig,
        MetricConfig,
        MetricManager,
        Registry,
        SimpleFeaturePyramid,
        accepts_img_size,
        backbone_data_config,
        build_feature_backbone,
        check_backbone_name,
        create_backbone,
        create_optimizer,
        create_scheduler,
        list_backbones,
        list_optimizers,
        list_schedulers,
        read_image,
        resolve_data_config,
        resolve_optimizer_name,
        resolve_scheduler_name,
    )
    from autotimm_core.export import (
        ExportParityError,
        export_to_onnx,
        load_onnx,
        validate_onnx_export,
    )
    from autotimm_detection import (
        CocoDetection,
        COCOMeanAveragePrecision,
        DetectionDataModule,
        ObjectDetector,
        build_detection_transform,
        draw_detections,
        load_coco,
        load_csv,
        load_voc,
        load_yolo,
    )
    from autotimm_segmentation import (
        VOC_CLASSES,
        CocoMasks,
        DeepLabV3PlusHead,
        FPNHead,
        SegmentationDataModule,
        SegmentationDataset,
        SegmentationTransform,
        SemanticSegmentor,
        UNetHead,
        build_loss,
        build_segmentation_transform,
        draw_segmentation,
        read_mask,
    )
    from autotimm_trainer import (
        AutoTrainer,
        FiniteCheck,
        InterruptCheckpoint,
        NonFiniteLossError,
        TunerConfig,
    )


def _install_command(folder: str) -> str:
    """How to install the package in ``packages/<folder>`` (the core's ``install_command``, which
    this module does not import: importing the core would load torch)."""
    wheel = f"dist/autotimm_{folder}-{__version__}-py3-none-any.whl"
    return (
        f'pip install "./packages/{folder}" in a clone of the AutoTimm repository, '
        f'or pip install "{wheel}" with the wheels of nox -s build'
    )


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'autotimm' has no attribute '{name}'")
    module_name, _extra = _EXPORTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        # Only a missing package itself is reported as missing; an ImportError raised
        # inside an installed package is a real error and propagates unchanged.
        if err.name != module_name:
            raise
        dist = module_name.replace("_", "-")
        folder = module_name.split(".")[0].removeprefix("autotimm_")  # in packages/<folder>
        raise ImportError(
            f"autotimm.{name} needs the '{dist}' package, which is not installed. "
            f"Install it with: {_install_command(folder)}"
        ) from err
    value = getattr(module, name)
    globals()[name] = value  # cache: later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
