"""Metric configuration and the per-stage metric manager."""

from __future__ import annotations

import importlib
import inspect
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn as nn
import torchmetrics

from autotimm_core.registry import Registry
from autotimm_core.validation import check_choice

STAGES = ("train", "val", "test")
BACKENDS = ("torchmetrics", "custom")
#: The name of MetricManager's built-in confusion matrix (``confusion_matrix=...``).
CONFUSION_MATRIX = "confusion_matrix"
# Sub-modules of torchmetrics searched for a class name, in order.
_TM_NAMESPACES = (
    "torchmetrics",
    "torchmetrics.classification",
    "torchmetrics.detection",
    "torchmetrics.regression",
    "torchmetrics.segmentation",
)


def _load_torchmetrics(registry: Registry[type]) -> None:
    for ns in _TM_NAMESPACES:
        try:
            mod = importlib.import_module(ns)
        except ImportError:  # an optional sub-package whose extras are missing
            continue
        for attr in mod.__all__:
            obj = getattr(mod, attr, None)
            if (
                isinstance(obj, type)
                and issubclass(obj, torchmetrics.Metric)
                and attr not in registry
            ):
                registry.register(attr, obj)


#: torchmetrics' Metric classes by class name, as torchmetrics spells them (case-sensitive:
#: the name is the one written in ``MetricConfig.metric_class``); loaded on first look-up.
TORCHMETRICS_CLASSES: Registry[type] = Registry(
    "torchmetrics metric_class",
    None,
    normalize=str.strip,
    loader=_load_torchmetrics,
    hint="Any class of torchmetrics (e.g. Accuracy, F1Score, MeanAveragePrecision) works; for "
    "your own Metric subclass use backend='custom' with metric_class='package.module.ClassName'.",
)


def resolve_metric_class(backend: str, metric_class: str | type) -> type:
    """The metric class a MetricConfig names; ValueError listing close matches when unknown."""
    if isinstance(metric_class, type):
        if not issubclass(metric_class, torchmetrics.Metric):
            raise ValueError(f"metric_class {metric_class!r} is not a torchmetrics.Metric subclass")
        return metric_class
    if backend == "torchmetrics":
        return TORCHMETRICS_CLASSES.get(metric_class)
    module_name, _, cls_name = metric_class.rpartition(".")
    if not module_name:
        raise ValueError(
            f"backend='custom' needs metric_class as 'package.module.ClassName', got '{metric_class}'"
        )
    try:
        cls = getattr(importlib.import_module(module_name), cls_name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"metric_class '{metric_class}' could not be imported: {err}") from err
    if not (isinstance(cls, type) and issubclass(cls, torchmetrics.Metric)):
        raise ValueError(f"metric_class '{metric_class}' is not a torchmetrics.Metric subclass")
    return cls


