"""Export a task to ONNX (or ``torch.export``'s ``.pt2``), with its metadata and a parity check.

The task supplies the graph and what to record (the hooks of
:class:`~autotimm_core.BaseTask`: ``export_module``, ``export_output_names``,
``export_metadata``, ``export_reference``, ``compare_export_outputs``); everything else, the
exporter call, the dynamic batch, the metadata and the check against onnxruntime, is here.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from autotimm_core._imports import distribution_version, require
from autotimm_core.export.metadata import FORMAT_VERSION, encode_metadata
from autotimm_core.export.nms import ONNX_TRANSLATIONS

#: The graph input's name.
INPUT_NAME = "images"
#: Formats by file suffix.
FORMATS = {".onnx": "onnx", ".pt2": "pt2"}
_EXTRA = "autotimm-core[export]"


def _require_onnx() -> tuple[Any, Any]:
    onnx = require("onnx", _EXTRA, purpose="ONNX export")
    require("onnxscript", _EXTRA, purpose="ONNX export (torch.onnx's exporter)")
    ort = require("onnxruntime", _EXTRA, purpose="the ONNX parity check")
    return onnx, ort


def sample_images(image_size: int, batch_size: int = 2, seed: int = 0) -> Tensor:
    """Seeded random uint8 images ``(batch_size, 3, image_size, image_size)`` for tracing and checks."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch_size, 3, image_size, image_size), generator=gen).to(
        torch.uint8
    )


def _check_example(example: Any, image_size: int | None) -> Tensor:
    if not isinstance(example, Tensor) or example.dtype != torch.uint8 or example.ndim != 4:
        what = (
            f"{example.dtype} tensor of shape {tuple(example.shape)}"
            if isinstance(example, Tensor)
            else type(example).__name__
        )
        raise ValueError(
            "example_input must be a uint8 tensor (B, 3, H, W) of square images (the exported "
            f"graph normalizes inside), got a {what}"
        )
    if example.shape[1] != 3 or example.shape[2] != example.shape[3]:
        raise ValueError(f"example_input must be (B, 3, S, S), got {tuple(example.shape)}")
    if image_size is not None and example.shape[-1] != image_size:
        raise ValueError(
            f"example_input is {example.shape[-1]} px but image_size={image_size}: give one"
        )
    return example.cpu()


def _metadata(task: Any, image_size: int, output_names: Sequence[str]) -> dict[str, Any]:
    values = {
        "format_version": FORMAT_VERSION,
        "version": distribution_version("autotimm-core"),
        "input_name": INPUT_NAME,
        "output_names": list(output_names),
    }
    values.update(task.export_metadata(image_size))
    return values


def load_onnx(path: str | os.PathLike, providers: Sequence[str] | None = None) -> Any:
    """An onnxruntime ``InferenceSession`` of an exported file.

    Args:
        path: the ``.onnx`` file.
        providers: onnxruntime execution providers, in order of preference. Default None:
            ``["CPUExecutionProvider"]``.

    Raises:
        FileNotFoundError: no such file (named).
    """
    _, ort = _require_onnx()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"ONNX file not found: {os.fspath(path)}")
    return ort.InferenceSession(
        os.fspath(path), providers=list(providers or ["CPUExecutionProvider"])
    )


def run_onnx(session: Any, images: Tensor | np.ndarray) -> dict[str, np.ndarray]:
    """Run a session on uint8 images; the outputs by name."""
    array = images.cpu().numpy() if isinstance(images, Tensor) else np.asarray(images)
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, {session.get_inputs()[0].name: array})))


def validate_onnx_export(
    model: Any,
    onnx_path: str | os.PathLike,
    example_input: Tensor,
    rtol: float | None = None,
    atol: float | None = None,
) -> bool:
    """Run the exported file in onnxruntime and compare it with the PyTorch model.

    Args:
        model: the task the file was exported from.
        onnx_path: the ``.onnx`` file.
        example_input: uint8 images ``(B, 3, S, S)`` at the exported size.
        rtol: relative tolerance. Default None: the task's (0 for classifier probabilities).
        atol: absolute tolerance. Default None: the task's (1e-4 for probabilities and scores;
            detector boxes 1e-2 px).

    Returns:
        True (a mismatch raises).

    Raises:
        ExportParityError: an output differs; the message names it and the largest difference.
    """
    images = _check_example(example_input, None)
    session = load_onnx(onnx_path)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            reference = model.export_reference(images)
        exported = run_onnx(session, images)
        tolerances = {k: v for k, v in (("rtol", rtol), ("atol", atol)) if v is not None}
        model.compare_export_outputs(reference, exported, **tolerances)
    finally:
        model.train(was_training)
    return True


