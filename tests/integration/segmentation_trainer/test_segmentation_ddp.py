"""DDP on CPU with 2 processes evaluates exactly the single-process segmentation data.

The validation split has an odd number of images (5): Lightning's padding DistributedSampler
would repeat one and move the synced mIoU, so the data module hands each validation image to
exactly one rank (the core's unpadded sampler), and the ranks run different numbers of batches.
The DDP run lives in a script of its own: Lightning's launcher re-runs that script for rank 1.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

TESTS = Path(__file__).resolve().parents[2]
for sub in ("segmentation", "trainer"):
    if str(TESTS / sub) not in sys.path:
        sys.path.insert(0, str(TESTS / sub))

from ddp_launch import run_ddp_script  # noqa: E402  (tests/trainer)
from scenes import make_folder  # noqa: E402  (tests/segmentation)

pytestmark = pytest.mark.slow

SCRIPT = textwrap.dedent(
    """
    import json
    import torch
    torch.set_num_threads(1)
    from pathlib import Path
    import pytorch_lightning as pl
    from autotimm_segmentation import SegmentationDataModule, SemanticSegmentor

    root = Path({root!r})
    data = SegmentationDataModule(root / "scenes", image_size=64, batch_size=2, num_workers=0)
    model = SemanticSegmentor("test_resnet", num_classes=data.num_classes, pretrained=False)
    model.load_state_dict(torch.load(root / "seg.pt"))
    trainer = pl.Trainer(
        accelerator="cpu", devices=2, strategy="ddp", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=root / "ddp",
    )
    result = trainer.validate(model, datamodule=data, verbose=False)[0]
    out = {{"metrics": {{k: float(v) for k, v in result.items()}},
           "indices": list(iter(trainer.val_dataloaders.sampler)),
           "world": trainer.world_size}}
    with open(root / f"rank{{trainer.global_rank}}.json", "w") as f:
        json.dump(out, f)
    """
)


def test_ddp_validation_equals_single_process(tmp_path):
    import pytorch_lightning as pl

    from autotimm_segmentation import SegmentationDataModule, SemanticSegmentor

    make_folder(tmp_path / "scenes", {"train": 2, "val": 5})
    torch.manual_seed(0)
    data = SegmentationDataModule(tmp_path / "scenes", image_size=64, batch_size=2, num_workers=0)
    model = SemanticSegmentor("test_resnet", num_classes=data.num_classes, pretrained=False)
    torch.save(model.state_dict(), tmp_path / "seg.pt")
    single = pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path / "one",
    ).validate(model, datamodule=data, verbose=False)[0]  # fmt: skip

    ranks = run_ddp_script(SCRIPT.format(root=str(tmp_path)), tmp_path)
    assert ranks[0]["world"] == 2
    # Every validation image evaluated by exactly one rank: none repeated, none dropped.
    assert sorted(ranks[0]["indices"] + ranks[1]["indices"]) == list(range(5))
    per_class = [k for k in single if k.startswith("val/iou/")]
    assert per_class, sorted(single)
    for rank in ranks:
        for key in ("val/miou", "val/dice", *per_class):
            assert rank["metrics"][key] == pytest.approx(float(single[key]), abs=1e-6), key