@dataclass
class MetricConfig:
    """One metric to track, per stage.

    Args:
        name: the name it logs under: ``{stage}/{name}`` (e.g. ``val/accuracy``). Metrics that
            return a dict (like MeanAveragePrecision) log each scalar entry as ``{stage}/{key}``.
        metric_class: a torchmetrics class name (``"Accuracy"``, ``"F1Score"``,
            ``"MeanAveragePrecision"``...), or with ``backend="custom"`` a dotted import path.
        backend: ``"torchmetrics"`` (default) or ``"custom"``.
        params: constructor arguments; ``num_classes``/``num_labels`` and ``task`` are filled in
            by the task when left out. Default ``{}``.
        stages: stages to compute it in, any of ``"train"``, ``"val"``, ``"test"``. Default all three.
        prog_bar: show it on the progress bar. Default False.

    Raises:
        ValueError: unknown backend, metric_class or stage (the message lists the choices).
    """

    name: str
    metric_class: str | type = ""
    backend: str = "torchmetrics"
    params: dict[str, Any] = field(default_factory=dict)
    stages: list[str] = field(default_factory=lambda: list(STAGES))
    prog_bar: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "/" in self.name or "." in self.name:
            raise ValueError(
                f"MetricConfig.name must be a non-empty string without '/' or '.', got {self.name!r}"
            )
        check_choice("MetricConfig.backend", self.backend, BACKENDS)
        if not self.metric_class:
            raise ValueError("MetricConfig.metric_class is required, e.g. metric_class='Accuracy'")
        if isinstance(self.stages, str):
            self.stages = [self.stages]
        bad = [s for s in self.stages if s not in STAGES]
        if bad or not self.stages:
            raise ValueError(
                f"MetricConfig.stages must be a non-empty subset of {list(STAGES)}, got {self.stages!r}"
            )
        if not isinstance(self.params, dict):
            raise ValueError(
                f"MetricConfig.params must be a dict, got {type(self.params).__name__}"
            )
        self.params = dict(self.params)
        self.stages = list(self.stages)
        resolve_metric_class(self.backend, self.metric_class)

    @property
    def cls(self) -> type:
        return resolve_metric_class(self.backend, self.metric_class)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (what checkpoints store)."""
        d = asdict(self)
        if isinstance(self.metric_class, type):
            d["metric_class"] = f"{self.metric_class.__module__}.{self.metric_class.__qualname__}"
            d["backend"] = (
                "custom"
                if not self.metric_class.__module__.startswith("torchmetrics")
                else self.backend
            )
            if d["backend"] == "torchmetrics":
                d["metric_class"] = self.metric_class.__name__
        return d

    @classmethod
    def coerce(cls, value: MetricConfig | dict[str, Any]) -> MetricConfig:
        """Accept a MetricConfig or its dict form (from YAML or a checkpoint)."""
        if isinstance(value, MetricConfig):
            return value
        if isinstance(value, dict):
            return cls(**value)
        raise TypeError(f"expected a MetricConfig or a dict, got {type(value).__name__}")


def _accepted_params(cls: type) -> set[str]:
    # torchmetrics' task wrappers (Accuracy, F1Score...) declare their arguments on __new__.
    target = cls.__new__ if "__new__" in cls.__dict__ else cls.__init__
    return set(inspect.signature(target).parameters)


def build_metric(
    config: MetricConfig, num_classes: int | None, default_task: str | None
) -> torchmetrics.Metric:
    """Instantiate one metric, filling in ``task`` and ``num_classes``/``num_labels`` when left out."""
    cls = config.cls
    params = dict(config.params)
    accepted = _accepted_params(cls)
    if "task" in accepted and default_task and "task" not in params:
        params["task"] = default_task
    if num_classes is not None:
        # A class without a task argument (MultilabelAveragePrecision...) takes the task's.
        task = params.get("task", default_task)
        key = (
            "num_labels"
            if task == "multilabel" and "num_labels" in accepted
            else "num_classes"
            if task in (None, "multiclass") and "num_classes" in accepted
            else None
        )
        if key is not None:
            given = params.get(key)
            if given is not None and given != num_classes:
                # Upstream AutoTimm trains with the model's count; failing deep inside
                # torchmetrics at the first validation batch helps nobody.
                warnings.warn(
                    f"metric '{config.name}': params {key}={given} differs from the model's "
                    f"num_classes={num_classes}; using {num_classes}",
                    UserWarning,
                    stacklevel=2,
                )
            params[key] = num_classes
    try:
        return cls(**params)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"metric '{config.name}' ({cls.__name__}) could not be built from params {params}: {err}"
        ) from err


class MetricResults(NamedTuple):
    """What :meth:`MetricManager.compute_all` returns for one stage.

    Attributes:
        scalars: ``{log_name: (value, prog_bar)}``: every value to log, per-class ones included.
        matrices: ``{metric name: tensor}``: results of two or more dimensions (a confusion
            matrix), which are not logged as numbers; the built-in confusion matrix is under
            ``"confusion_matrix"``.
    """

    scalars: dict[str, tuple[torch.Tensor, bool]]
    matrices: dict[str, torch.Tensor]


def _label(class_names: Sequence[str] | None, index: int) -> str:
    # A "/" would add a level to the log name ({stage}/{metric}/{class}).
    if class_names is not None and 0 <= index < len(class_names):
        return str(class_names[index]).replace("/", "_")
    return str(index)


class MetricManager(nn.Module):
    """Builds one metric instance per stage and logs their results.

    Metrics sit in ``nn.ModuleDict``s, so they move with the model's device and sync across
    processes under DDP when computed.

    Args:
        configs: the MetricConfigs (or their dicts).
        num_classes: filled into metrics whose params leave ``num_classes``/``num_labels`` out;
            also the length of a per-class result. Default None.
        default_task: ``task`` filled into torchmetrics wrappers (``"multiclass"``...). Default None.
        confusion_matrix: stages in which to keep a torchmetrics ``MulticlassConfusionMatrix`` of
            everything :meth:`update` receives (it needs ``num_classes`` and a
            ``"multiclass"`` task); :meth:`compute_all` returns it under
            ``"confusion_matrix"``. A config of that name replaces it. Default: none.

    Raises:
        ValueError: repeated metric names, a metric that cannot be built, or a confusion matrix
            asked for without ``num_classes`` or for a task other than ``"multiclass"``.
    """

    def __init__(
        self,
        configs: list[MetricConfig],
        num_classes: int | None = None,
        default_task: str | None = None,
        confusion_matrix: Sequence[str] = (),
    ) -> None:
        super().__init__()
        self.configs = [MetricConfig.coerce(c) for c in configs]
        self.num_classes = num_classes
        names = [c.name for c in self.configs]
        dupes = {n for n in names if names.count(n) > 1}
        if dupes:
            raise ValueError(f"metric names must be unique, repeated: {sorted(dupes)}")
        # "train" is an nn.Module method, so stage keys carry a prefix.
        self.stage_metrics = nn.ModuleDict(
            {
                f"stage_{stage}": nn.ModuleDict(
                    {
                        c.name: build_metric(c, num_classes, default_task)
                        for c in self.configs
                        if stage in c.stages
                    }
                )
                for stage in STAGES
            }
        )
        cm_stages = [confusion_matrix] if isinstance(confusion_matrix, str) else confusion_matrix
        bad = [s for s in cm_stages if s not in STAGES]
        if bad:
            raise ValueError(
                f"MetricManager confusion_matrix must be stages among {list(STAGES)}, got {bad}"
            )
        if cm_stages and (num_classes is None or default_task != "multiclass"):
            raise ValueError(
                "MetricManager confusion_matrix needs num_classes and default_task='multiclass', "
                f"got num_classes={num_classes!r}, default_task={default_task!r}"
            )
        # Kept apart from the configured metrics: it is not a MetricConfig (checkpoints and YAML
        # hold none), and a config named "confusion_matrix" takes its place.
        self.confusion = nn.ModuleDict(
            {
                f"stage_{stage}": torchmetrics.classification.MulticlassConfusionMatrix(num_classes)
                for stage in cm_stages
                if CONFUSION_MATRIX not in self.metrics(stage)
            }
        )

    def metrics(self, stage: str) -> nn.ModuleDict:
        return self.stage_metrics[f"stage_{stage}"]

    def _confusion(self, stage: str) -> torchmetrics.Metric | None:
        key = f"stage_{stage}"
        # nn.ModuleDict has no get().
        return self.confusion[key] if key in self.confusion else None  # noqa: SIM401

    def has(self, stage: str) -> bool:
        """Whether ``stage`` has anything to update (a metric or the confusion matrix)."""
        return len(self.metrics(stage)) > 0 or self._confusion(stage) is not None

    def update(self, stage: str, preds: Any, target: Any) -> None:
        for metric in self.metrics(stage).values():
            metric.update(preds, target)
        confusion = self._confusion(stage)
        if confusion is not None:
            confusion.update(preds, target)

    def compute(
        self, stage: str, class_names: Sequence[str] | None = None
    ) -> dict[str, tuple[torch.Tensor, bool]]:
        """Compute and reset every metric of ``stage``: ``{log_name: (value, prog_bar)}``.

        The values to log of :meth:`compute_all` (which also returns the matrices).
        """
        return self.compute_all(stage, class_names).scalars

    def compute_all(self, stage: str, class_names: Sequence[str] | None = None) -> MetricResults:
        """Compute and reset every metric of ``stage``.

        - A scalar result logs as ``{stage}/{name}``.
        - A per-class vector (one value per class: ``F1Score(average=None)``) logs as
          ``{stage}/{name}/{class name}``.
        - A dict result logs each scalar floating-point entry as ``{stage}/{key}``; its
          ``*_per_class`` entries (mAP with ``class_metrics=True``) as
          ``{stage}/{key without _per_class}/{class name}``, e.g. ``val/map/cat``, for the
          classes in its ``"classes"`` entry (a class without ground truth, -1, is left out).
        - Results of two or more dimensions (a confusion matrix) are returned in ``matrices``.

        Other results (id lists, vectors of another length) are not logged.

        Args:
            stage: ``"train"``, ``"val"`` or ``"test"``.
            class_names: names of the classes, by index; default (or a class past its end):
                the index.
        """
        scalars: dict[str, tuple[torch.Tensor, bool]] = {}
        matrices: dict[str, torch.Tensor] = {}
        n = self.num_classes
        if n is None and class_names is not None:
            n = len(class_names)
        for config in self.configs:
            if stage not in config.stages:
                continue
            metric = self.metrics(stage)[config.name]
            if not metric.update_called:
                continue
            value = metric.compute()
            metric.reset()
            prefix = f"{stage}/{config.name}"
            if isinstance(value, dict):
                self._dict_result(stage, value, config.prog_bar, class_names, scalars)
            elif not isinstance(value, torch.Tensor):
                continue
            elif value.numel() == 1:
                scalars[prefix] = (value.float().reshape(()), config.prog_bar)
            elif value.ndim == 1 and value.numel() == n:
                # One value per class: too many for the progress bar.
                for i, v in enumerate(value.float()):
                    scalars[f"{prefix}/{_label(class_names, i)}"] = (v, False)
            elif value.ndim >= 2:
                matrices[config.name] = value.detach()
        confusion = self._confusion(stage)
        if confusion is not None and confusion.update_called:
            # compute() syncs the counts of every process under DDP.
            matrices[CONFUSION_MATRIX] = confusion.compute().detach()
            confusion.reset()
        return MetricResults(scalars, matrices)

    @staticmethod
    def _dict_result(
        stage: str,
        value: dict[str, Any],
        prog_bar: bool,
        class_names: Sequence[str] | None,
        out: dict[str, tuple[torch.Tensor, bool]],
    ) -> None:
        classes = value.get("classes")
        class_ids = classes.reshape(-1).tolist() if isinstance(classes, torch.Tensor) else None
        for key, v in value.items():
            if not isinstance(v, torch.Tensor) or not v.is_floating_point():
                continue  # integer entries are ids (mAP's "classes")
            if key.endswith("_per_class"):
                # mAP's per-class entries follow its "classes" entry (0-d for one class); -1
                # marks "not computed" (class_metrics=False) or a class without ground truth.
                flat = v.reshape(-1).float()
                if class_ids is None or len(class_ids) != flat.numel():
                    continue
                base = key[: -len("_per_class")]
                for cid, x in zip(class_ids, flat):
                    if x >= 0:
                        out[f"{stage}/{base}/{_label(class_names, int(cid))}"] = (x, False)
            elif v.numel() == 1:
                out[f"{stage}/{key}"] = (v.float().reshape(()), prog_bar)
