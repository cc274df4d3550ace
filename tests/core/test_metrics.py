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


def test_torchmetrics_class_names_resolve_from_every_namespace():
    from autotimm_core.metrics import resolve_metric_class

    assert resolve_metric_class("torchmetrics", "MulticlassF1Score") is (
        torchmetrics.classification.MulticlassF1Score
    )
    assert resolve_metric_class("torchmetrics", "MeanSquaredError") is torchmetrics.MeanSquaredError
    assert resolve_metric_class("torchmetrics", torchmetrics.Accuracy) is torchmetrics.Accuracy


def test_wrong_case_suggests_the_torchmetrics_spelling():
    with pytest.raises(ValueError) as err:
        MetricConfig(name="m", metric_class="f1score")
    msg = str(err.value)
    assert msg.startswith("Unknown torchmetrics metric_class 'f1score'. Did you mean: F1Score")
    assert "backend='custom'" in msg


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


class MeanAndMax(torchmetrics.Metric):
    """A metric with a dict result, like MeanAveragePrecision (which needs detection extras)."""

    def __init__(self):
        super().__init__()
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def update(self, preds, target):
        self.values.append((preds - target).abs().float())

    def compute(self):
        v = torch.cat(self.values)
        return {
            "mean": v.mean(),
            "max": v.max(),
            "ids": torch.tensor([3]),
            "per_item": v,
            "max_per_class": torch.tensor([-1.0]),
        }


def test_dict_results_log_per_key():
    mgr = MetricManager([MetricConfig("err", MeanAndMax, stages=["val"])])
    mgr.update("val", torch.tensor([1.0, 2.0]), torch.tensor([1.0, 5.0]))
    out = mgr.compute("val")
    assert set(out) == {"val/mean", "val/max"}  # integer ids and vectors are not logged
    assert out["val/mean"][0].item() == pytest.approx(1.5)
    assert out["val/max"][0].item() == pytest.approx(3.0)


def test_duplicate_names_rejected():
    with pytest.raises(ValueError, match="unique"):
        MetricManager([MetricConfig("a", "Accuracy"), MetricConfig("a", "F1Score")], num_classes=2)


def test_bad_params_name_the_metric():
    with pytest.raises(ValueError, match=r"metric 'acc' \(Accuracy\) could not be built"):
        MetricManager([MetricConfig("acc", "Accuracy", params={"task": "nonsense"})], num_classes=2)
