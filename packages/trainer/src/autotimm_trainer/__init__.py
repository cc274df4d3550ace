"""autotimm-trainer: AutoTrainer, TunerConfig and the ``autotimm`` command line."""

from importlib.metadata import PackageNotFoundError, version

from autotimm_trainer.trainer import AutoTrainer
from autotimm_trainer.tuning import TunerConfig

try:
    __version__ = version("autotimm-trainer")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0"

__all__ = ["AutoTrainer", "TunerConfig", "__version__"]
