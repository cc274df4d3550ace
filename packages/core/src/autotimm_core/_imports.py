"""Helpers for optional dependencies: one place that turns a missing package into an actionable error."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType


def is_available(module: str) -> bool:
    """Return True when ``module`` can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, pip_name: str | None = None, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise an ImportError that names the pip package to install.

    Args:
        module: import name, e.g. ``"wandb"``.
        pip_name: distribution to install; defaults to ``module``.
        purpose: what the module is needed for, shown in the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        what = f" for {purpose}" if purpose else ""
        name = pip_name or module
        # An extra's brackets need quotes in a shell.
        command = f'pip install "{name}"' if "[" in name else f"pip install {name}"
        raise ImportError(
            f"The package '{name}' is needed{what} but is not installed: {command}"
        ) from err


def distribution_version(name: str) -> str:
    """The installed version of distribution ``name``; ``"0.0.0"`` in a source tree without it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "0.0.0"
