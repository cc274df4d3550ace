"""BaseTask's network options on ImageClassifier: weight EMA, channels_last, compile."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
from helpers import quiet_trainer
from pytorch_lightning.callbacks import Callback

from autotimm_classification import ImageClassifier, ImageDataModule
from autotimm_core.ema import ModelEma, ema_decay_at

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _data(root):
    return ImageDataModule(root, image_size=32, batch_size=12, num_workers=0, val_split=0.25)


def _model(**kw):
    return ImageClassifier("test_resnet", num_classes=3, pretrained=False, lr=1e-2, **kw)


def _trainer(tmp_path, **kw):
    kw.setdefault("max_epochs", 1)
    return quiet_trainer(tmp_path, num_sanity_val_steps=0, **kw)


class LiveWeights(Callback):
    """The model's float weights after each optimizer step (before the EMA update)."""

    def __init__(self):
        self.steps = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.steps.append(
            {
                k: v.detach().clone()
                for k, v in pl_module.state_dict().items()
                if v.is_floating_point()
            }
        )


def test_ema_schedule_and_bad_decay():
    # timm's ModelEmaV3 warm-up: (1 + n) / (10 + n), capped at the decay.
    assert ema_decay_at(0.9998, 0) == pytest.approx(0.1)
    assert ema_decay_at(0.9998, 90) == pytest.approx(0.91)
    assert ema_decay_at(0.5, 90) == 0.5
    for bad in (0, 1, 1.5, True, "0.9"):
        with pytest.raises(ValueError, match=r"ema_decay must be a number in \(0, 1\)"):
            _model(ema=True, ema_decay=bad)


def test_ema_weights_are_the_average_and_what_fit_leaves(colour_folder, tmp_path):
    model = _model(ema=True, ema_decay=0.6)
    live = LiveWeights()
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[live])
    trainer.fit(model, datamodule=_data(colour_folder))
    assert len(live.steps) == 4  # 27 training images, batches of 12 (the last is dropped)
    # The EMA by hand: the first update copies, then e = d * e + (1 - d) * w.
    expected = dict(live.steps[0])
    for n, weights in enumerate(live.steps[1:], start=1):
        d = ema_decay_at(0.6, n)
        expected = {k: d * expected[k] + (1 - d) * w for k, w in weights.items()}
    final = model.state_dict()
    for key, value in expected.items():
        torch.testing.assert_close(final[key], value, rtol=1e-5, atol=1e-6)
    # ... which differ from the last live weights (the model has moved).
    conv = next(k for k in expected if k.endswith("conv1.weight"))
    assert not torch.allclose(final[conv], live.steps[-1][conv])
    # A checkpoint holds the average as its state_dict, the live weights beside it.
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "m.ckpt")
    torch.testing.assert_close(loaded.state_dict()[conv], final[conv])


def _fit_epochs(root, tmp_path, epochs, ckpt_path=None, save=None):
    pl.seed_everything(3)
    model = _model(ema=True, ema_decay=0.7)
    trainer = _trainer(tmp_path, max_epochs=epochs)
    trainer.fit(model, datamodule=_data(root), ckpt_path=ckpt_path)
    if save:
        trainer.save_checkpoint(save)
    return model


def test_ema_resume_is_exact(colour_folder, tmp_path):
    straight = _fit_epochs(colour_folder, tmp_path / "a", 2)
    ckpt = tmp_path / "epoch1.ckpt"
    # Saved mid-fit state: stop after 1 epoch (the checkpoint then holds the EMA and live weights).
    pl.seed_everything(3)
    first = _model(ema=True, ema_decay=0.7)
    trainer = _trainer(tmp_path / "b", max_epochs=2)

    class StopAfterFirstEpoch(Callback):
        def on_train_epoch_end(self, trainer, pl_module):
            if trainer.current_epoch == 0:
                trainer.save_checkpoint(ckpt)
                trainer.should_stop = True

    trainer.callbacks.append(StopAfterFirstEpoch())
    trainer.fit(first, datamodule=_data(colour_folder))
    resumed = _fit_epochs(colour_folder, tmp_path / "c", 2, ckpt_path=ckpt)
    for key, value in straight.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_channels_last_weights_and_inputs(colour_folder):
    model = _model(channels_last=True)
    convs = [p for p in model.parameters() if p.ndim == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert model.prepare_images(images).is_contiguous(memory_format=torch.channels_last)
    plain = _model()
    plain.load_state_dict(model.state_dict())  # the same names and shapes
    model.eval(), plain.eval()
    torch.testing.assert_close(model(images), plain(images), rtol=1e-4, atol=1e-5)


def test_compiled_model_checkpoints_load_both_ways():
    compiled = _model(compile={"dynamic": False})
    assert compiled.compile_options == {"dynamic": False}
    plain = _model()
    # In place: the parameter names are the plain model's, so state dicts go both ways.
    assert list(compiled.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(compiled.state_dict())
    compiled.load_state_dict(plain.state_dict())
    with pytest.raises(ValueError, match="compile must be True, False or a dict"):
        _model(compile="max-autotune")


def test_ema_comes_after_the_data_contract():
    callbacks = _model(ema=True).configure_callbacks()
    assert [type(c).__name__ for c in callbacks] == ["DataContract", "ModelEma"]
    assert isinstance(callbacks[1], ModelEma) and callbacks[1].decay == 0.9998
    assert [type(c).__name__ for c in _model().configure_callbacks()] == ["DataContract"]
