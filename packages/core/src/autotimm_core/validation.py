"""Argument checks shared by the task packages, with messages that list the valid choices."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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


def check_num_classes(task: str, num_classes: Any, *, optional: bool = True) -> int | None:
    """Return ``num_classes`` if it is a positive int (or None where ``optional``); else a
    ValueError naming ``task`` and what is valid.

    Args:
        task: the task class's name, for the message (e.g. ``"ObjectDetector"``).
        num_classes: what the user passed (or the data module handed over).
        optional: whether None (take the data module's count later) is valid. Default True.
    """
    if num_classes is None and optional:
        return None
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        also = ", or None to take the data module's" if optional else ""
        raise ValueError(
            f"{task}: num_classes must be a positive int (the number of classes in your "
            f"data){also}, got {num_classes!r}"
        )
    return num_classes


def resolve_num_classes(
    task: str, num_classes: Any, **per_class: Sequence[Any] | None
) -> int | None:
    """The class count a task is built with: ``num_classes`` as given, else the length of the
    first per-class list given (``class_names=...``, ``category_ids=...``), else None (the data
    module's, handed over when a stage starts).

    Args:
        task: the task class's name, for the messages.
        num_classes: the user's ``num_classes`` (a positive int or None).
        **per_class: lists with one entry per class, by parameter name; None where not given.

    Raises:
        ValueError: ``num_classes`` is not a positive int or None, or a list's length differs
            from it (the list and both counts are named).
    """
    if num_classes is None:
        given = [values for values in per_class.values() if values is not None]
        num_classes = len(given[0]) if given else None
    check_num_classes(task, num_classes)
    for name, values in per_class.items():
        if values is not None and len(values) != num_classes:
            raise ValueError(
                f"{task}: {name} has {len(values)} entries but num_classes={num_classes}"
            )
    return num_classes
