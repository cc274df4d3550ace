"""BaseTask on a tiny timm classifier: optimizers, schedulers, freezing, logging, checkpoints."""

import pytest
import pytorch_lightning as pl
import torch
import torch.nn as nn
from tiny_task import TinyTask
from torch.utils.data import DataLoader, TensorDataset

from autotimm_core import LoggingConfig, MetricConfig


def _loader(n=32, batch_size=8, shuffle=False):
    g = torch.Generator().manual_seed(1)
    y = torch.arange(n) % 3
    x = torch.randn(n, 3, 32, 32, generator=g) * 0.1 + y.view(-1, 1, 1, 1).float()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)


def _trainer(tmp_path, **kw):
    kw.setdefault("max_epochs", 2)
    return pl.Trainer(
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=kw.pop("logger", False),
        **kw,
    )


def test_fit_logs_loss_and_default_metrics(tmp_path):
    model = TinyTask()
    trainer = _trainer(tmp_path, enable_checkpointing=False)
    trainer.fit(model, _loader(), _loader())
    logged = trainer.logged_metrics
    assert {"train/loss_step", "train/loss_epoch", "val/loss", "val/accuracy"} <= set(logged)
    assert 0.0 <= logged["val/accuracy"] <= 1.0
    result = trainer.test(model, _loader(), verbose=False)[0]
    assert set(result) == {"test/loss", "test/accuracy"}


def test_learning_rate_and_gradient_norm_logging(tmp_path):
    model = TinyTask(logging_config=LoggingConfig(log_learning_rate=True, log_gradient_norm=True))
    trainer = _trainer(tmp_path, max_epochs=1, enable_checkpointing=False)
    trainer.fit(model, _loader())
    assert trainer.logged_metrics["train/grad_norm"] > 0
    # Cosine over one epoch: the first (and only) epoch runs at the initial rate.
    assert trainer.logged_metrics["train/lr"] == pytest.approx(1e-2)


def test_lr_property_is_what_configure_optimizers_uses(tmp_path):
    model = TinyTask(lr=1e-2)
    model._lr = 1e-4  # the spec's two-phase example
    assert model.lr == 1e-4
    model.lr = 3e-4
    assert model._lr == 3e-4
    trainer = _trainer(tmp_path, max_epochs=1, enable_checkpointing=False)
    trainer.fit(model, _loader())
    # cosine's first epoch uses the base rate
    assert trainer.optimizers[0].param_groups[0]["initial_lr"] == pytest.approx(3e-4)


def test_lightning_lr_finder_sets_model_lr(tmp_path):
    from pytorch_lightning.tuner import Tuner

    model = TinyTask(lr=1e-3)
    trainer = _trainer(tmp_path, max_epochs=1)
    result = Tuner(trainer).lr_find(
        model, _loader(64, 4), min_lr=1e-5, max_lr=1e-1, num_training=15, early_stop_threshold=None
    )
    assert result.suggestion() is not None
    assert model.lr == pytest.approx(result.suggestion())
    assert model.hparams.lr == pytest.approx(result.suggestion())


def test_frozen_backbone_keeps_weights_and_batchnorm_statistics(tmp_path):
    model = TinyTask(freeze_backbone=True)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head.weight.clone()
    trainer = _trainer(tmp_path, max_epochs=1, enable_checkpointing=False)
    trainer.fit(model, _loader())
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # running stats included
    assert not torch.equal(head_before, model.head.weight)
    # Phase two of the spec: unfreeze by hand, BatchNorm trains again.
    for p in model.backbone.parameters():
        p.requires_grad = True
    model.train()
    bns = [m for m in model.backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.training for m in bns)
    trainer2 = _trainer(tmp_path, max_epochs=1, enable_checkpointing=False)
    trainer2.fit(model, _loader())
    assert any(not torch.equal(before[k], model.backbone.state_dict()[k]) for k in before)


@pytest.mark.parametrize(
    ("scheduler", "kwargs"),
    [
        ("multistep", {"milestones": [1], "gamma": 0.1}),
        ("onecycle", {}),
        ("plateau", {"patience": 0}),
        ("cosinelrscheduler", {}),
        ("cosinelrscheduler", {"interval": "step"}),
        (None, {}),
    ],
)
def test_schedulers_step_under_lightning(tmp_path, scheduler, kwargs):
    model = TinyTask(scheduler=scheduler, scheduler_kwargs=kwargs, lr=0.1, optimizer="sgd")
    trainer = _trainer(tmp_path, max_epochs=2, enable_checkpointing=False)
    trainer.fit(model, _loader(), _loader())
    lr = trainer.optimizers[0].param_groups[0]["lr"]
    if scheduler == "multistep":
        assert lr == pytest.approx(0.01)
    elif scheduler is None:
        assert lr == pytest.approx(0.1)
    elif scheduler == "plateau":
        assert lr <= 0.1
    else:
        assert lr < 0.1


