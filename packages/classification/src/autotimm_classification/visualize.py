"""Drawing classification results onto an image: the top-k labels and their scores."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from torchvision.io import write_png
from torchvision.transforms.v2 import functional as TF

from autotimm_core.data import ImageInput, read_image

#: Drawn images are enlarged to at least this side, so that the captions stay legible on
#: small inputs (the 32 px of the built-in sets).
MIN_SIDE = 256


def render_classification(image: torch.Tensor, labels: list[dict[str, Any]]) -> torch.Tensor:
    """``image`` (uint8 ``(3, H, W)``) with one ``name score`` line per entry of ``labels``
    (``[{"label": ..., "score": ...}, ...]``, one image's ``ImageClassifier.predict`` result),
    highest first, on a dark band at the top; returns a new uint8 ``(3, H', W')`` tensor.

    Small images are enlarged (nearest neighbour, so pixels stay visible) to at least
    ``MIN_SIDE`` pixels on their short side.
    """
    h, w = image.shape[-2:]
    if min(h, w) < MIN_SIDE:
        scale = MIN_SIDE / min(h, w)
        size = [round(h * scale), round(w * scale)]
        image = TF.resize(image, size, interpolation=TF.InterpolationMode.NEAREST)
    # torchvision draws boxes but no free text: Pillow (torchvision's own image library) does.
    pil = Image.fromarray(image.permute(1, 2, 0).cpu().numpy())
    draw = ImageDraw.Draw(pil, "RGBA")
    lines = [f"{d['label']} {float(d['score']):.2f}" for d in labels]
    line_height = 14
    if lines:
        draw.rectangle([0, 0, pil.width, 4 + line_height * len(lines)], fill=(0, 0, 0, 160))
    for i, text in enumerate(lines):
        colour = (255, 255, 0) if i == 0 else (255, 255, 255)
        draw.text((4, 2 + line_height * i), text, fill=colour)
    return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).contiguous()


def draw_classification(
    image: ImageInput,
    prediction: list[dict[str, Any]],
    output_path: str | Path = "classification.png",
) -> Path:
    """Save ``image`` with the labels and scores of one ``ImageClassifier.predict`` result as PNG.

    Args:
        image: what was passed to ``predict`` (path, PIL image, array or tensor; anything
            ``autotimm_core.data.read_image`` reads).
        prediction: one image's result of ``ImageClassifier.predict`` (the top-k list).
        output_path: PNG file to write (folders are created). Default ``"classification.png"``.

    Returns:
        The path written.
    """
    drawn = render_classification(read_image(image), prediction)
    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(drawn, str(path))
    return path