def export_model(
    task: Any,
    path: str | os.PathLike,
    image_size: int | None = None,
    batch_size: int | None = None,
    opset: int | None = None,
    check: bool = True,
    example_input: Tensor | None = None,
) -> Path:
    """What :meth:`BaseTask.export` does (see there for the arguments)."""
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        if path.suffix.lower() in (".pt", ".ts"):
            raise ValueError(
                f"cannot export {path.name!r}: TorchScript is deprecated in torch "
                f"{torch.__version__.split('+')[0]} (torch.jit.trace/script warn to switch to "
                "torch.export), so AutoTimm does not write it; use '.pt2' (torch.export) or "
                "'.onnx'"
            )
        raise ValueError(
            f"cannot export {path.name!r}: unknown format {path.suffix!r}; valid suffixes are "
            f"{sorted(FORMATS)}"
        )
    for name, value in (("image_size", image_size), ("batch_size", batch_size)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value < 1
        ):
            raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    if example_input is not None:
        example = _check_example(example_input, image_size)
        size = int(example.shape[-1])
        if batch_size is not None and example.shape[0] != batch_size:
            raise ValueError(
                f"example_input has batch {example.shape[0]} but batch_size={batch_size}"
            )
    else:
        size = int(image_size or task.image_size)
        # Two images: a batch of 1 would let the tracer specialize the batch dimension.
        example = sample_images(size, batch_size or 2)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = task.training
    device = task.device
    task.eval()
    try:
        module = task.export_module(size).cpu().eval()
        names = list(task.export_output_names())
        metadata = _metadata(task, size, names)
        dynamic = None if batch_size is not None else ({0: torch.export.Dim("batch")},)
        if fmt == "onnx":
            _export_onnx(module, example, path, names, metadata, opset, dynamic)
        else:
            _export_pt2(module, example, path, metadata, dynamic)
        if check:
            task.cpu()
            if fmt == "onnx":
                validate_onnx_export(task, path, example)
            else:
                program = torch.export.load(str(path)).module()
                with torch.no_grad():
                    reference = task.export_reference(example)
                    outputs = program(example)
                task.compare_export_outputs(
                    reference, {n: o.numpy() for n, o in zip(names, outputs)}
                )
    finally:
        task.to(device)
        task.train(was_training)
    return path


def _export_onnx(
    module: torch.nn.Module,
    example: Tensor,
    path: Path,
    names: list[str],
    metadata: dict[str, Any],
    opset: int | None,
    dynamic: tuple | None,
) -> None:
    onnx, _ = _require_onnx()
    with warnings.catch_warnings(), torch.no_grad():
        # The exporter's own progress lines and notes are not the user's concern.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=names,
            opset_version=opset,
            dynamic_shapes=dynamic,
            custom_translation_table=ONNX_TRANSLATIONS,
            external_data=False,
            verbose=False,
        )
    model = onnx.load(str(path))
    del model.metadata_props[:]
    for key, value in encode_metadata(metadata).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    model.producer_name = "autotimm"
    onnx.save(model, str(path))


def _export_pt2(
    module: torch.nn.Module,
    example: Tensor,
    path: Path,
    metadata: dict[str, Any],
    dynamic: tuple | None,
) -> None:
    with torch.no_grad():
        program = torch.export.export(module, (example,), dynamic_shapes=dynamic)
    # The metadata travels as one JSON file inside the archive (torch.export.load(...,
    # extra_files={"autotimm.json": ""}) reads it back).
    torch.export.save(program, str(path), extra_files={"autotimm.json": json.dumps(metadata)})


def export_to_onnx(
    model: Any,
    save_path: str | os.PathLike,
    example_input: Tensor | None = None,
    opset_version: int | None = None,
    dynamic_batch: bool = True,
    check: bool = True,
) -> Path:
    """Export a task to ONNX: upstream AutoTimm's name for :meth:`BaseTask.export`.

    Unlike upstream, the graph is the whole pipeline: it takes uint8 images, normalizes inside
    and returns final outputs (probabilities; detections after NMS).

    Args:
        model: an AutoTimm task (ImageClassifier, ObjectDetector...).
        save_path: the ``.onnx`` file to write.
        example_input: uint8 images ``(B, 3, S, S)`` to trace and check with. Default None:
            random images at the model's input size.
        opset_version: ONNX opset. Default None: torch.onnx's default.
        dynamic_batch: any batch size at run time (False: the example's). Default True.
        check: compare onnxruntime with the PyTorch model. Default True.
    """
    batch = None
    if not dynamic_batch:
        batch = int(example_input.shape[0]) if example_input is not None else 1
    return export_model(
        model,
        save_path,
        batch_size=batch,
        opset=opset_version,
        check=check,
        example_input=example_input,
    )
