"""The ``autotimm`` command: LightningCLI with AutoTrainer, plus ``autotimm tune``.

    autotimm fit --config examples/classification_quickstart.yaml
    autotimm tune --config examples/classification_quickstart.yaml
    autotimm fit --help / autotimm fit --model.help ImageClassifier
    autotimm export --ckpt_path best.ckpt --output model.onnx [--config run.yaml]
    autotimm predict --config run.yaml --ckpt_path best.ckpt --output_dir out/ [--draw true]
    autotimm --version

The optimizer and scheduler are set through the model's own arguments
(``model.init_args.optimizer``, ``model.init_args.scheduler``...): LightningCLI's automatic
``--optimizer`` / ``--lr_scheduler`` flags, which would silently replace the model's set-up, are
off.

Installed task packages make their models and data modules known through the entry-point
group ``autotimm.tasks`` (``ImageClassifier = "autotimm_classification:ImageClassifier"``);
they are imported when the command starts, so a config can name them by class name
(``class_path: ImageClassifier``) as well as by full import path.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import importlib
import inspect
import re
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, NoReturn

import pytorch_lightning as pl
from pytorch_lightning.cli import ArgsType, LightningArgumentParser, LightningCLI
from pytorch_lightning.utilities.rank_zero import rank_zero_warn

from autotimm_core._imports import distribution_version
from autotimm_core.registry import Registry
from autotimm_trainer import _log
from autotimm_trainer.trainer import AutoTrainer

ENTRY_POINT_GROUP = "autotimm.tasks"

#: What ``autotimm --help`` says first (instead of LightningCLI's default text).
DESCRIPTION = (
    "AutoTimm: train, evaluate, tune and predict with timm backbones for image classification "
    "and object detection, from a YAML config (autotimm fit --config FILE.yaml). Each fit writes "
    "one run folder (default_root_dir/version_N) with checkpoints/, the logs, hparams.yaml, "
    "config.yaml, results.csv and results.png. Set the optimizer and scheduler with the model's "
    "own arguments (model.init_args.optimizer, model.init_args.scheduler)."
)


def _task_registry(group: str) -> Registry[type]:
    # Class names are case-sensitive in a config's class_path: the registry keeps their case.
    registry: Registry[type] = Registry(
        "task", "autotimm_trainer.cli.list_tasks", normalize=str.strip
    )
    for ep in entry_points(group=group):
        try:
            obj = ep.load()
        except Exception as err:
            rank_zero_warn(f"autotimm: could not load {ep.name} = {ep.value!r} ({group}): {err}")
            continue
        if not (
            isinstance(obj, type) and issubclass(obj, (pl.LightningModule, pl.LightningDataModule))
        ):
            rank_zero_warn(
                f"autotimm: {ep.name} = {ep.value!r} ({group}) is not a LightningModule or "
                "LightningDataModule class; skipped"
            )
            continue
        registry.register(ep.name, obj)
    return registry


# The task classes of ENTRY_POINT_GROUP, filled by load_tasks() (or the first list_tasks()).
_TASKS: Registry[type] | None = None


def load_tasks(group: str = ENTRY_POINT_GROUP) -> dict[str, type]:
    """Import the models and data modules that installed packages declare in ``group``.

    Returns ``{entry name: class}``. An entry that fails to load, or is not a LightningModule or
    LightningDataModule subclass, is skipped with a warning naming it: one broken package must
    not take the command down. For the default group the classes also fill the task registry
    that ``list_tasks()`` and ``get_task()`` read (each call reloads it).
    """
    global _TASKS
    registry = _task_registry(group)
    if group == ENTRY_POINT_GROUP:
        _TASKS = registry
    return dict(registry.items())


def _tasks() -> Registry[type]:
    if _TASKS is None:
        load_tasks()
    assert _TASKS is not None
    return _TASKS


def list_tasks(pattern: str = "*") -> list[str]:
    """Sorted names of the installed task classes (``autotimm.tasks`` entry points).

    Args:
        pattern: fnmatch-style filter on the class name (case-sensitive), e.g. ``"*Data*"``.
            Default ``"*"``: all.
    """
    return _tasks().names(pattern)


def get_task(name: str) -> type:
    """The installed task class called ``name`` (e.g. ``"ImageClassifier"``).

    Raises:
        ValueError: no installed package declares it; the message lists close matches and the
            installed names.
    """
    return _tasks().get(name)


# ----------------------------------------------------------------------------- parser
_KEY = re.compile(r'Parser key "([^"]+)"')
_LITERAL = re.compile(r"Literal\[([^\]]*)\]")
# A nested argument (data.init_args.augmentation_preset): the inner key's own line.
_NESTED = re.compile(r"Expected a typing\.Literal\[([^\]]*)\]\. Got value: (.*)")
_GIVEN = re.compile(r"Given value: (.*)")


def _literal_values(text: str) -> list[str]:
    try:
        return [str(v) for v in ast.literal_eval(f"[{text}]")]
    except (ValueError, SyntaxError):
        return []


def explain_choice_error(message: str) -> str:
    """``message`` (jsonargparse's) with, for a value outside a fixed set of choices, one
    line first naming the argument, the valid choices and the close matches."""
    keys = _KEY.findall(message)
    nested = _NESTED.search(message)
    if nested and keys:
        # "data" then "augmentation_preset": the argument is data.augmentation_preset.
        key, value, choices = (
            ".".join(keys),
            nested.group(2).strip(),
            _literal_values(nested.group(1)),
        )
    else:
        given = _GIVEN.search(message)
        if not (keys and given):
            return message
        key, value = keys[0], given.group(1).strip()
        choices = []
        for found in _LITERAL.finditer(message):
            choices += [v for v in _literal_values(found.group(1)) if v not in choices]
    if not choices:
        return message
    close = difflib.get_close_matches(value, choices, n=3, cutoff=0.5)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    return f"{key}={value!r} is not one of: {', '.join(choices)}.{hint}\n\n{message}"


# ----------------------------------------------------------------------------- num_classes
def _import_class(class_path: str) -> type:
    module, _, name = class_path.rpartition(".")
    return getattr(importlib.import_module(module), name) if module else get_task(name)


def _accepts(cls: type, name: str) -> bool:
    return name in inspect.signature(cls.__init__).parameters


def data_for_num_classes(config: Any) -> pl.LightningDataModule | None:
    """When the model's ``num_classes`` is not given (None) and its data module says how many
    classes it holds, fill ``model.init_args.num_classes`` (and ``class_names`` when the model
    takes them and none are given) into ``config`` from that data module, and return it, set up
    for ``fit``; else None and ``config`` is left alone.

    A ``num_classes`` given on both sides is left to the data contract, which stops a run
    whose model and data disagree with both counts in the message.
    """
    model, data = config.get("model"), config.get("data")
    init = model.get("init_args") if model is not None and "class_path" in model else None
    if init is None or data is None or "class_path" not in data:
        return None
    if "num_classes" not in init or init["num_classes"] is not None:
        return None
    data_cls = _import_class(data["class_path"])
    args = data.get("init_args")
    dm = data_cls(**(args.as_dict() if hasattr(args, "as_dict") else dict(args or {})))
    if getattr(dm, "num_classes", None) is None:
        dm.prepare_data()
        dm.setup("fit")
    n = getattr(dm, "num_classes", None)
    if not isinstance(n, int):
        return None
    init["num_classes"] = n
    names = getattr(dm, "class_names", None)
    takes_names = "class_names" in init and init["class_names"] is None
    if names and takes_names and _accepts(_import_class(model["class_path"]), "class_names"):
        init["class_names"] = [str(c) for c in names]
    _log.info(f"model num_classes={n}: from the data module ({type(dm).__name__})")
    return dm


class AutoTimmArgumentParser(LightningArgumentParser):
    """LightningCLI's parser; a value outside an argument's choices is reported with the
    choices and close matches (see :func:`explain_choice_error`)."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        super().error(explain_choice_error(message), ex)


class AutoTimmCLI(LightningCLI):
    """LightningCLI with ``AutoTrainer`` and a ``tune`` subcommand.

    Models and data modules are chosen in the config with ``class_path`` (any LightningModule /
    LightningDataModule subclass) and ``init_args``.
    """

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {
            **LightningCLI.subcommands(),
            "tune": {"model", "train_dataloaders", "val_dataloaders", "datamodule"},
        }

    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict, subparser_kwargs: dict
    ) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        version = distribution_version("autotimm-trainer")
        self.parser.add_argument(
            "--version", action="version", version=f"autotimm {version}", help="Print the version."
        )

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        self._data_set_up = data_for_num_classes(config)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # The data module that told num_classes is already set up: run on it, not on a copy
        # that would read the data again.
        if getattr(self, "_data_set_up", None) is not None:
            self.datamodule = self._data_set_up

    def after_tune(self) -> None:
        results = self.trainer.tuning_results or {}
        lines = ["Suggestions (put them in your config and train without tuner_config):"]
        if results.get("batch_size") is not None:
            lines.append(f"  data.init_args.batch_size: {results['batch_size']}")
        if results.get("lr") is not None:
            lines.append(f"  model.init_args.lr: {results['lr']:.3g}")
        if results.get("lr_plot"):
            lines.append(f"  learning-rate curve: {results['lr_plot']}")
        if len(lines) == 1:
            lines.append("  none (see the warnings above)")
        _log.info("\n".join(lines))


