"""The data contract: how a model wants its images, declared once and shared with the data.

A task builds its :class:`DataConfig` when it is constructed (``model.data_config``), from its
own arguments and its backbone's pretrained configuration, the way timm's
``resolve_data_config`` does. A data module resolves one from its own arguments. When a fit
starts the two are merged once (:func:`merge_data_configs`): a value set on one side wins, a
value set differently on both sides is an error naming both. ``predict`` and export use the
model's config, so inference prepares images exactly as training did.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch.nn as nn
from timm.data import DEFAULT_CROP_PCT, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from autotimm_core.backbones import backbone_data_config
from autotimm_core.validation import check_choice

#: Resize interpolations the transforms of both backends implement.
INTERPOLATIONS = ("nearest", "bilinear", "bicubic")
#: ``"crop"``: resize the short side to ``image_size / crop_pct`` and center-crop (classification);
#: ``"letterbox"``: resize the long side to ``image_size`` and pad to a square (detection).
RESIZE_MODES = ("crop", "letterbox")
#: Input side when neither the user nor the backbone's pretrained config gives one.
DEFAULT_IMAGE_SIZE = 224
#: The fields a user can set, in the order messages list them.
FIELDS = ("image_size", "mean", "std", "interpolation", "resize_mode", "crop_pct")


def interpolation_name(name: str | None) -> str:
    """timm's interpolation name as one the transforms implement.

    ``nearest``, ``bilinear`` and ``bicubic`` are kept; timm's other names (``random``,
    ``lanczos``, ``box``, ``hamming``...) become ``bicubic``, timm's own default; None too.
    """
    return name if name in INTERPOLATIONS else "bicubic"


def _triple(param: str, value: Sequence[float]) -> tuple[float, float, float]:
    try:
        values = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3:
        raise ValueError(f"{param} needs 3 numbers (R, G, B), got {value!r}")
    return values  # type: ignore[return-value]


@dataclass(frozen=True)
class DataConfig:
    """How images are prepared for a model.

    Args:
        image_size: side of the square network input. Default 224.
        mean: per-channel mean on the 0-1 scale (RGB). Default ImageNet's (``timm.data``).
        std: per-channel standard deviation on the 0-1 scale. Default ImageNet's.
        interpolation: ``"nearest"``, ``"bilinear"`` or ``"bicubic"``. Default ``"bicubic"``.
        resize_mode: ``"crop"`` (short side to ``image_size / crop_pct``, center crop) or
            ``"letterbox"`` (long side to ``image_size``, padded bottom/right). Default ``"crop"``.
        crop_pct: share of the resized image the evaluation center crop keeps. Default 0.875.
        explicit: the fields the user set (the others came from the backbone or a default);
            they win in :func:`merge_data_configs`. Default none.

    Raises:
        ValueError: a field out of range or not one of its choices; the message names it.
    """

    image_size: int = DEFAULT_IMAGE_SIZE
    mean: tuple[float, float, float] = tuple(IMAGENET_DEFAULT_MEAN)
    std: tuple[float, float, float] = tuple(IMAGENET_DEFAULT_STD)
    interpolation: str = "bicubic"
    resize_mode: str = "crop"
    crop_pct: float = DEFAULT_CROP_PCT
    explicit: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        if (
            isinstance(self.image_size, bool)
            or not isinstance(self.image_size, int)
            or self.image_size < 1
        ):
            raise ValueError(f"image_size must be a positive int, got {self.image_size!r}")
        object.__setattr__(self, "mean", _triple("mean", self.mean))
        object.__setattr__(self, "std", _triple("std", self.std))
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be > 0, got {self.std!r}")
        check_choice("interpolation", self.interpolation, INTERPOLATIONS)
        check_choice("resize_mode", self.resize_mode, RESIZE_MODES)
        if not (isinstance(self.crop_pct, (int, float)) and 0 < self.crop_pct <= 1):
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct!r}")
        object.__setattr__(self, "crop_pct", float(self.crop_pct))
        unknown = set(self.explicit) - set(FIELDS)
        if unknown:
            raise ValueError(f"DataConfig.explicit names unknown fields {sorted(unknown)}")
        object.__setattr__(self, "explicit", frozenset(self.explicit))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, no sets), as checkpoints and YAML store it."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        d["explicit"] = sorted(self.explicit)
        return d

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DataConfig:
        """The inverse of :meth:`to_dict`. Keys other than the fields are an error naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(
                f"data_config has unknown key(s) {unknown}; valid keys are {sorted(known)}"
            )
        values = dict(values)
        values["explicit"] = frozenset(values.get("explicit", ()))
        return cls(**values)

    def with_values(self, explicit: bool = True, **values: Any) -> DataConfig:
        """A copy with ``values`` set (None values are ignored), marked explicit unless told not."""
        values = {k: v for k, v in values.items() if v is not None}
        marked = self.explicit | set(values) if explicit else self.explicit
        return replace(self, **values, explicit=frozenset(marked))


