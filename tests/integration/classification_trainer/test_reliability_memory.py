"""Host memory does not grow epoch over epoch during a training run (resident set size, psutil)."""

from __future__ import annotations

import gc

import psutil
import pytest
from pytorch_lightning.callbacks import Callback
from reliability_helpers import classifier_and_data, colour_folder, trainer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")

#: Allowed growth of the resident set between the end of epoch 3 and the last epoch.
TOLERANCE_MB = 25


class MemoryProbe(Callback):
    def __init__(self) -> None:
        self.rss_mb: list[float] = []

    def on_train_epoch_end(self, trainer, pl_module):
        gc.collect()
        self.rss_mb.append(psutil.Process().memory_info().rss / 2**20)


@pytest.mark.slow
def test_training_does_not_grow_host_memory(tmp_path):
    model, data = classifier_and_data(colour_folder(tmp_path / "data"))
    probe = MemoryProbe()
    t = trainer(
        tmp_path,
        max_epochs=12,
        callbacks=[probe],
        checkpoint_monitor="val/accuracy",
        logger=[{"backend": "csv"}],
    )
    t.fit(model, datamodule=data)
    rss = probe.rss_mb
    assert len(rss) == 12
    # The first epochs warm caches and allocators up; after that the resident set stays flat.
    growth = max(rss[3:]) - rss[2]
    assert growth < TOLERANCE_MB, f"RSS grew {growth:.1f} MB over epochs 3-12: {rss}"
