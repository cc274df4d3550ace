"""Skewed classes: balanced_sampling, class_weights (lists and "balanced"), mixup/cutmix."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import COLOURS, coloured_image, quiet_trainer

from autotimm_classification import ImageClassifier, ImageDataModule
from autotimm_classification.mixing import create_mixup, mix_batch
from autotimm_classification.sampling import balanced_sample_weights, class_counts
from autotimm_core.data import ClassCounts
from autotimm_core.distributed import WeightedDistributedSampler

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

#: Training images per class: blue is common, red rare.
SKEW = {"blue": 12, "green": 4, "red": 2}


@pytest.fixture(scope="module")
def skewed_folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("skewed")
    rng = np.random.default_rng(0)
    for name, n in SKEW.items():
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(n):
            coloured_image(COLOURS[name], rng).save(folder / f"{i}.png")
    return root


def _data(root, **kw):
    kw.setdefault("val_split", 0)
    return ImageDataModule(root, image_size=32, batch_size=6, num_workers=0, **kw)


def _model(**kw):
    return ImageClassifier("test_resnet", num_classes=3, pretrained=False, **kw)


def _fit(model, data, tmp_path, steps=2):
    trainer = quiet_trainer(tmp_path, max_steps=steps)
    trainer.fit(model, datamodule=data)
    return trainer


# ----------------------------------------------------------------------------- sampling
def test_sample_weights_give_every_class_the_same_mass():
    targets = [0] * 6 + [1] * 3 + [2]
    w = balanced_sample_weights(targets, 3)
    mass = [float(w[torch.tensor(targets) == c].sum()) for c in range(3)]
    assert mass == pytest.approx([1.0, 1.0, 1.0])
    assert class_counts(targets, 3) == [6, 3, 1]


def test_multilabel_sample_weight_is_its_rarest_label():
    # label 0 on four images, label 1 on one (together with 0), one image without labels.
    rows = [[1, 0], [1, 0], [1, 0], [1, 1], [0, 0]]
    targets = [torch.tensor(r, dtype=torch.float32) for r in rows]
    w = balanced_sample_weights(targets, 2)
    assert w.tolist() == pytest.approx([0.25, 0.25, 0.25, 1.0, 1.0])
    assert class_counts(targets, 2) == [4, 1]


def test_balanced_sampling_evens_out_the_classes(skewed_folder):
    data = _data(skewed_folder, balanced_sampling=True)
    data.setup("fit")
    loader = data.train_dataloader()
    assert isinstance(loader.sampler, WeightedDistributedSampler)
    targets = data.train_dataset.targets
    seen = Counter()
    for epoch in range(60):  # the draw changes with the epoch (Lightning calls set_epoch)
        loader.sampler.set_epoch(epoch)
        seen.update(targets[i] for i in loader.sampler)
    total = sum(seen.values())
    # Without it red would be 2/18 = 11% of the draws; balanced, each class about a third.
    for c in range(3):
        assert seen[c] / total == pytest.approx(1 / 3, abs=0.05)


def test_without_balanced_sampling_the_loader_shuffles(skewed_folder):
    data = _data(skewed_folder)
    data.setup("fit")
    assert isinstance(data.train_dataloader().sampler, torch.utils.data.RandomSampler)


# ----------------------------------------------------------------------------- class weights
def test_list_class_weights_weigh_the_cross_entropy():
    model = _model(class_weights=[1.0, 2.0, 0.5])
    logits, target = torch.randn(6, 3), torch.tensor([0, 1, 2, 1, 0, 2])
    expected = F.cross_entropy(logits, target, weight=torch.tensor([1.0, 2.0, 0.5]))
    assert model._loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)
    assert torch.equal(model.state_dict()["loss_class_weights"], torch.tensor([1.0, 2.0, 0.5]))


def test_balanced_class_weights_come_from_the_training_split(skewed_folder, tmp_path):
    model = _model(class_weights="balanced")
    trainer = _fit(model, _data(skewed_folder), tmp_path)
    # scikit-learn's rule: n_samples / (n_classes * count) = 18 / (3 * [12, 4, 2]).
    expected = [18 / 36, 18 / 12, 18 / 6]
    assert model.loss_class_weights.tolist() == pytest.approx(expected)
    # They travel in the checkpoint, so a loaded model computes the same loss.
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    loaded = ImageClassifier.load_from_checkpoint(tmp_path / "m.ckpt")
    assert loaded.loss_class_weights.tolist() == pytest.approx(expected)


def test_balanced_multilabel_weights_are_bce_pos_weights():
    model = _model(class_weights="balanced", multi_label=True)
    model.adopt_class_counts(ClassCounts(per_class=[8, 2, 10], samples=10))
    # negatives per positive, a label on every image counting as one negative
    assert model.loss_class_weights.tolist() == pytest.approx([2 / 8, 8 / 2, 1 / 10])
    logits, target = torch.randn(4, 3), torch.tensor([[1, 0, 1], [0, 1, 1], [1, 0, 1], [0, 0, 1]])
    expected = F.binary_cross_entropy_with_logits(
        logits, target.float(), pos_weight=model.loss_class_weights
    )
    assert model._loss(logits, target).item() == pytest.approx(expected.item(), rel=1e-6)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("inverse", "'balanced' or a list of 3"),
        ([1.0, 2.0], "has 2 values but num_classes=3"),
        ([1.0, -1.0, 1.0], "finite numbers >= 0"),
        (["a", 1, 2], "'balanced' or a list of 3"),
    ],
)
def test_bad_class_weights_are_named(value, message):
    with pytest.raises(ValueError, match=message):
        _model(class_weights=value)


# ----------------------------------------------------------------------------- mixup / cutmix
def test_mixup_mixes_images_and_targets_and_keeps_odd_batches():
    mixup = create_mixup(1.0, 0.0, num_classes=3, label_smoothing=0.1, multi_label=False)
    images = torch.stack([torch.full((3, 8, 8), float(i)) for i in range(5)])
    target = torch.tensor([0, 1, 2, 2, 1])
    mixed, soft = mix_batch(mixup, images.clone(), target)
    assert mixed.shape == images.shape and soft.shape == (5, 3)
    assert soft.sum(1).tolist() == pytest.approx([1.0] * 5)
    off, on = 0.1 / 3, 1 - 0.1 + 0.1 / 3
    # The even head of the batch: sample i mixed with its mirror 3 - i, by one lambda.
    lam = (float(soft[0, 0]) - off) / (on - off)
    for i in range(4):
        assert mixed[i].mean().item() == pytest.approx(lam * i + (1 - lam) * (3 - i), abs=1e-4)
    assert soft[1].tolist() == pytest.approx(
        [off, lam * on + (1 - lam) * off, lam * off + (1 - lam) * on]
    )
    # The last sample of an odd batch stays as it was, with a smoothed one-hot target.
    assert torch.equal(mixed[-1], images[-1])
    assert soft[-1].tolist() == pytest.approx([off, on, off])


def test_mixup_trains_and_skips_hard_train_metrics(skewed_folder, tmp_path):
    model = _model(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)
    trainer = _fit(model, _data(skewed_folder), tmp_path, steps=3)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_multilabel_mixup_mixes_multi_hot_targets():
    mixup = create_mixup(1.0, 0.0, num_classes=2, label_smoothing=0.0, multi_label=True)
    target = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    _, soft = mix_batch(mixup, torch.rand(2, 3, 4, 4), target)
    lam = float(soft[0, 0])
    assert soft.flatten().tolist() == pytest.approx([lam, 1 - lam, 1 - lam, lam])


def test_bad_mixup_settings_are_named():
    with pytest.raises(ValueError, match="mixup_alpha must be a number >= 0"):
        _model(mixup_alpha=-1)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['probability'\].*'switch_prob'"):
        _model(mixup_alpha=0.2, mixup_kwargs={"probability": 0.5})
    with pytest.raises(ValueError, match="come from the classifier"):
        _model(mixup_alpha=0.2, mixup_kwargs={"num_classes": 5})


def test_balanced_sampling_splits_its_draw_across_ddp_ranks(skewed_folder):
    from types import SimpleNamespace

    draws = []
    for rank in range(2):
        data = _data(skewed_folder, balanced_sampling=True)
        data.setup("fit")
        data.trainer = SimpleNamespace(world_size=2, global_rank=rank)
        sampler = data.train_dataloader().sampler
        assert (sampler.num_replicas, sampler.rank) == (2, rank)
        draws.append(list(sampler))
    alone = _data(skewed_folder, balanced_sampling=True)
    alone.setup("fit")
    whole = list(alone.train_dataloader().sampler)
    assert draws == [whole[0::2], whole[1::2]]
