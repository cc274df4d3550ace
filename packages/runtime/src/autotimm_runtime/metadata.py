"""Reading and checking the metadata AutoTimm writes into its ONNX exports."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

#: Key prefix of AutoTimm's metadata entries (as ``autotimm_core.export`` writes them).
PREFIX = "autotimm."
#: The newest metadata layout this runtime reads.
FORMAT_VERSION = 1
#: Keys every export has.
COMMON_KEYS = (
    "format_version",
    "task",
    "input_name",
    "output_names",
    "input_size",
    "resize_mode",
    "interpolation",
    "class_names",
)
#: Further keys each task needs.
TASK_KEYS = {
    "classification": ("crop_pct", "multi_label"),
    "detection": ("category_ids", "fill"),
}


class MetadataError(ValueError):
    """A file that is not an AutoTimm export, or whose metadata lacks or garbles a key."""


def read_metadata(props: Mapping[str, str], path: str | os.PathLike) -> dict[str, Any]:
    """The decoded AutoTimm metadata of a model, checked for every key its task needs.

    Args:
        props: the model's ``metadata_props`` (onnxruntime's ``custom_metadata_map``).
        path: the file, for messages.

    Raises:
        MetadataError: no AutoTimm metadata, a missing or unreadable key, an unknown task or
            a newer format; the message names the file and the key.
    """
    name = os.fspath(path)
    values: dict[str, Any] = {}
    for key, text in props.items():
        if not key.startswith(PREFIX):
            continue
        try:
            values[key[len(PREFIX) :]] = json.loads(text)
        except json.JSONDecodeError as err:
            raise MetadataError(f"{name}: metadata key {key!r} is not valid JSON: {err}") from err
    if not values:
        raise MetadataError(
            f"{name} is not an AutoTimm export: it has no '{PREFIX}*' metadata (export it with "
            "model.export(...) or `autotimm export`)"
        )
    for key in COMMON_KEYS:
        if key not in values:
            raise MetadataError(f"{name}: metadata key '{PREFIX}{key}' is missing")
    if values["format_version"] > FORMAT_VERSION:
        raise MetadataError(
            f"{name}: metadata format {values['format_version']} is newer than this runtime's "
            f"({FORMAT_VERSION}): upgrade autotimm-runtime"
        )
    task = values["task"]
    if task not in TASK_KEYS:
        raise MetadataError(
            f"{name}: metadata '{PREFIX}task' is {task!r}; this runtime runs {sorted(TASK_KEYS)}"
        )
    for key in TASK_KEYS[task]:
        if key not in values:
            raise MetadataError(f"{name}: metadata key '{PREFIX}{key}' is missing ({task})")
    return values
