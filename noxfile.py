"""Test sessions: each package alone in a fresh venv, the combinations, everything, lint, docs.

Tests live by what they need: ``tests/<package>/`` (one package: its ``tests`` session),
``tests/integration/<a>_<b>/`` and ``tests/integration/all/`` (several: collected where all of
them are installed, see tests/integration/conftest.py), ``tests/autotimm/`` (the meta-package).

Every install takes our six distributions from packages/ (the uv workspace sources), never
from the registry, where the name ``autotimm`` belongs to another project. uv links packages
from one cache, so a fresh venv with torch costs seconds. uv does not read pip's configuration:
the extra index URLs and find-links this machine's pip uses are read at run time and handed to uv.

    nox                       # every default session (what CI runs)
    nox -s "tests(package='core')"
    nox -s dev                # .venv with everything installed editable, for development
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import nox
import tomllib

ROOT = Path(__file__).parent
nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_missing_interpreters = True

TASK_PACKAGES = ["core", "classification", "detection", "segmentation", "trainer"]
# The extras (optional backends) each package's own tests exercise; the task packages' export
# tests also get the core's `export` extra (onnx, onnxscript, onnxruntime). The detection session leaves
# out fast-map on purpose: it proves mAP through pycocotools alone (tests_all has faster-coco-eval).
TEST_EXTRAS = {
    "core": "tensorboard,export",
    "classification": "albumentations",
    "detection": "albumentations,builtin",
    "segmentation": "albumentations",
    "trainer": "plot",
}
ALL_PACKAGES = [*TASK_PACKAGES, "runtime", "autotimm"]
TEST_TOOLS = ["pytest", "pytest-xdist", "hypothesis", "psutil"]
DOCS_TOOLS = ["mkdocs-material", "mkdocstrings[python]", "pymdown-extensions"]
CONSTRAINTS = ["-c", str(ROOT / "constraints.txt")]
PYTEST = ["pytest", "-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider"]


def _pip_config() -> dict[str, str]:
    """pip's configured values (``pip config list``), e.g. extra-index-url and find-links."""
    try:
        out = subprocess.run(
            [sys.executable, "-m", "pip", "config", "list"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    except OSError:
        return {}
    values: dict[str, str] = {}
    for line in out.splitlines():
        m = re.match(r"^[^.]+\.([\w-]+)='(.*)'$", line.strip())
        if m:
            values[m.group(1)] = m.group(2)
    return values


def _uv_env() -> dict[str, str]:
    cfg = _pip_config()
    env = {"UV_INDEX_STRATEGY": "unsafe-best-match"}
    if cfg.get("extra-index-url"):
        env["UV_EXTRA_INDEX_URL"] = cfg["extra-index-url"]
    if cfg.get("index-url"):
        env["UV_INDEX_URL"] = cfg["index-url"]
    if cfg.get("find-links"):
        env["UV_FIND_LINKS"] = ",".join(shlex.split(cfg["find-links"]))
    return env


for _k, _v in _uv_env().items():
    os.environ.setdefault(_k, _v)
# Bytecode caches make the second import of torch/lightning in a session several times faster.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
os.environ.setdefault("OMP_NUM_THREADS", "1")


def _all_extras(package: str) -> str:
    """``[a,b]``: every extra the package declares (empty string when it has none)."""
    meta = tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())["project"]
    extras = sorted(meta.get("optional-dependencies", {}))
    return f"[{','.join(extras)}]" if extras else ""


def _install(session: nox.Session, *targets: str) -> None:
    session.install(*CONSTRAINTS, *targets)


def _assert_only(session: nox.Session, expected: set[str]) -> None:
    """Fail the session when a sibling package got in: the point is to test each one alone."""
    code = (
        "import importlib.metadata as m, json; "
        "print(json.dumps(sorted({d.metadata['Name'].lower() for d in m.distributions() "
        "if d.metadata['Name'].lower().startswith('autotimm')})))"
    )
    found = session.run("python", "-c", code, silent=True).strip().splitlines()[-1]
    import json

    got = set(json.loads(found))
    if got != expected:
        session.error(f"expected exactly {sorted(expected)} installed, found {sorted(got)}")


@nox.session
@nox.parametrize("package", TASK_PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """One package alone, with only its declared dependencies (and the extras its tests use)."""
    export = (
        ["./packages/core[export]"]
        if package in ("classification", "detection", "segmentation")
        else []
    )
    _install(session, f"./packages/{package}[{TEST_EXTRAS[package]}]", *export, *TEST_TOOLS)
    expected = {"autotimm-core"} | ({f"autotimm-{package}"} if package != "core" else set())
    _assert_only(session, expected)
    session.run(*PYTEST, f"tests/{package}", *session.posargs)


@nox.session
def runtime(session: nox.Session) -> None:
    """autotimm-runtime alone: numpy, Pillow and onnxruntime, and no torch (checked).

    Its tests build small AutoTimm-style ONNX files with the ``onnx`` helper API (a test tool
    here, not a dependency of the runtime).
    """
    _install(session, "./packages/runtime", *TEST_TOOLS, "onnx")
    _assert_only(session, {"autotimm-runtime"})
    # The point of the package: `import torch` (and the rest of the training stack) fails here.
    for forbidden in ("torch", "torchvision", "timm", "pytorch_lightning"):
        session.run("python", "-c", f"import {forbidden}", success_codes=[1], silent=True)
    session.run(*PYTEST, "tests/runtime", *session.posargs)


@nox.session
def meta(session: nox.Session) -> None:
    """The meta-package with no extras: lazy names, and the ImportError naming the extra."""
    _install(session, "./packages/autotimm", *TEST_TOOLS)
    _assert_only(session, {"autotimm", "autotimm-core"})
    session.run(*PYTEST, "tests/autotimm", *session.posargs)


@nox.session
@nox.parametrize("extras", ["classification,trainer", "detection,trainer", "segmentation,trainer"])
def combo(session: nox.Session, extras: str) -> None:
    """A task package with the trainer: installing more never breaks what is below.

    Runs the meta-package's tests, the integration folders whose packages these extras install
    (tests/integration/classification_trainer for classification,trainer) and the integration
    modules that skip per test (the documentation's examples).
    """
    _install(session, f"./packages/autotimm[{extras}]", *TEST_TOOLS)
    _assert_only(
        session, {"autotimm", "autotimm-core"} | {f"autotimm-{e}" for e in extras.split(",")}
    )
    session.run(*PYTEST, "tests/autotimm", "tests/integration", *session.posargs)


@nox.session
def tests_all(session: nox.Session) -> None:
    """autotimm[all]: the whole test suite."""
    _install(session, "./packages/autotimm[all]", *TEST_TOOLS)
    # With everything installed, no test may skip or be left out for a missing package.
    session.run(*PYTEST, "tests", *session.posargs, env={"AUTOTIMM_REQUIRE_ALL": "1"})


@nox.session
def lint(session: nox.Session) -> None:
    """ruff (lint and formatting) and import-linter (the package layout, [tool.importlinter])."""
    _install(session, "ruff", "import-linter")
    # import-linter reads the packages' source without importing it: no dependencies needed.
    session.install(*CONSTRAINTS, "--no-deps", *[f"./packages/{p}" for p in ALL_PACKAGES])
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the documentation site, strict: any warning fails."""
    if not (ROOT / "mkdocs.yml").exists():
        session.skip("no mkdocs.yml yet")
    _install(session, "./packages/autotimm[all]", *DOCS_TOOLS)
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "docs" / "site"))


@nox.session(default=False, venv_backend="none")
def dev(session: nox.Session) -> None:
    """Create .venv with every package installed editable plus test, lint and docs tools."""
    venv = ROOT / ".venv"
    session.run("uv", "venv", "--allow-existing", "-p", sys.executable, str(venv), external=True)
    # Every package editable, with all of its extras.
    editables = [x for p in ALL_PACKAGES for x in ("-e", f"./packages/{p}{_all_extras(p)}")]
    session.run(
        "uv",
        "pip",
        "install",
        "-p",
        str(venv / "bin" / "python"),
        *CONSTRAINTS,
        *editables,
        *TEST_TOOLS,
        "ruff",
        "import-linter",
        *DOCS_TOOLS,
        external=True,
    )
    session.log(f"Ready: source {venv}/bin/activate")


@nox.session(default=False, venv_backend="none")
def bump(session: nox.Session) -> None:
    """Set one new version everywhere: nox -s bump -- 0.2.0"""
    if len(session.posargs) != 1:
        session.error("usage: nox -s bump -- NEW_VERSION")
    new = session.posargs[0]
    old = (ROOT / "VERSION").read_text().strip()
    (ROOT / "VERSION").write_text(new + "\n")
    for pyproject in ROOT.glob("packages/*/pyproject.toml"):
        text = pyproject.read_text()
        text = re.sub(rf'^version = "{re.escape(old)}"', f'version = "{new}"', text, flags=re.M)
        text = text.replace(f"=={old}", f"=={new}")
        pyproject.write_text(text)
    session.log(f"{old} -> {new}")
