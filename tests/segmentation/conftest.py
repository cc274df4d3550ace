from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from scenes import make_folder


@pytest.fixture(scope="session")
def scenes_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small folder-layout set: 24 training and 8 validation images of 64x48."""
    return make_folder(tmp_path_factory.mktemp("scenes"), {"train": 24, "val": 8})
