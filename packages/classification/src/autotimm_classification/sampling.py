"""Class frequencies of a training split, and the per-sample weights that balance them."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from autotimm_classification.datasets import Target


def _as_matrix(targets: Sequence[Target], num_classes: int) -> torch.Tensor:
    """``(N, C)`` 0/1 matrix: one-hot class indices, or the multi-hot vectors as they are."""
    if not targets:
        return torch.zeros(0, num_classes)
    first = targets[0]
    if isinstance(first, torch.Tensor) and first.ndim == 1:
        return (torch.stack([torch.as_tensor(t) for t in targets]).float() > 0.5).float()
    index = torch.as_tensor([int(t) for t in targets], dtype=torch.long)
    return torch.nn.functional.one_hot(index, num_classes).float()


def class_counts(targets: Sequence[Target], num_classes: int) -> list[int]:
    """Samples per class: for class indices how many have each, for multi-hot vectors how many
    carry each label (an image counts once for every label it has)."""
    return [int(c) for c in _as_matrix(targets, num_classes).sum(0).tolist()]


def balanced_sample_weights(targets: Sequence[Target], num_classes: int) -> torch.Tensor:
    """One weight per sample such that weighted draws see every class about equally often.

    A sample of class ``c`` weighs ``1 / count(c)``, so each class carries the same total. A
    multi-label sample takes the largest weight of its labels (its rarest label decides, as in
    LVIS's repeat-factor sampling); samples without any label form one group of their own.
    """
    matrix = _as_matrix(targets, num_classes)
    counts = matrix.sum(0)
    inverse = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    weights = (matrix * inverse).amax(dim=1) if num_classes else torch.zeros(len(matrix))
    empty = matrix.sum(1) == 0
    if empty.any():
        weights[empty] = 1.0 / int(empty.sum())
    return weights.double()
