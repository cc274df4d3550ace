"""Drawing a predicted (or true) class map onto its image."""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.io import write_png
from torchvision.utils import draw_segmentation_masks

from autotimm_core.data import ImageInput, read_image


def class_colours(num_classes: int) -> list[tuple[int, int, int]]:
    """``num_classes`` distinct RGB colours; class ``i`` gets the same one whatever the count
    (hues stepped by the golden ratio, alternating brightness)."""
    colours = []
    for i in range(num_classes):
        hue = (i * 0.618033988749895) % 1.0
        r, g, b = colorsys.hsv_to_rgb(hue, 0.8, 1.0 if i % 2 == 0 else 0.7)
        colours.append((round(r * 255), round(g * 255), round(b * 255)))
    return colours


def draw_segmentation(
    image: ImageInput,
    prediction: dict[str, Any] | torch.Tensor,
    output_path: str | Path = "segmentation.png",
    alpha: float = 0.5,
    colours: Sequence[tuple[int, int, int]] | None = None,
    ignore_index: int | None = 255,
) -> Path:
    """Save ``image`` with the class map of one ``predict()`` result blended over it as PNG.

    Args:
        image: what was passed to ``predict`` (path, PIL image, array or tensor; anything
            ``autotimm_core.data.read_image`` reads).
        prediction: one result of ``SemanticSegmentor.predict`` (its ``"mask"`` is drawn), or a
            class map ``(H, W)`` itself (a ground-truth mask, say); resized to the image with
            nearest-neighbour when its size differs.
        output_path: PNG file to write (folders are created). Default ``"segmentation.png"``.
        alpha: opacity of the colours. Default 0.5.
        colours: one RGB colour per class. Default: :func:`class_colours`.
        ignore_index: a value left undrawn. Default 255.

    Returns:
        The path written.

    Raises:
        ValueError: ``alpha`` outside [0, 1], or a class map that is not 2-D.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    img = read_image(image)
    mask = prediction["mask"] if isinstance(prediction, dict) else prediction
    mask = torch.as_tensor(mask).long().cpu()
    if mask.ndim != 2:
        raise ValueError(f"the class map must be (H, W), got shape {tuple(mask.shape)}")
    if mask.shape != img.shape[-2:]:
        mask = F.interpolate(mask[None, None].float(), size=img.shape[-2:], mode="nearest")
        mask = mask[0, 0].long()
    present = [int(c) for c in mask.unique().tolist() if c != ignore_index and c >= 0]
    n = max(present, default=-1) + 1
    palette = list(colours) if colours is not None else class_colours(max(n, 1))
    if present:
        if n > len(palette):
            raise ValueError(f"colours has {len(palette)} entries but the map holds class {n - 1}")
        masks = torch.stack([mask == c for c in present])
        img = draw_segmentation_masks(
            img, masks, alpha=alpha, colors=[tuple(palette[c]) for c in present]
        )
    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(img, str(path))
    return path
