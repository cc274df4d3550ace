"""DataContract: the one place where a task and its data module meet.

Neither module reads the other. A task declares ``data_config`` (how it wants images) and
``num_classes``; a data module declares ``data_config`` (from its own arguments) and, once set
up, its ``class_names`` (and, for detection, ``category_ids``). When a fit, validation, test or
prediction starts, this callback (which :class:`~autotimm_core.BaseTask` brings through
``configure_callbacks``, so a plain ``pytorch_lightning.Trainer`` runs it too) checks the two
against each other and gives both the merged data config, with errors naming both values.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from autotimm_core.data.config import FIELDS, DataConfig, merge_data_configs


class ClassCounts(NamedTuple):
    """How often each class occurs in a training split (a data module's ``class_counts()``).

    Attributes:
        per_class: samples of each class, by class index (for multi-label data: images that
            carry each label).
        samples: samples in the split (for multi-label data an image counts once).
    """

    per_class: list[int]
    samples: int


def _listing(names: list[Any], limit: int = 10) -> str:
    shown = ", ".join(map(str, names[:limit]))
    return shown + ("..." if len(names) > limit else "")


class DataContract(Callback):
    """Checks and shares what a task and its data module declare, at the start of each stage.

    - ``num_classes``: a model and data that disagree stop the run with a ValueError naming
      both counts and the data's first class names; a task created with ``num_classes=None``
      takes the data's (``adopt_num_classes``), before anything else here uses it.
    - labels: a model built without ``class_names`` takes the data's (``adopt_labels``), so
      ``predict`` on a loaded checkpoint names its classes.
    - class frequencies: when a fit starts, a model with ``adopt_class_counts`` (for
      ``class_weights="balanced"``) gets the training split's ``class_counts()``.
    - evaluation under DDP: metrics the model names in ``unsyncable_eval_metrics()`` make the
      data module keep Lightning's padding sampler (``eval_sync_blockers``).
    - ``data_config``: merged by :func:`~autotimm_core.data.merge_data_configs` (a value set on
      one side wins; set differently on both, a ValueError); both sides get the result.
    """

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        dm = trainer.datamodule
        if dm is None:
            return
        model_name, data_name = type(pl_module).__name__, type(dm).__name__
        classes = getattr(dm, "class_names", None)
        n_model, n_data = getattr(pl_module, "num_classes", None), getattr(dm, "num_classes", None)
        if isinstance(n_model, int) and isinstance(n_data, int) and n_model != n_data:
            names = f" ({_listing(list(classes))})" if classes else ""
            raise ValueError(
                f"{model_name} has num_classes={n_model} but the data module has {n_data} "
                f"classes{names}; create the model with num_classes={n_data} "
                f"(e.g. num_classes=data.num_classes) to train on this {data_name}"
            )
        if (
            n_model is None
            and isinstance(n_data, int)
            and getattr(pl_module, "num_classes_pending", False)
        ):
            # A task created with num_classes=None builds its class layers for the data's.
            pl_module.adopt_num_classes(n_data)
        adopt = getattr(pl_module, "adopt_labels", None)
        if classes and callable(adopt):
            adopt(list(classes), getattr(dm, "category_ids", None))
        counts, adopt_counts = (
            getattr(dm, "class_counts", None),
            getattr(pl_module, "adopt_class_counts", None),
        )
        if stage == "fit" and callable(counts) and callable(adopt_counts):
            found = counts()
            if found is not None:
                adopt_counts(found)
        unsyncable = getattr(pl_module, "unsyncable_eval_metrics", None)
        if callable(unsyncable) and hasattr(dm, "eval_sync_blockers"):
            dm.eval_sync_blockers = dict(unsyncable())
        mine, theirs = getattr(pl_module, "data_config", None), getattr(dm, "data_config", None)
        if isinstance(mine, DataConfig) and isinstance(theirs, DataConfig):
            merged = merge_data_configs(mine, theirs, model_name, data_name)
            pl_module.data_config = merged
            dm.data_config = merged
            _log_merged_values(merged, pl_module, dm)


def _log_merged_values(merged: DataConfig, *modules: Any) -> None:
    # Lightning logs the model's and the data module's hyperparameters together and stops the
    # run on a key they hold with different values (image_size=None on the model, 32 on the
    # data): the keys both hold now record the value both use.
    shared = [n for n in FIELDS if all(n in m.hparams for m in modules)]
    values = {n: _plain(getattr(merged, n)) for n in shared}
    for module in modules:
        if any(module.hparams[n] != v for n, v in values.items()):
            # Lightning's public way to change saved values (hparams and hparams_initial).
            module.save_hyperparameters({**module.hparams, **values})


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