def test_cosine_over_a_max_steps_run(tmp_path):
    # The default scheduler with only max_steps (no max_epochs) anneals over the steps to zero.
    model = TinyTask(lr=0.1, optimizer="sgd")
    trainer = _trainer(tmp_path, max_epochs=None, max_steps=6, enable_checkpointing=False)
    trainer.fit(model, _loader())
    assert trainer.lr_scheduler_configs[0].interval == "step"
    assert trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-9)


def test_checkpoint_round_trip_rebuilds_model(tmp_path):
    metrics = [MetricConfig("acc", "Accuracy", stages=["val"], prog_bar=True)]
    model = TinyTask(metrics=metrics, logging_config=LoggingConfig(log_learning_rate=True), lr=5e-3)
    trainer = _trainer(tmp_path, max_epochs=1)
    trainer.fit(model, _loader(), _loader())
    path = trainer.checkpoint_callback.best_model_path
    checkpoint = torch.load(path, weights_only=True)  # plain data only
    assert checkpoint["hyper_parameters"]["metrics"][0]["metric_class"] == "Accuracy"
    loaded = TinyTask.load_from_checkpoint(path)
    assert loaded.metric_configs == metrics and loaded.lr == 5e-3
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    loaded.eval()
    assert torch.allclose(model(x), loaded(x))


def test_unknown_names_fail_at_construction():
    with pytest.raises(ValueError, match="Unknown optimizer 'adamq'"):
        TinyTask(optimizer="adamq")
    with pytest.raises(ValueError, match="Unknown scheduler 'cosin'"):
        TinyTask(scheduler="cosin")


def test_resume_restores_random_state(tmp_path):
    """Straight 4 epochs == 2 epochs + resume to 4 (shuffling and dropout draw the same numbers)."""

    def run(max_steps=-1, ckpt_path=None, root="a"):
        pl.seed_everything(7)
        model = TinyTask(scheduler="cosine")
        model.head = nn.Sequential(nn.Dropout(0.5), model.head)
        trainer = _trainer(tmp_path / root, max_epochs=4, max_steps=max_steps)
        trainer.fit(model, _loader(shuffle=True), ckpt_path=ckpt_path)
        return model, trainer

    straight, _ = run(root="straight")
    _, first = run(max_steps=8, root="split")  # a 4-epoch run stopped after epoch 2
    assert first.current_epoch == 2
    resumed, _ = run(ckpt_path=first.checkpoint_callback.best_model_path, root="split")
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float()), k


def test_saved_hyperparameters_are_plain_data_in_both_stores():
    model = TinyTask(
        metrics=[MetricConfig("acc", "Accuracy", stages=["val"])],
        logging_config=LoggingConfig(log_learning_rate=True),
    )
    for store in (model.hparams, model.hparams_initial):
        assert store["metrics"] == [MetricConfig("acc", "Accuracy", stages=["val"]).to_dict()]
        assert store["logging_config"] == LoggingConfig(log_learning_rate=True).to_dict()
        assert store["lr"] == 1e-2 and store["num_classes"] == 3
    assert dict(model.hparams) == dict(model.hparams_initial)


class ExtraTermOnce(TinyTask):
    """Logs an extra training term on the first batch only."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        if batch_idx == 0:
            self.log_loss("train", loss * 0.5, len(batch[1]), name="loss_extra")
        return loss


def test_training_loss_terms_are_this_steps_only(tmp_path):
    seen = []

    class Probe(pl.Callback):
        def on_before_backward(self, trainer, pl_module, loss):
            seen.append(pl_module.training_loss_terms())

    model = ExtraTermOnce(scheduler=None)
    trainer = _trainer(tmp_path, max_epochs=1, enable_checkpointing=False, callbacks=[Probe()])
    trainer.fit(model, _loader(n=16))
    assert [sorted(t) for t in seen] == [["loss", "loss_extra"], ["loss"]]
    assert not seen[1]["loss"].requires_grad  # detached: holding it keeps no graph alive
    assert seen[0]["loss_extra"] == pytest.approx(float(seen[0]["loss"]) * 0.5)
    # A copy: a caller cannot change what the task keeps.
    model.training_loss_terms().clear()
    assert model.training_loss_terms() == seen[-1]
