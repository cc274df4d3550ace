"""Drawing detections onto an image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.io import write_png
from torchvision.utils import draw_bounding_boxes

from autotimm_core.data import ImageInput, read_image

#: Box colours by class index: matplotlib's "tab10", bright on dark and light images.
PALETTE = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
]  # fmt: skip


def draw_detections(
    image: ImageInput,
    prediction: dict[str, Any],
    output_path: str | Path = "detections.png",
    min_score: float = 0.0,
    width: int = 2,
) -> Path:
    """Save ``image`` with the boxes and ``name score`` captions of one ``predict()`` result as PNG.

    Args:
        image: what was passed to ``predict`` (path, PIL image, array or tensor; anything
            ``autotimm_core.data.read_image`` reads).
        prediction: one result of ``ObjectDetector.predict``.
        output_path: PNG file to write (folders are created). Default ``"detections.png"``.
        min_score: draw only detections scoring at least this. Default 0.0.
        width: box line width. Default 2.

    Returns:
        The path written.
    """
    drawn = render_detections(read_image(image), prediction, min_score=min_score, width=width)
    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(drawn, str(path))
    return path


def render_detections(
    image: torch.Tensor, prediction: dict[str, Any], min_score: float = 0.0, width: int = 2
) -> torch.Tensor:
    """``image`` (uint8 ``(3, H, W)``) with the boxes and ``name score`` captions of one
    prediction (``boxes``, ``scores``, ``labels``, optional ``label_names``) drawn on it; boxes
    are in the image's pixel coordinates. Returns a new uint8 tensor."""
    scores = torch.as_tensor(prediction["scores"]).float().reshape(-1)
    keep = scores >= min_score
    boxes = torch.as_tensor(prediction["boxes"]).float().reshape(-1, 4)[keep]
    names = prediction.get("label_names") or [
        str(int(v)) for v in torch.as_tensor(prediction["labels"]).reshape(-1)
    ]
    captions = [f"{n} {s:.2f}" for n, s, k in zip(names, scores.tolist(), keep.tolist()) if k]
    if not len(boxes):
        return image.clone()
    # One colour per class (torchvision's default palette starts with black: invisible on a
    # dark image).
    labels = torch.as_tensor(prediction["labels"]).reshape(-1)[keep].tolist()
    colors = [PALETTE[int(v) % len(PALETTE)] for v in labels]
    return draw_bounding_boxes(image, boxes, labels=captions, colors=colors, width=width)
