"""Shared test set-up. Imports no task package: every package's session uses this file."""

import os

# One torch thread per test process: with 2 threads, a busy neighbour makes CPU runs 10-30x
# slower; pytest-xdist uses the cores instead.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest

try:
    import torch
except ImportError:  # the runtime session: autotimm-runtime alone, without torch
    torch = None
else:
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded():
    """Every test starts from the same random state."""
    if torch is not None:
        torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _in_own_folder(tmp_path, monkeypatch):
    """Every test runs in a folder of its own: what Lightning and AutoTimm write relative to the
    working directory (a plain Trainer's log_dir, lightning_logs/) never lands in the checkout."""
    monkeypatch.chdir(tmp_path)
