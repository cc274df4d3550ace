"""One version for all five distributions, and sibling pins that match it."""

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomli (pytest's own dependency there) is the same parser
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["core", "classification", "detection", "trainer", "autotimm"]


def _project(pkg: str) -> dict:
    return tomllib.loads((ROOT / "packages" / pkg / "pyproject.toml").read_text())["project"]


def test_all_versions_and_sibling_pins_equal_the_version_file():
    version = (ROOT / "VERSION").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+(\w+\d*)?", version)
    for pkg in PACKAGES:
        meta = _project(pkg)
        assert meta["version"] == version, pkg
        deps = list(meta.get("dependencies", []))
        for extra in meta.get("optional-dependencies", {}).values():
            deps += extra
        for dep in deps:
            if dep.startswith("autotimm"):
                assert dep.endswith(f"=={version}"), f"{pkg}: {dep} is not pinned to {version}"


def test_task_packages_depend_on_core_only():
    """Declared dependencies; the imports themselves are import-linter's contracts (nox -s lint)."""
    for pkg in ["classification", "detection", "trainer"]:
        meta = _project(pkg)
        ours = [
            d.split("==")[0].split("[")[0] for d in meta["dependencies"] if d.startswith("autotimm")
        ]
        assert ours == ["autotimm-core"], pkg


def _sibling_extras(name: str, extras: dict[str, list[str]], extra: str) -> set[str]:
    """The extras of sibling ``name`` that the meta-package's ``extra`` installs."""
    found = [re.match(rf"{name}(?:\[([^\]]*)\])?==", d) for d in extras[extra]]
    found = [m for m in found if m]
    assert found, f"autotimm[{extra}] does not install {name}"
    return {e.strip() for m in found if m.group(1) for e in m.group(1).split(",")}


def test_meta_extras_install_what_a_full_install_had():
    """autotimm[all] brings every extra of every package; each task extra its package's backends."""
    extras = _project("autotimm")["optional-dependencies"]
    for pkg in ["core", "classification", "detection", "trainer", "runtime"]:
        own = set(_project(pkg).get("optional-dependencies", {}))
        assert _sibling_extras(f"autotimm-{pkg}", extras, "all") == own, pkg
    assert _sibling_extras("autotimm-classification", extras, "classification") == {
        "albumentations"
    }
    assert _sibling_extras("autotimm-detection", extras, "detection") == {"albumentations"}
    assert _sibling_extras("autotimm-trainer", extras, "trainer") == {"plot"}
    for extra in ["classification", "detection", "trainer"]:
        assert _sibling_extras("autotimm-core", extras, extra) == {"tensorboard"}, extra
    assert _sibling_extras("autotimm-core", extras, "export") == {"export"}


def test_installed_core_is_ours():
    import importlib.metadata as md

    import autotimm_core

    dist = md.distribution("autotimm-core")
    assert dist.version == (ROOT / "VERSION").read_text().strip()
    assert autotimm_core.__version__ == dist.version
    assert dist.metadata["Summary"].startswith("Shared core of AutoTimm")


def test_test_module_names_are_unique():
    """tests_all collects every folder at once; two test modules with one name cannot both import."""
    names = [p.name for p in (ROOT / "tests").rglob("*.py") if p.name != "conftest.py"]
    assert sorted({n for n in names if names.count(n) > 1}) == []


def test_integration_folders_are_named_for_what_they_need():
    """tests/integration/<a>_<b>: the sorted task packages the tests import, or all (see conftest)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_integration_conftest", ROOT / "tests/integration/conftest.py"
    )
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    # `export` is the core's ONNX backends (autotimm-core[export]), not a package of its own.
    extras = set(_project("autotimm")["optional-dependencies"]) - {"all", "export"}
    assert set(conftest.TASKS) == extras
    folders = conftest.folders()
    assert "all" in folders
    for folder in set(folders) - {"all"}:
        parts = folder.split("_")
        assert parts == sorted(set(parts)) and len(parts) > 1, (
            f"tests/integration/{folder}: name it for two or more packages, sorted, joined by _ "
            "(a test needing one package belongs in tests/<package>/)"
        )
        assert set(parts) <= extras, f"tests/integration/{folder}: not all of {parts} are packages"
