"""Tests across packages, laid out by what they need: no table to keep by hand.

- ``tests/integration/<a>_<b>/`` holds tests that import the packages ``autotimm_<a>`` and
  ``autotimm_<b>`` (the folder is named for the meta-package extras that install them, sorted,
  joined by ``_``: ``classification_trainer``, ``classification_detection``).
- ``tests/integration/all/`` holds tests that need every task package (``autotimm[all]``).
- Modules directly in ``tests/integration`` decide per test and skip what they cannot run
  (``test_docs_examples.py`` skips per block).

A folder whose packages are not all installed is not collected, so ``pytest tests`` works with
any install: the ``combo`` nox sessions collect the folders their extras cover. ``tests_all``
installs everything and sets ``AUTOTIMM_REQUIRE_ALL=1``, where nothing may be left out. A test
needing one package only lives in that package's folder, ``tests/<package>/``, and runs in its
``tests-<python>(package=...)`` sessions.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
ROOT = TESTS.parent

# Helper modules imported by name from the folders below: reliability_helpers, example_runs
# and docs_substitutions (here) and ddp_launch (tests/trainer, where the trainer's DDP test uses it).
for _helpers in (HERE, TESTS / "trainer"):
    if str(_helpers) not in sys.path:
        sys.path.insert(0, str(_helpers))

# Every task package: each folder under packages/ except the core and the meta-package.
TASKS = sorted(
    p.name
    for p in (ROOT / "packages").iterdir()
    if (p / "pyproject.toml").is_file() and p.name not in ("core", "autotimm")
)


def needs(folder: str) -> list[str]:
    """The import names a test folder needs, read from its name (``all``: every task package)."""
    parts = TASKS if folder == "all" else folder.split("_")
    return [f"autotimm_{part}" for part in parts]


def folders() -> list[str]:
    """The folders holding tests, by name (caches and hidden folders are not)."""
    return sorted(
        p.name for p in HERE.iterdir() if p.is_dir() and not p.name.startswith(("_", "."))
    )


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


collect_ignore: list[str] = []
if not os.environ.get("AUTOTIMM_REQUIRE_ALL"):
    collect_ignore = [f for f in folders() if not all(map(_installed, needs(f)))]