def build_cli(args: ArgsType = None, run: bool = True) -> AutoTimmCLI:
    """Build (and by default run) the command line; ``args`` replaces ``sys.argv[1:]``."""
    load_tasks()
    return AutoTimmCLI(
        trainer_class=AutoTrainer,
        subclass_mode_model=True,
        subclass_mode_data=True,
        # The trainer has its own `seed`; LightningCLI's random default seed would hide it.
        seed_everything_default=False,
        # One way to set the optimizer: the model's own arguments (see the module docs).
        auto_configure_optimizers=False,
        parser_kwargs={"description": DESCRIPTION},
        parser_class=AutoTimmArgumentParser,
        args=args,
        run=run,
    )


# ----------------------------------------------------------------- autotimm export
# Not a LightningCLI subcommand: those are Trainer methods, and exporting needs no trainer,
# data or run folder; a plain argparse command reads the checkpoint and calls the task's export.


def export_parser() -> argparse.ArgumentParser:
    """The arguments of ``autotimm export``."""
    parser = argparse.ArgumentParser(
        prog="autotimm export",
        description="Export a trained task from its checkpoint to ONNX (.onnx) or torch.export "
        "(.pt2), with the metadata autotimm-runtime reads and a parity check.",
    )
    parser.add_argument("--ckpt_path", required=True, help="the checkpoint to export")
    parser.add_argument("--output", required=True, help="the file to write: .onnx or .pt2")
    parser.add_argument(
        "--config",
        help="the run's YAML (the one given to `autotimm fit`, or the run folder's config.yaml): "
        "its model.class_path names the task; default: the class the checkpoint records",
    )
    parser.add_argument("--image_size", type=int, help="input side (default: the model's)")
    parser.add_argument("--batch_size", type=int, help="a fixed batch size (default: any)")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: torch.onnx's)")
    parser.add_argument(
        "--no-check",
        dest="check",
        action="store_false",
        help="skip running the written file against the PyTorch model",
    )
    return parser


