"""Fixtures of the detection tests: generated COCO-format data sets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from shapes import make_dataset


@pytest.fixture(scope="session")
def shapes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small COCO 2017 layout: 16 train, 8 val, 4 test images of 128x96 with 3 classes."""
    return make_dataset(tmp_path_factory.mktemp("shapes"), 16, 8, num_test=4, empty_every=5)
