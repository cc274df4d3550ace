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


def install_command(name: str) -> str:
    """The shell command that installs distribution ``name`` (an extra in brackets allowed).

    Our own distributions (``autotimm-core``, ``autotimm-detection[fast-map]`` ...) are not on
    the public package registry, where the name ``autotimm`` is another project's: the command
    installs the package's folder from a clone of the AutoTimm repository, or its wheel as
    ``nox -s build`` writes it to ``dist/``. Any other name is a registry package.

    Args:
        name: a distribution, optionally with extras, e.g. ``"autotimm-core[tensorboard]"``
            or ``"wandb"``.
    """
    if name.startswith("autotimm-"):
        folder, _, extras = name.removeprefix("autotimm-").partition("[")
        extras = f"[{extras}" if extras else ""
        # Every AutoTimm package has the same version (VERSION), so the core's names the wheel.
        wheel = f"dist/autotimm_{folder}-{distribution_version('autotimm-core')}-py3-none-any.whl"
        return (
            f'pip install "./packages/{folder}{extras}" in a clone of the AutoTimm repository, '
            f'or pip install "{wheel}{extras}" with the wheels of nox -s build'
        )
    # An extra's brackets need quotes in a shell.
    return f'pip install "{name}"' if "[" in name else f"pip install {name}"


def require(module: str, pip_name: str | None = None, purpose: str = "") -> ModuleType:
    """Import ``module`` or raise an ImportError that says how to install it.

    Args:
        module: import name, e.g. ``"wandb"``.
        pip_name: distribution to install, with an extra in brackets where one brings the
            module (``"autotimm-core[tensorboard]"``); defaults to ``module``.
        purpose: what the module is needed for, shown in the message.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        what = f" for {purpose}" if purpose else ""
        name = pip_name or module
        raise ImportError(
            f"The package '{name}' is needed{what} but is not installed: {install_command(name)}"
        ) from err


def distribution_version(name: str) -> str:
    """The installed version of distribution ``name``; ``"0.0.0"`` in a source tree without it."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "0.0.0"
