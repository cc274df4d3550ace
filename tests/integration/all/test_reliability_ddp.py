"""Reliability (issue 8): DDP on CPU with 2 processes evaluates exactly the single-process data.

Both evaluation splits have an odd number of images (9 for classification, 5 for detection):
Lightning's padding ``DistributedSampler`` would repeat one and move the synced accuracy and
mAP, so the data modules hand each evaluation image to exactly one rank. With batches of 4 and 2
the ranks also run different numbers of batches (5+4 images; 3+2 images), and the detector's mAP
must sync per-image states of different lengths (one ``all_gather_object``, not torchmetrics'
one-collective-per-image gather, which hangs on uneven ranks).
The DDP run lives in a script of its own: Lightning's launcher re-runs that script for rank 1.
"""

from __future__ import annotations

import os
import textwrap

import pytest
import torch
from ddp_launch import run_ddp_script
from reliability_helpers import (
    classifier_and_data,
    detector_and_data,
    make_dataset,
    make_image_folder,
    trainer,
)

pytestmark = pytest.mark.slow

# tests/integration, where reliability_helpers lives (the DDP script imports it).
HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCRIPT = textwrap.dedent(
    """
    import json, os, sys
    sys.path.insert(0, {here!r})
    import torch
    torch.set_num_threads(1)
    from pathlib import Path
    from reliability_helpers import classifier_and_data, detector_and_data, trainer

    root = Path({root!r})
    out = {{}}

    def ddp(sub, **kw):
        kw.setdefault("logger", False)
        return trainer(root / sub, devices=2, strategy="ddp", **kw)

    def loaders_seen(t):
        # image indices each rank evaluated, from the sampler Lightning actually used
        return list(iter(t.val_dataloaders.sampler))

    clf, cdata = classifier_and_data(root / "colours")
    clf.load_state_dict(torch.load(root / "clf.pt"))
    t = ddp("clf_val", enable_checkpointing=False)
    out["clf"] = t.validate(clf, datamodule=cdata, verbose=False)[0]
    out["clf_indices"] = loaders_seen(t)

    det, ddata = detector_and_data(root / "shapes")
    ddata.batch_size = 2
    det.load_state_dict(torch.load(root / "det.pt"))
    t = ddp("det_val", enable_checkpointing=False)
    out["det"] = t.validate(det, datamodule=ddata, verbose=False)[0]
    out["det_indices"] = loaders_seen(t)

    clf, cdata = classifier_and_data(root / "colours")
    clf.load_state_dict(torch.load(root / "clf.pt"))
    t = ddp("fit", max_epochs=1, checkpoint_monitor="val/accuracy", checkpoint_mode="max")
    t.fit(clf, datamodule=cdata)
    out["fit"] = {{k: float(v) for k, v in t.callback_metrics.items()}}
    out["best"] = t.best_model_path
    out["world"] = t.world_size
    clf.eval()
    with torch.no_grad():
        out["logits"] = clf(torch.load(root / "probe.pt")).tolist()
    with open(root / f"rank{{t.global_rank}}.json", "w") as f:
        json.dump(out, f)
    """
)


def _metrics(result: dict) -> dict[str, float]:
    return {k: float(v) for k, v in result.items()}


def test_ddp_two_processes_match_single_process(tmp_path):
    from autotimm_classification import ImageClassifier

    torch.manual_seed(0)
    # 3 classes x 3 = 9 validation images; 5 detection validation images: both odd
    make_image_folder(tmp_path / "colours", {"train": 4, "val": 3})
    make_dataset(tmp_path / "shapes", num_train=4, num_val=5, size=(96, 80))

    # the same weights for both runs, written once
    clf, cdata = classifier_and_data(tmp_path / "colours")
    det, ddata = detector_and_data(tmp_path / "shapes")
    # a few steps so the detector finds some boxes: an mAP of 0 on both sides would prove nothing
    trainer(
        tmp_path / "s_det_fit",
        max_epochs=15,
        enable_checkpointing=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    ).fit(det, datamodule=ddata)
    ddata.batch_size = 2  # as in the DDP run
    torch.save(clf.state_dict(), tmp_path / "clf.pt")
    torch.save(det.state_dict(), tmp_path / "det.pt")
    probe = torch.rand(3, 3, 32, 32)
    torch.save(probe, tmp_path / "probe.pt")

    single = {
        "clf": _metrics(
            trainer(tmp_path / "s_clf", enable_checkpointing=False).validate(
                clf, datamodule=cdata, verbose=False
            )[0]
        ),
        "det": _metrics(
            trainer(tmp_path / "s_det", enable_checkpointing=False).validate(
                det, datamodule=ddata, verbose=False
            )[0]
        ),
    }

    ranks = run_ddp_script(SCRIPT.format(here=HERE, root=str(tmp_path)), tmp_path)
    assert ranks[0]["world"] == 2

    # every validation image evaluated by exactly one rank: none repeated, none dropped
    for key, size in (("clf_indices", 9), ("det_indices", 5)):
        seen = ranks[0][key] + ranks[1][key]
        assert sorted(seen) == list(range(size)), (key, ranks[0][key], ranks[1][key])

    # synced metrics equal the single-process values, on both ranks
    for rank in ranks:
        assert rank["clf"]["val/accuracy"] == pytest.approx(single["clf"]["val/accuracy"], abs=1e-6)
        assert rank["det"]["val/map"] == pytest.approx(single["det"]["val/map"], abs=1e-6)
    assert single["det"]["val/map"] > 0 and single["det"]["val/mar_100"] > 0
    for rank in ranks:
        for key, value in single["det"].items():
            if key.startswith(("val/map", "val/mar")):
                assert rank["det"][key] == pytest.approx(value, abs=1e-6), key

    # the DDP fit wrote one best checkpoint (rank 0), and it loads in a single process
    assert ranks[0]["best"] == ranks[1]["best"] and ranks[0]["best"]
    ckpts = [p for p in (tmp_path / "fit").rglob("*.ckpt") if p.name != "last.ckpt"]
    assert [str(p) for p in ckpts] == [ranks[0]["best"]]
    loaded = ImageClassifier.load_from_checkpoint(ranks[0]["best"], map_location="cpu")
    loaded.eval()
    with torch.no_grad():
        logits = loaded(probe)
    assert torch.allclose(logits, torch.tensor(ranks[0]["logits"]), atol=1e-6)
    assert ranks[0]["logits"] == ranks[1]["logits"]  # both ranks hold the same weights
    # and the single-process validation of the checkpoint gives the DDP-synced accuracy
    _, cdata = classifier_and_data(tmp_path / "colours")
    again = trainer(tmp_path / "s_ckpt", enable_checkpointing=False).validate(
        loaded, datamodule=cdata, verbose=False
    )[0]
    assert float(again["val/accuracy"]) == pytest.approx(ranks[0]["fit"]["val/accuracy"], abs=1e-6)
