"""autotimm-trainer: AutoTrainer, TunerConfig and the ``autotimm`` command line.

Modules: ``trainer`` (AutoTrainer), ``callbacks`` (the callbacks it adds), ``tuning``
(TunerConfig and the tuning pass), ``memory`` (the host-memory guard of the batch-size search),
``run_dir`` (run folders and checkpoint paths), ``ddp`` (the hand-off to DDP workers) and
``cli`` (the ``autotimm`` command).
"""

from autotimm_core._imports import distribution_version
from autotimm_trainer.callbacks import FiniteCheck, InterruptCheckpoint, NonFiniteLossError
from autotimm_trainer.trainer import AutoTrainer
from autotimm_trainer.tuning import TunerConfig

__version__ = distribution_version("autotimm-trainer")

__all__ = [
    "AutoTrainer",
    "FiniteCheck",
    "InterruptCheckpoint",
    "NonFiniteLossError",
    "TunerConfig",
    "__version__",
]
