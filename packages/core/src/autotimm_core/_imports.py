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
        raise ImportError(
            f"The package '{pip_name or module}' is needed{what} but is not installed: "
            f"pip install {pip_name or module}"
        ) from err
