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


def test_per_class_vectors_log_under_class_names():
    mgr = MetricManager(
        [
            MetricConfig("accuracy", "Accuracy", prog_bar=True),
            MetricConfig("recall", "Recall", params={"average": None}, prog_bar=True),
            MetricConfig("f1", "F1Score", params={"average": None}),
        ],
        num_classes=3,
        default_task="multiclass",
    )
    # true 0 1 2 0, predicted 0 1 2 2: class 0 has recall 1/2, class 2 precision 1/2.
    mgr.update("val", torch.tensor([0, 1, 2, 2]), torch.tensor([0, 1, 2, 0]))
    out = mgr.compute("val", class_names=["cat", "dog", "a/b"])
    assert set(out) == {
        "val/accuracy",
        "val/recall/cat",
        "val/recall/dog",
        "val/recall/a_b",  # a "/" would add a level to the name
        "val/f1/cat",
        "val/f1/dog",
        "val/f1/a_b",
    }
    values = {k: v.item() for k, (v, _) in out.items()}
    assert values["val/recall/cat"] == pytest.approx(0.5)
    assert values["val/recall/dog"] == pytest.approx(1.0)
    assert values["val/recall/a_b"] == pytest.approx(1.0)
    assert values["val/f1/cat"] == pytest.approx(2 / 3)
    assert values["val/f1/a_b"] == pytest.approx(2 / 3)
    assert out["val/accuracy"][1] is True
    assert out["val/recall/cat"][1] is False  # one per class: not on the progress bar


def test_per_class_names_fall_back_to_the_index():
    mgr = MetricManager(
        [MetricConfig("recall", "Recall", params={"average": None})],
        num_classes=2,
        default_task="multiclass",
    )
    mgr.update("test", torch.tensor([0, 0, 1]), torch.tensor([0, 1, 1]))
    out = mgr.compute("test", class_names=["only_one"])
    assert {k: v.item() for k, (v, _) in out.items()} == {
        "test/recall/only_one": pytest.approx(1.0),
        "test/recall/1": pytest.approx(0.5),
    }


def test_multilabel_per_label_vectors():
    mgr = MetricManager(
        [MetricConfig("f1", "F1Score", params={"average": None})],
        num_classes=2,
        default_task="multilabel",
    )
    mgr.update("val", torch.tensor([[1, 0], [1, 1]]), torch.tensor([[1, 0], [0, 1]]))
    out = mgr.compute("val", class_names=["x", "y"])
    # label x: tp 1, fp 1 -> f1 2/3; label y: tp 1 -> 1.
    assert {k: v.item() for k, (v, _) in out.items()} == {
        "val/f1/x": pytest.approx(2 / 3),
        "val/f1/y": pytest.approx(1.0),
    }


class PerClassDict(torchmetrics.Metric):
    """A result shaped like MeanAveragePrecision's with ``class_metrics=True``."""

    def __init__(self, classes, per_class):
        super().__init__()
        self.add_state("n", default=torch.tensor(0), dist_reduce_fx="sum")
        self.classes = torch.tensor(classes, dtype=torch.int32)
        self.per_class = torch.tensor(per_class)

    def update(self, preds, target):
        self.n += 1

    def compute(self):
        return {
            "map": torch.tensor(0.5),
            "map_per_class": self.per_class,
            "mar_100_per_class": self.per_class / 2,
            "classes": self.classes,
        }


def test_map_per_class_logs_by_the_classes_entry():
    params = {"classes": [0, 2], "per_class": [0.25, 0.75]}
    mgr = MetricManager([MetricConfig("map", PerClassDict, params=params, stages=["val"])])
    mgr.update("val", None, None)
    out = mgr.compute("val", class_names=["cat", "dog", "bird"])
    assert {k: v.item() for k, (v, _) in out.items()} == {
        "val/map": pytest.approx(0.5),
        "val/map/cat": pytest.approx(0.25),
        "val/map/bird": pytest.approx(0.75),
        "val/mar_100/cat": pytest.approx(0.125),
        "val/mar_100/bird": pytest.approx(0.375),
    }


def test_map_per_class_minus_one_is_not_logged():
    # torchmetrics' "not computed" (class_metrics=False): a 0-d -1 beside one observed class;
    # a class seen only in predictions also scores -1.
    params = {"classes": 1, "per_class": -1.0}
    mgr = MetricManager([MetricConfig("map", PerClassDict, params=params, stages=["val"])])
    mgr.update("val", None, None)
    assert set(mgr.compute("val")) == {"val/map"}


def test_confusion_matrix_is_returned_apart_from_the_scalars():
    mgr = MetricManager(
        [MetricConfig("accuracy", "Accuracy", stages=["val"])],
        num_classes=3,
        default_task="multiclass",
        confusion_matrix=("val", "test"),
    )
    assert mgr.has("test") and not mgr.has("train")
    logits = torch.tensor([[3.0, 0, 0], [0, 3.0, 0], [0, 0, 3.0], [0, 0, 3.0]])
    mgr.update("val", logits, torch.tensor([0, 1, 2, 0]))
    results = mgr.compute_all("val")
    assert set(results.scalars) == {"val/accuracy"}
    assert results.matrices["confusion_matrix"].tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]
    assert mgr.compute_all("val").matrices == {}  # reset


def test_configured_confusion_matrix_is_kept_not_dropped():
    mgr = MetricManager(
        [MetricConfig("cm", "ConfusionMatrix", stages=["test"])],
        num_classes=2,
        default_task="multiclass",
    )
    mgr.update("test", torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]))
    results = mgr.compute_all("test")
    assert results.scalars == {}
    assert results.matrices["cm"].tolist() == [[1, 1], [0, 1]]


def test_confusion_matrix_needs_a_multiclass_task():
    with pytest.raises(ValueError, match=r"confusion_matrix needs num_classes and default_task"):
        MetricManager([], num_classes=3, default_task="multilabel", confusion_matrix=["val"])
    with pytest.raises(ValueError, match=r"confusion_matrix must be stages among"):
        MetricManager([], num_classes=3, default_task="multiclass", confusion_matrix=["valid"])


def test_mean_average_precision_class_metrics_log_per_class():
    pytest.importorskip("pycocotools")
    mgr = MetricManager(
        [
            MetricConfig(
                "map",
                "MeanAveragePrecision",
                params={"class_metrics": True, "backend": "pycocotools"},
                stages=["val"],
            )
        ],
        num_classes=3,
    )
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    preds = [{"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([2])}]
    mgr.update("val", preds, [{"boxes": box, "labels": torch.tensor([2])}])
    out = {k: v.item() for k, (v, _) in mgr.compute("val", ["cat", "dog", "bird"]).items()}
    assert out["val/map"] == pytest.approx(1.0)
    assert out["val/map/bird"] == pytest.approx(1.0)  # the one observed class, by name
    assert out["val/mar_100/bird"] == pytest.approx(1.0)
    assert not any(k.endswith(("/cat", "/dog")) for k in out)


def test_multilabel_classes_without_a_task_argument_get_num_labels_filled_in():
    from autotimm_core.metrics import build_metric

    config = MetricConfig(name="map", metric_class="MultilabelAveragePrecision", stages=["val"])
    metric = build_metric(config, num_classes=4, default_task="multilabel")
    assert metric.num_labels == 4
    config = MetricConfig(name="acc", metric_class="MulticlassAccuracy", stages=["val"])
    assert build_metric(config, num_classes=5, default_task="multiclass").num_classes == 5
