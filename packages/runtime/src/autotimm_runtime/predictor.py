"""Predictors: an exported AutoTimm model with onnxruntime, giving what ``model.predict`` gives."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from autotimm_runtime.images import ImageInput, letterbox, read_image, resize_crop
from autotimm_runtime.metadata import MetadataError, read_metadata


class Predictor:
    """An onnxruntime session of an AutoTimm export and its metadata (use :func:`load`).

    Attributes:
        path: the model file.
        metadata: the decoded ``autotimm.*`` metadata (task, class names, input size...).
        session: the onnxruntime ``InferenceSession``.
    """

    def __init__(self, session: Any, metadata: dict[str, Any], path: str) -> None:
        self.session, self.metadata, self.path = session, metadata, path
        self.image_size = int(metadata["input_size"][-1])
        self.class_names = [str(n) for n in metadata["class_names"]]
        self._input = metadata["input_name"]
        self._outputs = list(metadata["output_names"])
        fixed = session.get_inputs()[0].shape[0]
        self._fixed_batch = fixed if isinstance(fixed, int) else None

    @property
    def task(self) -> str:
        """``"classification"`` or ``"detection"``."""
        return self.metadata["task"]

    def _run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if self._fixed_batch is not None and batch.shape[0] != self._fixed_batch:
            # A file exported with a fixed batch size: run it image group by image group.
            parts = [
                self._run_exact(batch[i : i + self._fixed_batch])
                for i in range(0, batch.shape[0], self._fixed_batch)
            ]
            return {k: np.concatenate([p[k] for p in parts]) for k in self._outputs}
        return self._run_exact(batch)

    def _run_exact(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        n = batch.shape[0]
        if self._fixed_batch is not None and n < self._fixed_batch:
            pad = np.zeros((self._fixed_batch - n, *batch.shape[1:]), batch.dtype)
            out = self.session.run(self._outputs, {self._input: np.concatenate([batch, pad])})
            return {k: v[:n] for k, v in zip(self._outputs, out)}
        return dict(zip(self._outputs, self.session.run(self._outputs, {self._input: batch})))

    def _batches(self, images: Any, batch_size: int) -> tuple[list[Any], int]:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        items = list(images) if isinstance(images, (list, tuple)) else [images]
        return items, batch_size

    def predict(self, images: ImageInput | Sequence[ImageInput], batch_size: int = 1) -> list:
        raise NotImplementedError


class ClassificationPredictor(Predictor):
    """An exported ImageClassifier: per image the top-k ``{"label", "index", "score"}``."""

    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        batch_size: int = 1,
        top_k: int = 5,
    ) -> list[list[dict[str, Any]]]:
        """Top-k labels with their probabilities, as ``ImageClassifier.predict``.

        Args:
            images: one image or a list: file paths, PIL images or uint8 ``(H, W, C)`` arrays.
            batch_size: images per onnxruntime call. Default 1.
            top_k: labels per image, highest first (capped at the number of classes). Default 5.

        Returns:
            One list per image of ``{"label": name, "index": class index, "score": probability}``.
        """
        items, batch_size = self._batches(images, batch_size)
        meta = self.metadata
        k = max(1, min(int(top_k), len(self.class_names)))
        results: list[list[dict[str, Any]]] = []
        for start in range(0, len(items), batch_size):
            arrays = [
                resize_crop(
                    read_image(x), self.image_size, float(meta["crop_pct"]), meta["interpolation"]
                )
                for x in items[start : start + batch_size]
            ]
            batch = np.stack(arrays).transpose(0, 3, 1, 2).copy()
            probs = self._run(batch)["probabilities"]
            # Stable descending order: ties keep the lower index first, as torch.topk does.
            order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
            for row, idx in zip(probs, order):
                results.append(
                    [
                        {"label": self.class_names[i], "index": int(i), "score": float(row[i])}
                        for i in idx
                    ]
                )
        return results


class DetectionPredictor(Predictor):
    """An exported ObjectDetector: per image ``boxes``, ``scores``, ``labels``, ``label_names``."""

    def predict(
        self, images: ImageInput | Sequence[ImageInput], batch_size: int = 1
    ) -> list[dict[str, Any]]:
        """Detections as ``ObjectDetector.predict`` returns them, with numpy arrays.

        Args:
            images: one image or a list: file paths, PIL images or uint8 ``(H, W, C)`` arrays.
            batch_size: images per onnxruntime call. Default 1.

        Returns:
            Per image: ``boxes`` (n, 4) float32 xyxy in the original image's pixels, ``scores``
            (n,), ``labels`` (n,) int64 category ids and ``label_names``.
        """
        items, batch_size = self._batches(images, batch_size)
        meta = self.metadata
        category_ids = np.asarray(meta["category_ids"], dtype=np.int64)
        results: list[dict[str, Any]] = []
        for start in range(0, len(items), batch_size):
            arrays, scales, sizes = [], [], []
            for x in items[start : start + batch_size]:
                image = read_image(x)
                boxed, scale = letterbox(
                    image, self.image_size, meta["interpolation"], int(meta["fill"])
                )
                arrays.append(boxed)
                scales.append(scale)
                sizes.append(image.shape[:2])
            out = self._run(np.stack(arrays).transpose(0, 3, 1, 2).copy())
            for i, ((sx, sy), (h, w)) in enumerate(zip(scales, sizes)):
                n = int(out["num_detections"][i])
                boxes = out["boxes"][i, :n].astype(np.float32)
                # Back to the original image (float32, as the PyTorch rescale), clipped to it.
                boxes = boxes / np.asarray([sx, sy, sx, sy], dtype=np.float32)
                boxes[:, 0::2] = boxes[:, 0::2].clip(0, w)
                boxes[:, 1::2] = boxes[:, 1::2].clip(0, h)
                labels = out["labels"][i, :n].astype(np.int64)
                results.append(
                    {
                        "boxes": boxes,
                        "scores": out["scores"][i, :n].astype(np.float32),
                        "labels": category_ids[labels],
                        "label_names": [self.class_names[j] for j in labels],
                    }
                )
        return results


_PREDICTORS = {"classification": ClassificationPredictor, "detection": DetectionPredictor}


def load(
    path: str | os.PathLike,
    providers: Sequence[str] | None = None,
    session_options: Any | None = None,
) -> Predictor:
    """Load an AutoTimm ONNX export as a predictor of its task.

    Args:
        path: the ``.onnx`` file written by ``model.export`` or ``autotimm export``.
        providers: onnxruntime execution providers, in order of preference. Default None:
            ``["CPUExecutionProvider"]``.
        session_options: an ``onnxruntime.SessionOptions`` (threads, graph optimization level).
            Default None: onnxruntime's defaults (one thread per physical core).

    Raises:
        FileNotFoundError: no such file (named).
        MetadataError: not an AutoTimm export, or a metadata key is missing (file and key named).
    """
    import onnxruntime as ort

    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"model file not found: {name}")
    try:
        session = ort.InferenceSession(
            name,
            sess_options=session_options,
            providers=list(providers or ["CPUExecutionProvider"]),
        )
    except Exception as err:  # onnxruntime raises its own exception types
        raise MetadataError(f"{name} is not an ONNX model onnxruntime can load: {err}") from err
    metadata = read_metadata(session.get_modelmeta().custom_metadata_map, name)
    return _PREDICTORS[metadata["task"]](session, metadata, name)
