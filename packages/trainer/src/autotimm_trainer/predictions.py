"""Predictions written to disk: ``predictions.jsonl`` and, when asked, one drawn PNG per image.

:class:`PredictionWriter` is a Lightning ``BasePredictionWriter``: each process writes the
predictions of the samples it saw (``predictions.rank<R>.jsonl``), and once all have finished
the main process merges them, in dataset order, into ``predictions.jsonl`` (one JSON object per
input), so the same code serves one device and DDP.

What a line holds comes from the model, by duck typing (the trainer imports no task package):

- ``model.prediction_records(prediction) -> list[dict]``: the JSON-ready records of one batch's
  ``predict_step`` output, one per input. Without it the output is split generically: a dict
  of batched tensors gives one dict per row, a list gives its items, a tensor its rows; tensors
  become lists.
- ``model.draw_prediction(image, record) -> Tensor``: ``image`` is the input as a uint8
  ``(3, H, W)`` tensor (denormalized with ``model.data_config``'s mean and std when the batch
  holds normalized floats), the return value the drawn uint8 image. Needed for ``draw=True``.

Each line also gets ``"index"`` (the sample's position in the predict data set) and, when the
data set knows it (``dataset.samples[i][0]``, or ``dataset.files[i]``), ``"source"``: the file.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter

PREDICTIONS_FILE = "predictions.jsonl"
#: The optional model hooks this writer asks for.
RECORDS_HOOK = "prediction_records"
DRAW_HOOK = "draw_prediction"


def to_json(value: Any) -> Any:
    """Tensors and numpy values to lists and numbers, recursively."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().tolist()
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    return value


def split_batch(prediction: Any) -> list[Any]:
    """One record per input of a batch's ``predict_step`` output (see the module docs)."""
    if isinstance(prediction, Mapping):
        sizes = {len(v) for v in prediction.values() if isinstance(v, (torch.Tensor, list))}
        if len(sizes) != 1:
            raise ValueError(
                "predict_step returned a dict whose values do not share one batch size "
                f"({sorted(sizes)}); give the model a prediction_records(prediction) method "
                "that returns one record per input"
            )
        n = sizes.pop()
        return [{k: to_json(v[i]) for k, v in prediction.items()} for i in range(n)]
    if isinstance(prediction, torch.Tensor):
        return [{"prediction": to_json(row)} for row in prediction]
    if isinstance(prediction, Sequence) and not isinstance(prediction, str):
        return [
            to_json(p) if isinstance(p, Mapping) else {"prediction": to_json(p)} for p in prediction
        ]
    raise TypeError(
        f"cannot split a predict_step output of type {type(prediction).__name__} into records"
    )


def _source(dataset: Any, index: int) -> str | None:
    samples = getattr(dataset, "samples", None)
    if isinstance(samples, Sequence) and index < len(samples):
        item = samples[index]
        item = item[0] if isinstance(item, (tuple, list)) else item
        return str(item) if isinstance(item, (str, Path)) else None
    files = getattr(dataset, "files", None)
    if isinstance(files, Sequence) and index < len(files):
        return str(files[index])
    return None


def _images(batch: Any) -> torch.Tensor | None:
    images = batch[0] if isinstance(batch, (list, tuple)) else batch
    return images if isinstance(images, torch.Tensor) and images.dim() == 4 else None


def to_uint8(image: torch.Tensor, pl_module: pl.LightningModule) -> torch.Tensor:
    """A batch image as uint8 ``(3, H, W)``: normalized floats are mapped back with the model's
    ``data_config`` mean and std (floats in [0, 1] without one)."""
    if image.dtype == torch.uint8:
        return image.cpu()
    image = image.detach().float().cpu()
    cfg = getattr(pl_module, "data_config", None)
    mean, std = getattr(cfg, "mean", None), getattr(cfg, "std", None)
    if mean is not None and std is not None:
        image = image * torch.tensor(std).view(-1, 1, 1) + torch.tensor(mean).view(-1, 1, 1)
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


class PredictionWriter(BasePredictionWriter):
    """Write ``predictions.jsonl`` (and with ``draw``, ``<index>_<file name>.png`` per input)
    into ``output_dir``.

    Args:
        output_dir: folder for the files (created). Required.
        draw: also save each input drawn by the model's ``draw_prediction`` hook. Default False.
    """

    def __init__(self, output_dir: str | Path, draw: bool = False) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.draw = draw
        #: The merged file, once written.
        self.path: Path | None = None

    def _part(self, rank: int) -> Path:
        return self.output_dir / f"predictions.rank{rank}.jsonl"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "predict":
            return
        if self.draw and not callable(getattr(pl_module, DRAW_HOOK, None)):
            raise ValueError(
                f"draw=True needs {type(pl_module).__name__}.{DRAW_HOOK}(image, record); "
                "this model has none (predictions.jsonl is written without draw)"
            )
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self._part(trainer.global_rank).write_text("")

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if prediction is None:
            return
        hook = getattr(pl_module, RECORDS_HOOK, None)
        records = list(hook(prediction)) if callable(hook) else split_batch(prediction)
        indices = list(batch_indices) if batch_indices else [None] * len(records)
        loaders = trainer.predict_dataloaders
        loader = loaders[dataloader_idx] if isinstance(loaders, Sequence) else loaders
        dataset = getattr(loader, "dataset", None)
        images = _images(batch) if self.draw else None
        lines = []
        for pos, (index, record) in enumerate(zip(indices, records)):
            line: dict[str, Any] = {"index": index}
            source = _source(dataset, index) if index is not None else None
            if source is not None:
                line["source"] = source
            line.update(to_json(record))
            lines.append(json.dumps(line))
            if images is not None:
                drawn = getattr(pl_module, DRAW_HOOK)(to_uint8(images[pos], pl_module), record)
                stem = Path(source).stem if source else "image"
                _save_png(
                    drawn, self.output_dir / f"{index if index is not None else pos}_{stem}.png"
                )
        with open(self._part(trainer.global_rank), "a") as fh:
            fh.writelines(line + "\n" for line in lines)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.strategy.barrier()  # every rank's part is complete
        if trainer.is_global_zero:
            parts = sorted(self.output_dir.glob("predictions.rank*.jsonl"))
            lines = [json.loads(x) for p in parts for x in p.read_text().splitlines() if x]
            # A DistributedSampler pads by repeating samples: each index once, in order.
            unique = (
                {line["index"]: line for line in lines}
                if all(line["index"] is not None for line in lines)
                else dict(enumerate(lines))
            )
            self.path = self.output_dir / PREDICTIONS_FILE
            with open(self.path, "w") as fh:
                fh.writelines(json.dumps(unique[k]) + "\n" for k in sorted(unique))
            for p in parts:
                p.unlink()
        trainer.strategy.barrier()


def _save_png(image: torch.Tensor, path: Path) -> None:
    from torchvision.io import write_png

    write_png(image.to(torch.uint8).cpu().contiguous(), str(path))
