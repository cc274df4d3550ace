"""Exact resume through AutoTrainer: 4 epochs straight == 2 epochs, stop, ``fit(ckpt_path="last")``
to 4 (same weights, same logged metrics), for the classifier and the detector, on CPU with a seed.
"""

from __future__ import annotations

import math

import pytest
import torch
from reliability_helpers import (
    RecordingLogger,
    classifier_and_data,
    colour_folder,
    detector_and_data,
    shapes_folder,
    trainer,
)

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

SEED = 11


def _run(make, data_root, root, batches_per_epoch, stop_after=None, ckpt_path=None):
    log = RecordingLogger()
    t = trainer(
        root,
        seed=SEED,  # seeds before the model is built
        max_epochs=4,
        # Stops at the end of epoch `stop_after` while the schedule stays the 4-epoch one.
        max_steps=-1 if stop_after is None else stop_after * batches_per_epoch,
        logger=log,
        log_every_n_steps=1,
    )
    model, data = make(data_root)
    t.fit(model, datamodule=data, ckpt_path=ckpt_path)
    return model, t, log


def _assert_same_run(make, tmp_path, data_root, batches_per_epoch):
    straight, _, straight_log = _run(make, data_root, tmp_path / "straight", batches_per_epoch)
    _, first, _ = _run(make, data_root, tmp_path / "split", batches_per_epoch, stop_after=2)
    assert first.current_epoch == 2
    resumed, again, resumed_log = _run(
        make, data_root, tmp_path / "split", batches_per_epoch, ckpt_path="last"
    )
    assert again.current_epoch == 4

    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6), name

    resume_step = 2 * batches_per_epoch
    later = [(s, m) for s, m in straight_log.records if s >= resume_step]
    assert [s for s, _ in later] == [s for s, _ in resumed_log.records]
    for (step, expected), (_, got) in zip(later, resumed_log.records):
        assert expected.keys() == got.keys(), step
        for key, value in expected.items():
            assert math.isclose(value, got[key], rel_tol=1e-5, abs_tol=1e-6), (step, key)
    assert any(k.startswith("val/") for _, m in later for k in m)


def test_classifier_resumes_exactly(tmp_path):
    data_root = colour_folder(tmp_path / "data")  # 12 training images, batch 4: 3 per epoch
    _assert_same_run(classifier_and_data, tmp_path, data_root, batches_per_epoch=3)


@pytest.mark.slow
def test_detector_resumes_exactly(tmp_path):
    data_root = shapes_folder(tmp_path / "data")  # 8 training images, batch 4: 2 per epoch
    _assert_same_run(detector_and_data, tmp_path, data_root, batches_per_epoch=2)
