"""Interruptions: SIGTERM saves a checkpoint, exits cleanly and names the path to resume from; a
SIGKILL mid-epoch leaves only complete checkpoints, and the run resumes from the last one."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from reliability_helpers import classifier_and_data, colour_folder, trainer

from autotimm_trainer.callbacks import INTERRUPTED_CHECKPOINT, InterruptCheckpoint

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


class SendSignal(Callback):
    """Sends ``signum`` to this process after training batch ``batch`` of epoch ``epoch``."""

    def __init__(self, signum: int, epoch: int, batch: int) -> None:
        self.signum, self.epoch, self.batch = signum, epoch, batch

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.current_epoch == self.epoch and batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)


def test_sigterm_saves_checkpoint_and_names_it(tmp_path):
    data_root = colour_folder(tmp_path / "data")  # 3 batches per epoch
    model, data = classifier_and_data(data_root)
    t = trainer(tmp_path, max_epochs=3, callbacks=[SendSignal(signal.SIGTERM, epoch=1, batch=0)])
    records: list[str] = []
    before = signal.getsignal(signal.SIGTERM)
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logging.getLogger("autotimm_trainer").addHandler(handler)
    try:
        with pytest.raises(SystemExit) as info:
            t.fit(model, datamodule=data)
    finally:
        logging.getLogger("autotimm_trainer").removeHandler(handler)
    assert info.value.code in (None, 0)  # a clean exit, as Lightning's SIGTERM handling does
    assert signal.getsignal(signal.SIGTERM) is before  # Lightning put the handler back
    saved = t.run_dir / "checkpoints" / INTERRUPTED_CHECKPOINT
    assert saved.is_file()
    cb = next(c for c in t.callbacks if isinstance(c, InterruptCheckpoint))
    assert cb.saved_path == str(saved)
    message = next(m for m in records if "Received SIGTERM" in m)
    assert str(saved) in message and "ckpt_path=" in message
    checkpoint = torch.load(saved, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == 4  # epoch 1, batch 0 done

    # Resume: a new trainer finds the interrupted checkpoint as "last" and finishes the run.
    model2, data2 = classifier_and_data(data_root)
    t2 = trainer(tmp_path, max_epochs=3)
    t2.fit(model2, datamodule=data2, ckpt_path="last")
    assert t2.global_step == 9 and t2.current_epoch == 3
    assert t2.state.status == "finished"


KILLED_SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    import torch
    torch.set_num_threads(1)
    from pathlib import Path
    from pytorch_lightning.callbacks import Callback, ModelCheckpoint
    from reliability_helpers import classifier_and_data, trainer

    class Progress(Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            Path({progress!r}).write_text(str(trainer.global_step))
            time.sleep(0.3)  # leaves the parent time to kill mid-epoch

    every_step = ModelCheckpoint(dirpath={ckpt_dir!r}, every_n_train_steps=1, save_last=True)
    model, data = classifier_and_data(Path({data!r}))
    t = trainer(Path({root!r}), max_epochs=3, callbacks=[every_step, Progress()])
    t.fit(model, datamodule=data)
    print("FINISHED")
    """
)


@pytest.mark.slow
def test_sigkill_mid_epoch_leaves_loadable_checkpoints_and_resumes(tmp_path):
    data_root = colour_folder(tmp_path / "data")
    ckpt_dir, progress = tmp_path / "ckpt", tmp_path / "progress.txt"
    script = tmp_path / "train.py"
    script.write_text(
        KILLED_SCRIPT.format(
            tests=str(Path(__file__).parents[1]),
            progress=str(progress),
            ckpt_dir=str(ckpt_dir),
            data=str(data_root),
            root=str(tmp_path / "run"),
        )
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        # Kill after batch 1 of epoch 1 (global step 5), while steps are being checkpointed.
        while not (progress.is_file() and progress.read_text() in {"5", "6"}):
            assert proc.poll() is None, "the training process ended before it was killed"
            assert time.monotonic() < deadline, "the training process made no progress"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert b"FINISHED" not in proc.stdout.read()

    files = sorted(ckpt_dir.iterdir())
    assert files and all(f.suffix == ".ckpt" for f in files), files  # no partial temporaries
    steps = [torch.load(f, map_location="cpu", weights_only=True)["global_step"] for f in files]
    assert max(steps) >= 4

    model, data = classifier_and_data(data_root)
    every_step = ModelCheckpoint(dirpath=ckpt_dir, every_n_train_steps=1, save_last=True)
    t = trainer(tmp_path / "run", max_epochs=3, callbacks=[every_step])
    t.fit(model, datamodule=data, ckpt_path=str(ckpt_dir / "last.ckpt"))
    assert t.state.status == "finished" and t.global_step == 9
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
