import pytest
import torch
import torch.nn as nn
import torchmetrics

from autotimm_core import MetricConfig, MetricManager


def test_spec_metric_config_is_valid():
    cfg = MetricConfig(
        name="accuracy",
        backend="torchmetrics",
        metric_class="Accuracy",
        params={"task": "multiclass"},
        stages=["train", "val", "test"],
        prog_bar=True,
    )
    assert cfg.cls is torchmetrics.Accuracy
    assert MetricConfig.coerce(cfg.to_dict()) == cfg


def test_detection_metric_class_resolves():
    cfg = MetricConfig(name="mAP", metric_class="MeanAveragePrecision", stages=["val", "test"])
    assert cfg.cls.__name__ == "MeanAveragePrecision"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metric_class": "Acuracy"}, r"Unknown torchmetrics metric_class 'Acuracy'.*Accuracy"),
        (
            {"metric_class": "Accuracy", "stages": ["valid"]},
            r"stages must be .*'train', 'val', 'test'",
        ),
        (
            {"metric_class": "Accuracy", "backend": "sklearn"},
            r"backend must be one of \['torchmetrics', 'custom'\]",
        ),
        ({"metric_class": ""}, r"metric_class is required"),
        ({"metric_class": "NoDots", "backend": "custom"}, r"'package.module.ClassName'"),
        ({"metric_class": "os.path.join", "backend": "custom"}, r"not a torchmetrics.Metric"),
    ],
)
def test_invalid_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MetricConfig(name="m", **kwargs)


def test_custom_backend_by_import_path():
    cfg = MetricConfig(
        name="mse", metric_class="torchmetrics.regression.MeanSquaredError", backend="custom"
    )
    assert cfg.cls is torchmetrics.regression.MeanSquaredError


def test_manager_builds_one_instance_per_stage_and_fills_num_classes():
    configs = [
        MetricConfig("accuracy", "Accuracy"),
        MetricConfig("f1", "F1Score", params={"average": "macro"}, stages=["val"]),
    ]
    mgr = MetricManager(configs, num_classes=4, default_task="multiclass")
    assert isinstance(mgr.stage_metrics, nn.ModuleDict)
    train_acc, val_acc = mgr.metrics("train")["accuracy"], mgr.metrics("val")["accuracy"]
    assert train_acc is not val_acc
    assert train_acc.num_classes == 4
    assert "f1" in mgr.metrics("val") and "f1" not in mgr.metrics("train")


def test_manager_logs_scalars_as_stage_slash_name():
    mgr = MetricManager(
        [MetricConfig("accuracy", "Accuracy", prog_bar=True)],
        num_classes=3,
        default_task="multiclass",
    )
    preds = torch.tensor([0, 1, 2, 2])
    target = torch.tensor([0, 1, 2, 0])
    mgr.update("val", preds, target)
    out = mgr.compute("val")
    assert set(out) == {"val/accuracy"}
    value, prog_bar = out["val/accuracy"]
    assert value.item() == pytest.approx(0.75) and prog_bar is True
    assert mgr.compute("val") == {}  # reset after compute; nothing updated since
    assert mgr.compute("train") == {}


def test_multilabel_fills_num_labels():
    mgr = MetricManager(
        [MetricConfig("accuracy", "Accuracy")], num_classes=5, default_task="multilabel"
    )
    assert mgr.metrics("val")["accuracy"].num_labels == 5


def test_dict_results_log_per_key():
    mgr = MetricManager(
        [
            MetricConfig(
                "mAP",
                "MeanAveragePrecision",
                params={"box_format": "xyxy", "iou_type": "bbox"},
                stages=["val"],
            )
        ]
    )
    box = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    preds = [{"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([1])}]
    target = [{"boxes": box, "labels": torch.tensor([1])}]
    mgr.update("val", preds, target)
    out = mgr.compute("val")
    assert out["val/map"][0].item() == pytest.approx(1.0)
    assert out["val/map_50"][0].item() == pytest.approx(1.0)
    assert "val/classes" not in out and "val/mAP" not in out


def test_duplicate_names_rejected():
    with pytest.raises(ValueError, match="unique"):
        MetricManager([MetricConfig("a", "Accuracy"), MetricConfig("a", "F1Score")], num_classes=2)


def test_bad_params_name_the_metric():
    with pytest.raises(ValueError, match=r"metric 'acc' \(Accuracy\) could not be built"):
        MetricManager([MetricConfig("acc", "Accuracy", params={"task": "nonsense"})], num_classes=2)