def _config_class_path(config: Path) -> str:
    import yaml

    if not config.is_file():
        raise FileNotFoundError(f"config file not found: {config}")
    data = yaml.safe_load(config.read_text()) or {}
    model = data.get("model") if isinstance(data, dict) else None
    class_path = model.get("class_path") if isinstance(model, dict) else model
    if not isinstance(class_path, str) or not class_path.strip():
        raise ValueError(f"{config} has no model.class_path: cannot tell which task to export")
    return class_path.strip()


def _checkpoint_class_path(ckpt_path: Path) -> str:
    import torch

    from autotimm_core.task import TASK_CLASS_KEY

    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    # AutoTimm's tasks record their class; LightningCLI records `_class_path` in the
    # hyperparameters of models it instantiated with subclass mode.
    class_path = checkpoint.get(TASK_CLASS_KEY) or checkpoint.get("hyper_parameters", {}).get(
        "_class_path"
    )
    if not class_path:
        raise ValueError(
            f"{ckpt_path} does not record its task class (not saved by an AutoTimm task or "
            "LightningCLI): pass the run's YAML with --config (its model.class_path names it)"
        )
    return str(class_path)


def resolve_task_class(class_path: str) -> type:
    """The task class a config or checkpoint names: an installed task's entry-point name
    (``ImageClassifier``), its import path, or any importable ``module.Class``.

    Raises:
        ValueError: nothing of that name is installed or importable (the installed names are
            listed).
    """
    tasks = _tasks()
    if class_path in tasks.names():
        return tasks.get(class_path)
    for cls in dict(tasks.items()).values():
        if class_path in (
            f"{cls.__module__}.{cls.__qualname__}",
            f"{cls.__module__}.{cls.__name__}",
        ):
            return cls
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(
            f"unknown task class {class_path!r} ({err}); installed tasks: {tasks.names()}"
        ) from None


