"""The ``autotimm`` command: LightningCLI with AutoTrainer, plus ``autotimm tune``.

    autotimm fit --config examples/classification_quickstart.yaml
    autotimm tune --config examples/classification_quickstart.yaml
    autotimm fit --help / autotimm fit --model.help ImageClassifier

Installed task packages make their models and data modules known through the entry-point
group ``autotimm.tasks`` (``ImageClassifier = "autotimm_classification:ImageClassifier"``);
they are imported when the command starts, so a config can name them by class name
(``class_path: ImageClassifier``) as well as by full import path.
"""

from __future__ import annotations

from importlib.metadata import entry_points

import pytorch_lightning as pl
from pytorch_lightning.cli import ArgsType, LightningCLI
from pytorch_lightning.utilities.rank_zero import rank_zero_warn

from autotimm_core.registry import Registry
from autotimm_trainer import _log
from autotimm_trainer.trainer import AutoTrainer

ENTRY_POINT_GROUP = "autotimm.tasks"


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
        args=args,
        run=run,
    )


def main(args: ArgsType = None) -> None:
    """Entry point of the ``autotimm`` command."""
    build_cli(args)


if __name__ == "__main__":  # pragma: no cover
    main()
