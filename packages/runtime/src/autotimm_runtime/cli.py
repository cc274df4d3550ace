"""``autotimm-predict MODEL.onnx IMAGES... --output out.jsonl [--draw DIR]``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from autotimm_runtime.images import read_image
from autotimm_runtime.predictor import load


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def draw_detections(image: np.ndarray, result: dict[str, Any]) -> Image.Image:
    """The image with its detections drawn (boxes and ``name score`` labels), with Pillow."""
    canvas = Image.fromarray(image)
    pen = ImageDraw.Draw(canvas)
    for box, score, name in zip(result["boxes"], result["scores"], result["label_names"]):
        x0, y0, x1, y1 = (float(v) for v in box)
        pen.rectangle([x0, y0, x1, y1], outline=(255, 40, 40), width=2)
        pen.text((x0 + 2, y0 + 1), f"{name} {float(score):.2f}", fill=(255, 255, 0))
    return canvas


def main(argv: Sequence[str] | None = None) -> int:
    """Predict on image files with an exported model; one JSON line per image."""
    parser = argparse.ArgumentParser(
        prog="autotimm-predict", description="Run an AutoTimm ONNX export on images."
    )
    parser.add_argument("model", help="the .onnx file (model.export / autotimm export)")
    parser.add_argument("images", nargs="+", help="image files")
    parser.add_argument("--output", help="JSON Lines file to write (default: standard output)")
    parser.add_argument("--draw", help="folder to write images with their detections drawn")
    parser.add_argument("--batch-size", type=int, default=1, help="images per run (default 1)")
    parser.add_argument("--top-k", type=int, default=5, help="labels per image (classification)")
    args = parser.parse_args(argv)
    predictor = load(args.model)
    if args.draw and predictor.task != "detection":
        parser.error(f"--draw draws detections; {args.model} is a {predictor.task} model")
    if predictor.task == "classification":
        results = predictor.predict(args.images, batch_size=args.batch_size, top_k=args.top_k)
    else:
        results = predictor.predict(args.images, batch_size=args.batch_size)
    lines = [
        json.dumps({"image": p, "prediction": _plain(r)}) for p, r in zip(args.images, results)
    ]
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text("".join(line + "\n" for line in lines))
    else:
        sys.stdout.write("".join(line + "\n" for line in lines))
    if args.draw:
        folder = Path(args.draw)
        folder.mkdir(parents=True, exist_ok=True)
        for path, result in zip(args.images, results):
            out = folder / (Path(path).stem + ".png")
            draw_detections(read_image(path), result).save(out)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main(sys.argv[1:]))