def export_checkpoint(
    ckpt_path: str | Path,
    output: str | Path,
    config: str | Path | None = None,
    image_size: int | None = None,
    batch_size: int | None = None,
    opset: int | None = None,
    check: bool = True,
) -> Path:
    """What ``autotimm export`` does: rebuild the task of a checkpoint and export it.

    The model is rebuilt with ``load_from_checkpoint`` (its saved hyperparameters: class names,
    data config and all), as ``autotimm validate --ckpt_path`` does.

    Args:
        ckpt_path: the checkpoint.
        output: the file to write; ``.onnx`` or ``.pt2`` (see ``BaseTask.export``).
        config: the run's YAML, whose ``model.class_path`` names the task. Default None: the
            class the checkpoint records.
        image_size: input side. Default None: the model's.
        batch_size: a fixed batch size. Default None: any batch size.
        opset: ONNX opset. Default None: torch.onnx's default.
        check: compare the written file with the PyTorch model. Default True.

    Returns:
        The path written.

    Raises:
        FileNotFoundError: no such checkpoint or config (named).
        ValueError: the task cannot be told, or is not an AutoTimm task (cannot export).
    """
    from autotimm_core import BaseTask

    ckpt = Path(ckpt_path)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    class_path = (
        _config_class_path(Path(config)) if config is not None else _checkpoint_class_path(ckpt)
    )
    cls = resolve_task_class(class_path)
    if not (isinstance(cls, type) and issubclass(cls, BaseTask)):
        raise ValueError(
            f"{class_path} (from {config or ckpt}) is not an AutoTimm task (BaseTask), so it has "
            "no export"
        )
    model = cls.load_from_checkpoint(ckpt, map_location="cpu")
    path = model.export(
        output, image_size=image_size, batch_size=batch_size, opset=opset, check=check
    )
    _log.info(f"autotimm export: wrote {path} ({cls.__name__} from {ckpt})")
    return path


def export_main(argv: Sequence[str]) -> Path:
    """``autotimm export ...``: parse ``argv`` (the words after ``export``) and export."""
    args = export_parser().parse_args(list(argv))
    return export_checkpoint(
        args.ckpt_path,
        args.output,
        config=args.config,
        image_size=args.image_size,
        batch_size=args.batch_size,
        opset=args.opset,
        check=args.check,
    )


def main(args: ArgsType = None) -> None:
    """Entry point of the ``autotimm`` command."""
    words = sys.argv[1:] if args is None else args
    if isinstance(words, (list, tuple)) and list(words[:1]) == ["export"]:
        export_main(words[1:])
        return
    build_cli(args)


if __name__ == "__main__":  # pragma: no cover
    main()
