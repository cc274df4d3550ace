"""Argument checks shared by the task packages, with messages that list the valid choices."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def check_choice(param: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``; else a ValueError naming ``param`` and them.

    Args:
        param: the parameter's name as the user wrote it (e.g. ``"augmentation_preset"``).
        value: what the user passed.
        choices: the valid values, listed in the message in this order.
    """
    choices = list(choices)
    if value not in choices:
        raise ValueError(f"{param} must be one of {choices}, got {value!r}")
    return value
