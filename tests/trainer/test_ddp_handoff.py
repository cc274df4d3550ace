"""The fit-state hand-off to DDP workers: taken only by the worker fit it belongs to."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from autotimm_trainer import ddp

STATE = ddp.FitState(run_dir="/runs/version_3", tuning={"lr": 0.01, "batch_size": 16})


@pytest.fixture
def as_worker(monkeypatch):
    """This process plays a worker whose launcher is itself (its parent pid is its own)."""
    monkeypatch.delenv(ddp.FIT_STATE_ENV, raising=False)
    monkeypatch.setattr(ddp.os, "getppid", os.getpid)


def test_published_only_during_the_fit_and_restored(tmp_path, monkeypatch):
    monkeypatch.setenv(ddp.FIT_STATE_ENV, "earlier")
    with ddp.published(STATE, tmp_path, 2):
        payload = json.loads(os.environ[ddp.FIT_STATE_ENV])
        assert payload["launcher_pid"] == os.getpid()
        assert payload["run_dir"] == STATE.run_dir and payload["tuning"] == STATE.tuning
    assert os.environ[ddp.FIT_STATE_ENV] == "earlier"


def test_the_matching_ddp_fit_takes_it_once(tmp_path, as_worker, monkeypatch):
    with ddp.published(STATE, tmp_path, 2):
        # A single-device fit earlier in the script, or a trainer writing elsewhere: not it.
        assert ddp.take(tmp_path, 1) is None
        assert ddp.take(tmp_path / "other", 2) is None
        assert ddp.take(tmp_path, 4) is None
        # The fit it belongs to (relative or absolute root alike) ...
        monkeypatch.chdir(tmp_path.parent)
        assert ddp.take(tmp_path.name, 2) == STATE
        # ... and a later fit of the same worker decides on its own.
        assert ddp.take(tmp_path, 2) is None


def test_a_state_from_another_process_than_the_parent_is_ignored(tmp_path, monkeypatch):
    with ddp.published(STATE, tmp_path, 2):
        monkeypatch.setattr(ddp.os, "getppid", lambda: os.getpid() + 1)
        assert ddp.take(tmp_path, 2) is None
        assert ddp.FIT_STATE_ENV in os.environ  # left alone


def test_garbage_in_the_variable_is_ignored(tmp_path, as_worker, monkeypatch):
    for raw in ("not json", "[1, 2]", "{}"):
        monkeypatch.setenv(ddp.FIT_STATE_ENV, raw)
        assert ddp.take(tmp_path, 2) is None


def test_a_real_child_process_takes_it_once(tmp_path):
    # What Lightning's launcher does: the workers are children of the launching process.
    child = textwrap.dedent(
        f"""
        from autotimm_trainer import ddp
        first, second = ddp.take({str(tmp_path)!r}, 2), ddp.take({str(tmp_path)!r}, 2)
        print(first.run_dir if first else None, second)
        """
    )
    with ddp.published(STATE, tmp_path, 2):
        out = subprocess.run(
            [sys.executable, "-c", child], capture_output=True, text=True, check=True
        ).stdout.split()
    assert out == [STATE.run_dir, "None"]
