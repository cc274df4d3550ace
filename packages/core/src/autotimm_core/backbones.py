"""Backbones: every timm model, by name."""

from __future__ import annotations

from typing import Any

import timm
import torch.nn as nn

from autotimm_core.registry import unknown_name_error

#: Prefixes that make timm load a model from outside its registry; such names are passed through.
_SOURCE_PREFIXES = ("hf-hub:", "hf_hub:", "local-dir:")


def list_backbones(pattern: str = "*", pretrained_only: bool = False) -> list[str]:
    """Names of timm models matching a wildcard ``pattern`` (default ``"*"``: all).

    Args:
        pattern: fnmatch-style filter, e.g. ``"*resnet*"`` or ``"convnext*"``.
        pretrained_only: only models with pretrained weights (names then carry their tag,
            e.g. ``"resnet50.a1_in1k"``). Default False.
    """
    return timm.list_models(pattern, pretrained=pretrained_only)


def check_backbone_name(name: str) -> None:
    """Raise ValueError for a name timm does not know, listing up to five close matches.

    timm's own registry (``timm.is_model`` / ``timm.list_models``) is the source of names; the
    error has the shape of every AutoTimm registry's (``autotimm_core.registry``). Names with a
    source prefix (``hf-hub:``, ``local-dir:``) are passed to timm unchecked.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"backbone must be a timm model name (a non-empty string), got {name!r}")
    if name.startswith(_SOURCE_PREFIXES) or timm.is_model(name):
        return
    raise unknown_name_error(
        "backbone",
        name,
        timm.list_models(),
        None,  # the hint below says how to search them
        hint="Use autotimm.list_backbones('*pattern*') to search the timm model names, or prefix "
        "'hf-hub:' to load from the Hugging Face Hub.",
    )


def create_backbone(
    name: str,
    pretrained: bool = False,
    features_only: bool = False,
    out_indices: tuple[int, ...] | list[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Create a timm model by name.

    Args:
        name: any timm model name (``list_backbones()``), optionally ``"arch.tag"`` or
            ``"hf-hub:org/repo"``.
        pretrained: load pretrained weights (needs network or a local cache). Default False.
        features_only: return a feature extractor giving a list of feature maps. Default False.
        out_indices: which feature levels to return with ``features_only`` (timm's default: all).
        **kwargs: passed to ``timm.create_model`` (``num_classes``, ``drop_rate``, ``img_size``...);
            ``None`` values are dropped so that they mean "the model's own default".

    Raises:
        ValueError: the name is unknown; the message lists up to five close matches.
    """
    check_backbone_name(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if features_only:
        kwargs["features_only"] = True
        if out_indices is not None:
            kwargs["out_indices"] = tuple(out_indices)
    return timm.create_model(name, pretrained=pretrained, **kwargs)


def backbone_data_config(model: nn.Module) -> dict[str, Any]:
    """Input size, mean, std, interpolation and crop_pct a timm model expects (its pretrained cfg)."""
    return timm.data.resolve_model_data_config(model)
