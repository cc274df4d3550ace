"""Augmentation randomness that follows torch's generator (seed_everything, workers, resume)."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["seed_albumentations"]


def seed_albumentations(pipeline: Any) -> None:
    """Seed an albumentations ``Compose`` from torch's generator before one call.

    albumentations draws from generators of its own, seeded from the OS: drawing their seed from
    torch's generator makes the augmentation follow ``seed_everything``, the DataLoader's
    per-worker seeds and the generator states a checkpoint restores (exact resume).
    """
    seed = int(torch.randint(0, 2**63 - 1, ()))
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
