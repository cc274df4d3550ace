"""What travels inside an exported ONNX file (``metadata_props``): everything a runtime needs.

Every value is stored as JSON text under a key prefixed ``autotimm.``, so that a runtime with
no torch (``autotimm_runtime``) knows the task, the label names, the input size, how images are
resized and the thresholds, without the training code.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

#: Key prefix of AutoTimm's metadata entries.
PREFIX = "autotimm."
#: Version of the metadata layout; a runtime refuses files with a newer one.
FORMAT_VERSION = 1
#: Keys every AutoTimm export carries, whatever the task.
COMMON_KEYS = (
    "format_version",
    "version",
    "task",
    "input_name",
    "output_names",
    "input_size",
    "resize_mode",
    "interpolation",
    "crop_pct",
    "fill",
    "mean",
    "std",
)


def encode_metadata(values: Mapping[str, Any]) -> dict[str, str]:
    """``{"autotimm.<key>": json}`` for ONNX's string-valued ``metadata_props``.

    Raises:
        TypeError: a value JSON cannot hold (the key is named).
    """
    out: dict[str, str] = {}
    for key, value in values.items():
        try:
            out[PREFIX + key] = json.dumps(value)
        except TypeError as err:
            raise TypeError(f"export metadata {key!r} is not JSON data: {err}") from err
    return out


def decode_metadata(props: Mapping[str, str]) -> dict[str, Any]:
    """The inverse of :func:`encode_metadata`; entries without the prefix are left out."""
    return {k[len(PREFIX) :]: json.loads(v) for k, v in props.items() if k.startswith(PREFIX)}


def data_config_metadata(config: Any, image_size: int, fill: int | None = None) -> dict[str, Any]:
    """The preprocessing entries of a :class:`~autotimm_core.data.DataConfig` at ``image_size``.

    Args:
        config: the model's DataConfig.
        image_size: the exported input side (the config's unless export was told another).
        fill: the letterbox padding value (letterbox only). Default None.
    """
    return {
        "input_size": [int(image_size), int(image_size)],
        "resize_mode": config.resize_mode,
        "interpolation": config.interpolation,
        "crop_pct": float(config.crop_pct),
        "fill": fill,
        "mean": list(config.mean),
        "std": list(config.std),
    }
