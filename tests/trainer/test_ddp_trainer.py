"""AutoTrainer with strategy="ddp", devices=2 on CPU (gloo): tuning pre-pass, synced metrics,
one checkpoint. Lightning's DDP launcher re-runs the script for rank 1, so the run happens in a
script of its own rather than inside pytest."""

from __future__ import annotations

import textwrap
from pathlib import Path

from ddp_launch import run_ddp_script

HELPERS = Path(__file__).resolve().parents[1] / "trainer"

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {helpers!r})
    import torch
    torch.set_num_threads(1)
    from trainer_helpers import TinyData, TinyModel
    from autotimm_trainer import AutoTrainer, TunerConfig

    class RankLocal(TinyModel):
        def validation_step(self, batch, batch_idx):
            super().validation_step(batch, batch_idx)
            x, y = batch
            # not synced: differs between ranks, unlike val/loss
            self.log("val/local_loss", torch.nn.functional.cross_entropy(self(x), y), batch_size=len(x))

    model, data = RankLocal(lr=0.1), TinyData(num_samples=64, batch_size=8)
    trainer = AutoTrainer(
        max_epochs=2, accelerator="cpu", devices=2, strategy="ddp",
        checkpoint_monitor="val/loss", checkpoint_mode="min",
        default_root_dir={root!r}, enable_progress_bar=False, enable_model_summary=False,
        tuner_config=TunerConfig(auto_lr=True, lr_find_kwargs={{"num_training": 20}}),
    )
    trainer.fit(model, datamodule=data)
    out = {{k: float(v) for k, v in trainer.callback_metrics.items()}}
    out.update(rank=trainer.global_rank, lr=model.lr, best=trainer.best_model_path,
               tuned=trainer.tuning_results["lr"], world=trainer.world_size, step=trainer.global_step)
    with open(os.path.join({root!r}, f"rank{{trainer.global_rank}}.json"), "w") as f:
        json.dump(out, f)
    """
)


def test_ddp_two_cpu_processes(tmp_path):
    ranks = run_ddp_script(SCRIPT.format(helpers=str(HELPERS), root=str(tmp_path)), tmp_path)
    assert [r["rank"] for r in ranks] == [0, 1] and ranks[0]["world"] == 2
    # tuned once, before the workers started, and applied in both
    assert ranks[0]["tuned"] is not None and ranks[0]["tuned"] == ranks[1]["tuned"]
    assert ranks[0]["lr"] == ranks[1]["lr"] == ranks[0]["tuned"]
    # 64 samples / 2 ranks / batch 8 = 4 steps per epoch
    assert ranks[0]["step"] == ranks[1]["step"] == 8
    # synced metrics agree; the rank-local one shows the ranks saw different data
    assert ranks[0]["val/loss"] == ranks[1]["val/loss"]
    assert ranks[0]["val/local_loss"] != ranks[1]["val/local_loss"]
    # one run folder, one best checkpoint (written by rank 0) plus last.ckpt
    assert ranks[0]["best"] == ranks[1]["best"]
    ckpts = sorted(p.name for p in tmp_path.rglob("*.ckpt"))
    assert len(ckpts) == 2 and "last.ckpt" in ckpts
    # one run folder: the workers' loggers neither write nor pick a folder of their own
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["version_0"]
