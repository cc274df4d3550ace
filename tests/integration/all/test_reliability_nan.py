"""A NaN/inf training loss stops the run naming the step and the loss term; NaN weights are never
checkpointed, so the best checkpoint saved before stays as it was."""

from __future__ import annotations

import hashlib
import logging

import pytest
import torch
from reliability_helpers import (
    classifier_and_data,
    colour_folder,
    detector_and_data,
    shapes_folder,
    state_of,
    trainer,
)

from autotimm_trainer import NonFiniteLossError


def _digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _poison_classifier(model, at_step: int, value: float = float("nan")) -> None:
    """From global step ``at_step`` on, the classifier's loss is ``value``."""
    loss_fn = model._loss

    def poisoned(logits, target):
        loss = loss_fn(logits, target)
        if model.training and model.trainer.global_step >= at_step:
            loss = loss * value  # keeps the graph: backward would spread the NaN
        return loss

    model._loss = poisoned


def test_nan_loss_stops_classifier_and_keeps_best_checkpoint(tmp_path):
    model, data = classifier_and_data(colour_folder(tmp_path / "data"))
    _poison_classifier(model, at_step=4)  # 3 batches per epoch: the 2nd batch of epoch 2
    t = trainer(tmp_path, max_epochs=3, checkpoint_monitor="val/accuracy")
    with pytest.raises(NonFiniteLossError) as info:
        t.fit(model, datamodule=data)
    message = str(info.value)
    assert "'loss'" in message and "nan" in message
    assert "global step 4 (epoch 1, batch 1)" in message
    assert "check_finite_loss=False" in message
    # The step was refused before backward: the weights are those of the last good step.
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    ckpts = sorted(p.name for p in (t.run_dir / "checkpoints").glob("*.ckpt"))
    assert ckpts and all("epoch=00" in n or n == "last.ckpt" for n in ckpts), ckpts


def test_detector_error_names_the_term(tmp_path):
    model, data = detector_and_data(shapes_folder(tmp_path / "data"))
    loss_fn = model.loss

    def bad_regression(outputs, targets):
        terms = loss_fn(outputs, targets)
        if model.trainer.global_step >= 1:
            terms["bbox_regression"] = terms["bbox_regression"] * float("inf")
            terms["loss"] = sum(v for k, v in terms.items() if k != "loss")
        return terms

    model.loss = bad_regression
    t = trainer(tmp_path, max_epochs=1, num_sanity_val_steps=0, limit_val_batches=0)
    with pytest.raises(NonFiniteLossError, match=r"'loss_bbox_regression' is inf at global step 1"):
        t.fit(model, datamodule=data)
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())


def test_opt_out_trains_on_but_never_saves_nan_weights(tmp_path, caplog):
    # Without a monitor every epoch end saves, so the poisoned run is sure to try (a monitored
    # run saves only on improvement, which depends on how fast the first run learned).
    model, data = classifier_and_data(colour_folder(tmp_path / "data"))
    t = trainer(tmp_path, max_epochs=2, check_finite_loss=False)
    t.fit(model, datamodule=data)  # a good first run: its checkpoint at the end of epoch 1
    best = t.best_model_path
    assert "epoch=01" in best
    digest = _digest(best)

    _poison_classifier(model, at_step=7)  # during the resumed epoch 2
    t2 = trainer(tmp_path, max_epochs=4, check_finite_loss=False)
    logger = logging.getLogger("autotimm_trainer")
    logger.addHandler(caplog.handler)
    try:
        with pytest.raises(FloatingPointError, match="Refusing to save a checkpoint"):
            t2.fit(model, datamodule=data, ckpt_path=best)
    finally:
        logger.removeHandler(caplog.handler)
    assert "Non-finite training loss at global step 7" in caplog.text  # warned, trained on
    floats = [v for v in model.state_dict().values() if v.is_floating_point()]
    assert not all(torch.isfinite(v).all() for v in floats)  # the NaN step was taken
    assert _digest(best) == digest
    assert not list((t2.run_dir / "checkpoints").glob("*.ckpt"))  # nothing of NaN weights


def test_save_checkpoint_refuses_non_finite_weights(tmp_path):
    model, data = classifier_and_data(colour_folder(tmp_path / "data"))
    t = trainer(tmp_path, max_epochs=1, limit_train_batches=1, limit_val_batches=1)
    t.fit(model, datamodule=data)
    good = state_of(model)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(FloatingPointError, match="weights hold NaN or inf"):
        t.save_checkpoint(tmp_path / "bad.ckpt")
    assert not (tmp_path / "bad.ckpt").exists()
    model.load_state_dict(good)
    t.save_checkpoint(tmp_path / "good.ckpt")
    assert (tmp_path / "good.ckpt").is_file()
