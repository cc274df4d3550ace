"""Drawing detections onto an image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchvision.io import write_png
from torchvision.utils import draw_bounding_boxes

from autotimm_core.data import ImageInput, read_image


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
    img = read_image(image)
    scores = torch.as_tensor(prediction["scores"]).float()
    keep = scores >= min_score
    boxes = torch.as_tensor(prediction["boxes"]).float().reshape(-1, 4)[keep]
    names = prediction.get("label_names") or [str(int(v)) for v in prediction["labels"]]
    captions = [f"{n} {s:.2f}" for n, s, k in zip(names, scores.tolist(), keep.tolist()) if k]
    if len(boxes):
        img = draw_bounding_boxes(img, boxes, labels=captions, width=width)
    path = Path(output_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_png(img, str(path))
    return path
