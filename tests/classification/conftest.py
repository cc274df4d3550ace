"""Fixtures for the classification tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from helpers import make_image_folder


@pytest.fixture(scope="session")
def colour_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ (12 per class) and test/ (4 per class) of three colour classes, 40x48 JPEGs."""
    return make_image_folder(tmp_path_factory.mktemp("colours"), {"train": 12, "test": 4})


def pytest_configure(config: pytest.Config) -> None:
    # torchvision 0.29 marks its image decoders deprecated in favour of TorchCodec; they are what
    # the data module uses (and measured fastest here), so the notice is noise in these tests.
    config.addinivalue_line(
        "filterwarnings",
        "ignore:The image decoding and encoding capabilities of TorchVision:DeprecationWarning",
    )
