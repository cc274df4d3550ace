"""FiniteCheck's public loss-terms hook: any LightningModule can name its loss terms."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from trainer_helpers import TinyData, TinyModel

from autotimm_trainer import AutoTrainer, FiniteCheck, NonFiniteLossError

QUIET = {"enable_progress_bar": False, "enable_model_summary": False, "accelerator": "cpu"}


class NamedTerms(TinyModel):
    """A plain LightningModule that reports its loss terms; ``aux`` turns inf at step 2."""

    def training_step(self, batch, batch_idx):
        x, y = batch
        main = F.cross_entropy(self(x), y)
        aux = main.detach() * (float("inf") if self.global_step >= 2 else 0.0)
        self._terms = {"loss_main": main.detach(), "loss_aux": aux}
        return main  # the returned total stays finite: only the hook reveals the bad term

    def training_loss_terms(self):
        return self._terms


class NaNLoss(TinyModel):
    """No hook: the returned loss becomes NaN at step 1."""

    def training_step(self, batch, batch_idx):
        loss = super().training_step(batch, batch_idx)
        return loss * float("nan") if self.global_step >= 1 else loss


def _fit(tmp_path, model):
    trainer = AutoTrainer(max_epochs=1, default_root_dir=tmp_path, **QUIET)
    trainer.fit(model, datamodule=TinyData())
    return trainer


def test_the_hook_names_the_non_finite_term_of_any_lightning_module(tmp_path):
    model = NamedTerms()
    with pytest.raises(NonFiniteLossError, match=r"'loss_aux' is inf at global step 2 \(epoch 0"):
        _fit(tmp_path, model)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_without_the_hook_the_returned_loss_is_checked(tmp_path):
    with pytest.raises(NonFiniteLossError, match=r"'loss' is nan at global step 1"):
        _fit(tmp_path, NaNLoss())


def test_a_hook_that_returns_no_mapping_is_a_clear_error(tmp_path):
    class Wrong(TinyModel):
        def training_loss_terms(self):
            return [1.0]

    with pytest.raises(TypeError, match=r"Wrong\.training_loss_terms\(\) must return a mapping"):
        _fit(tmp_path, Wrong())


def test_finite_check_is_added_and_exported():
    trainer = AutoTrainer(**QUIET)
    assert sum(isinstance(cb, FiniteCheck) for cb in trainer.callbacks) == 1
