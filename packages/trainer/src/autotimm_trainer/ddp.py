"""The hand-off of a fit's state from the process that launches DDP workers to those workers.

With ``strategy="ddp"`` Lightning's launcher starts the other ranks by running the user's
script again (``subprocess.Popen``, from inside the launcher's ``fit``, with a copy of its
environment). Each worker builds its own AutoTrainer and calls ``fit`` itself, so what the
launcher decided before launching (the run folder, the tuning results: tuning runs once, in
one process) reaches the workers through an environment variable set during the launcher's
``fit``.

Which of a worker's ``fit`` calls the state belongs to: a script may fit more than once (a
single-device run first, several trainers, a loop). A count of ``fit`` calls kept per process
would pair them only if every process ran the very same sequence, and it is global state that
outlives the runs it counts. The state is instead keyed by what identifies the launching fit:

- the launcher's process id, which must be the worker's parent: Lightning's launcher is the
  process that starts the workers, so a value inherited from anywhere else (an outer job that
  was itself fitting, a stale shell variable) is ignored;
- the trainer's resolved ``default_root_dir`` and its ``world_size`` (more than 1): a
  single-device fit earlier in the script, or a trainer writing elsewhere, is not that fit;
- it is taken once: the first matching ``fit`` of the worker removes it from the environment,
  so a later ``fit`` of the same worker (launched processes live on for the rest of the
  script, and Lightning launches only once) decides on its own, as its launcher does.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The environment variable that carries the state to the workers.
FIT_STATE_ENV = "AUTOTIMM_FIT_STATE"


@dataclass(frozen=True)
class FitState:
    """What a worker takes over from its launcher's ``fit``.

    Args:
        run_dir: the run folder the launcher picked.
        tuning: the launcher's tuning results (``AutoTrainer.tuning_results``), or None.
    """

    run_dir: str
    tuning: dict[str, Any] | None = None


def _key(default_root_dir: str | Path, world_size: int) -> dict[str, Any]:
    return {"root": str(Path(default_root_dir).resolve()), "world_size": int(world_size)}


@contextmanager
def published(state: FitState, default_root_dir: str | Path, world_size: int) -> Iterator[None]:
    """Put ``state`` in the environment for the duration of the ``with`` block (the launcher's
    ``fit``, where Lightning starts the workers); the previous value is restored afterwards.

    Args:
        state: what the workers take over.
        default_root_dir: the launching trainer's ``default_root_dir`` (part of the key).
        world_size: the launching trainer's ``world_size`` (part of the key).
    """
    payload = {
        "launcher_pid": os.getpid(),
        **_key(default_root_dir, world_size),
        "run_dir": state.run_dir,
        "tuning": state.tuning,
    }
    previous = os.environ.get(FIT_STATE_ENV)
    os.environ[FIT_STATE_ENV] = json.dumps(payload)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(FIT_STATE_ENV, None)
        else:
            os.environ[FIT_STATE_ENV] = previous


def take(default_root_dir: str | Path, world_size: int) -> FitState | None:
    """In a DDP worker, the state of the launcher's ``fit`` this ``fit`` pairs with, else None.

    Returns the state (and removes it from the environment) only when it was published by this
    process's parent for a trainer with the same ``default_root_dir`` and ``world_size`` > 1.

    Args:
        default_root_dir: this trainer's ``default_root_dir``.
        world_size: this trainer's ``world_size``.
    """
    raw = os.environ.get(FIT_STATE_ENV)
    if not raw or world_size < 2:
        return None
    try:
        payload = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(payload, dict) or payload.get("launcher_pid") != os.getppid():
        return None  # not from the process that launched this one
    if {k: payload.get(k) for k in ("root", "world_size")} != _key(default_root_dir, world_size):
        return None  # another fit of the script: left for the one it belongs to
    del os.environ[FIT_STATE_ENV]
    return FitState(run_dir=str(payload["run_dir"]), tuning=payload.get("tuning"))