def resolve_data_config(
    backbone: nn.Module | None = None,
    *,
    image_size: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    interpolation: str | None = None,
    crop_pct: float | None = None,
    resize_mode: str | None = None,
    overrides: DataConfig | Mapping[str, Any] | None = None,
    default_image_size: int | None = None,
    default_resize_mode: str = "crop",
    fixed_size: bool = False,
) -> DataConfig:
    """A DataConfig by timm's rule: explicit argument > the backbone's pretrained cfg > default.

    Args:
        backbone: a timm model whose pretrained config (``timm.data.resolve_model_data_config``)
            gives the input size, mean, std, interpolation and crop_pct it was trained with.
            Default None: timm's ImageNet defaults.
        image_size: explicit input side. Default None.
        mean: explicit mean. Default None.
        std: explicit standard deviation. Default None.
        interpolation: explicit interpolation (must be one of :data:`INTERPOLATIONS`). Default
            None: the backbone's, mapped by :func:`interpolation_name`.
        crop_pct: explicit crop fraction. Default None.
        resize_mode: explicit resize mode. Default None: ``default_resize_mode``.
        overrides: further explicit values as a DataConfig or a dict (e.g. from a checkpoint);
            the keyword arguments above win over them. Default None.
        default_image_size: the task's input side when none is given, used before the
            backbone's (detection's 640). Default None: the backbone's, else 224.
        default_resize_mode: the task's resize mode. Default ``"crop"``.
        fixed_size: the model is built for its input size (a ViT or Swin with ``img_size``), so
            the size counts as set: a data module with another size is an error, not a
            silent change. Default False.
    """
    given: dict[str, Any] = {}
    if isinstance(overrides, Mapping) and "explicit" in overrides:
        overrides = DataConfig.from_dict(overrides)  # the stored form: only what was set counts
    if overrides is not None:
        if isinstance(overrides, DataConfig):
            given.update({k: getattr(overrides, k) for k in overrides.explicit})
        else:
            given.update({k: v for k, v in dict(overrides).items() if k != "explicit"})
            unknown = sorted(set(given) - set(FIELDS))
            if unknown:
                raise ValueError(
                    f"data_config has unknown key(s) {unknown}; valid keys are {list(FIELDS)}"
                )
    args = {
        "image_size": image_size,
        "mean": mean,
        "std": std,
        "interpolation": interpolation,
        "crop_pct": crop_pct,
        "resize_mode": resize_mode,
    }
    given.update({k: v for k, v in args.items() if v is not None})
    given = {k: v for k, v in given.items() if v is not None}

    pretrained: dict[str, Any] = {}
    if backbone is not None:
        try:
            pretrained = backbone_data_config(backbone)
        except (AttributeError, KeyError, TypeError, AssertionError):
            pretrained = {}  # not a timm model: the defaults apply
    size = default_image_size
    if size is None and pretrained.get("input_size"):
        size = int(pretrained["input_size"][-1])
    resolved = DataConfig(
        image_size=int(size or DEFAULT_IMAGE_SIZE),
        mean=tuple(pretrained.get("mean") or IMAGENET_DEFAULT_MEAN),
        std=tuple(pretrained.get("std") or IMAGENET_DEFAULT_STD),
        interpolation=interpolation_name(pretrained.get("interpolation")),
        resize_mode=default_resize_mode,
        crop_pct=float(pretrained.get("crop_pct") or DEFAULT_CROP_PCT),
    )
    config = resolved.with_values(**given)
    if fixed_size:
        config = replace(config, explicit=config.explicit | {"image_size"})
    return config


def merge_data_configs(
    model: DataConfig,
    data: DataConfig,
    model_name: str = "the model",
    data_name: str = "the data module",
) -> DataConfig:
    """The one config a model and its data module share.

    Per field: set explicitly on one side only, that side's value; on neither, the model's (it
    knows its backbone); set on both with different values, a ValueError naming both.

    Args:
        model: the task's ``data_config``.
        data: the data module's ``data_config``.
        model_name: how messages name the model (its class). Default ``"the model"``.
        data_name: how messages name the data module (its class). Default ``"the data module"``.
    """
    values: dict[str, Any] = {}
    for name in FIELDS:
        mine, theirs = getattr(model, name), getattr(data, name)
        in_model, in_data = name in model.explicit, name in data.explicit
        if in_model and in_data and mine != theirs:
            raise ValueError(
                f"{model_name} has {name}={_show(mine)} but {data_name} has "
                f"{name}={_show(theirs)}: give both the same {name}, or set it on one of them "
                "only (the other then follows)."
            )
        values[name] = theirs if in_data and not in_model else mine
    return DataConfig(**values, explicit=model.explicit | data.explicit)


def _show(value: Any) -> str:
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def coerce_data_config(value: DataConfig | Mapping[str, Any] | None) -> DataConfig | None:
    """A DataConfig from itself, its dict form (:meth:`DataConfig.to_dict`), or None."""
    if value is None or isinstance(value, DataConfig):
        return value
    if isinstance(value, Mapping):
        return DataConfig.from_dict(value)
    raise TypeError(f"data_config must be a DataConfig, a dict or None, got {type(value).__name__}")
