"""Run folders and checkpoint paths: where a ``fit`` writes, and what ``ckpt_path`` may name.

Each ``fit`` writes into a folder of its own (``version_N``, a given ``name``, or the first
logger's folder) and its checkpoints into a fresh ``checkpoints`` folder there, so an earlier run's files are
never overwritten; ``ckpt_path="last"`` therefore has to be resolved across those folders.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import torch
from pytorch_lightning.loggers import Logger

#: ``ckpt_path`` values Lightning resolves itself rather than reading a file.
CKPT_KEYWORDS = ("last", "best", "hpc", "registry")


def next_version_dir(default_root_dir: str | Path, name: str | None = None) -> Path:
    """The folder of a new run (not created here): ``default_root_dir/<name>`` when ``name`` is
    given (``<name>_1``, ``<name>_2``... once it holds files), else the next free
    ``default_root_dir/version_N``."""
    root = Path(default_root_dir)
    if name:
        return fresh_dir(root / name)
    taken = [
        int(m.group(1))
        for p in (root.iterdir() if root.is_dir() else [])
        if (m := re.fullmatch(r"version_(\d+)", p.name))
    ]
    return root / f"version_{max(taken, default=-1) + 1}"


def new_run_dir(
    default_root_dir: str | Path, loggers: Sequence[Logger] = (), name: str | None = None
) -> Path:
    """The folder of a new run: the first logger's ``log_dir`` if it has one, else
    :func:`next_version_dir` (not created here)."""
    if loggers and getattr(loggers[0], "log_dir", None):
        return Path(loggers[0].log_dir)
    return next_version_dir(default_root_dir, name)


def fresh_dir(path: Path) -> Path:
    """``path``, or ``path_1``, ``path_2``... : the first that does not exist or is empty."""
    candidate, n = path, 0
    while candidate.is_dir() and any(candidate.iterdir()):
        n += 1
        candidate = path.with_name(f"{path.name}_{n}")
    return candidate


def find_last_checkpoint(
    root: str | Path, extra_dirs: Sequence[str | Path | None] = ()
) -> str | None:
    """The most recently written ``.ckpt`` in AutoTrainer's checkpoint folders under ``root``.

    Looks in ``extra_dirs`` (``None`` entries are skipped) and every ``checkpoints*`` folder below
    ``root`` (``runs/version_N`` and logger run folders alike); None when there is none.
    """
    found: list[Path] = []
    for d in extra_dirs:
        if d and Path(d).is_dir():
            found += Path(d).glob("*.ckpt")
    root = Path(root)
    if root.is_dir():
        found += (p for p in root.glob("**/checkpoints*/*.ckpt") if p.is_file())
    if not found:
        return None
    return str(max(found, key=lambda p: p.stat().st_mtime_ns))


def check_ckpt_path(ckpt_path: str | Path | None) -> None:
    """Fail before anything runs when ``ckpt_path`` is missing or not a Lightning checkpoint.

    Lightning's keywords (``"last"``, ``"best"``...), ``registry:`` names and URLs pass
    unchecked: Lightning resolves them itself.
    """
    if ckpt_path is None:
        return
    text = str(ckpt_path)
    if text in CKPT_KEYWORDS or text.startswith("registry:") or "://" in text:
        return
    path = Path(text)
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={text!r} does not exist (or is not a file)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        if "weights_only" in str(err).lower():
            return  # a real torch file holding other objects: Lightning loads it as it sees fit
        raise ValueError(
            f"ckpt_path={text!r} is not a checkpoint torch can read: {type(err).__name__}: {err}"
        ) from None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise ValueError(
            f"ckpt_path={text!r} is not a Lightning checkpoint (no 'state_dict'; "
            "it may be a plain model state_dict: load it with model.load_state_dict instead)"
        )
