"""Integration tests cross packages: a module whose packages are not installed is not collected.

The `combo` nox sessions install a task package with the trainer only; `tests_all` installs
everything and sets AUTOTIMM_REQUIRE_ALL=1, where nothing may be left out.
"""

import importlib.util
import os

ALL_TASKS = ("autotimm_classification", "autotimm_detection", "autotimm_trainer")
# module -> the packages it imports
NEEDS = {
    "test_ddp_trainer.py": ("autotimm_trainer",),
    "test_gpu.py": ALL_TASKS,
    "test_reliability_ddp.py": ALL_TASKS,
    "test_reliability_hostile_input.py": ("autotimm_classification", "autotimm_detection"),
    "test_reliability_memory.py": ("autotimm_classification", "autotimm_trainer"),
    "test_reliability_nan.py": ALL_TASKS,
    "test_reliability_resume.py": ALL_TASKS,
    "test_reliability_signals.py": ("autotimm_classification", "autotimm_trainer"),
}


def _missing(modules):
    return [m for m in modules if importlib.util.find_spec(m) is None]


collect_ignore = []
if not os.environ.get("AUTOTIMM_REQUIRE_ALL"):
    collect_ignore = [name for name, needs in NEEDS.items() if _missing(needs)]
