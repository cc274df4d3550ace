"""One version for all five distributions, and sibling pins that match it."""

import re
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ["core", "classification", "detection", "trainer", "autotimm"]


def test_all_versions_and_sibling_pins_equal_the_version_file():
    version = (ROOT / "VERSION").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+(\w+\d*)?", version)
    for pkg in PACKAGES:
        meta = tomllib.loads((ROOT / "packages" / pkg / "pyproject.toml").read_text())["project"]
        assert meta["version"] == version, pkg
        deps = list(meta.get("dependencies", []))
        for extra in meta.get("optional-dependencies", {}).values():
            deps += extra
        for dep in deps:
            if dep.startswith("autotimm"):
                assert dep.endswith(f"=={version}"), f"{pkg}: {dep} is not pinned to {version}"


def test_task_packages_depend_on_core_only():
    for pkg in ["classification", "detection", "trainer"]:
        meta = tomllib.loads((ROOT / "packages" / pkg / "pyproject.toml").read_text())["project"]
        ours = [
            d.split("==")[0].split("[")[0] for d in meta["dependencies"] if d.startswith("autotimm")
        ]
        assert ours == ["autotimm-core"], pkg
        src = ROOT / "packages" / pkg / "src"
        for path in src.rglob("*.py"):
            text = path.read_text()
            for other in ["classification", "detection", "trainer"]:
                if other != pkg:
                    assert not re.search(rf"^\s*(from|import) autotimm_{other}\b", text, re.M), path


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


def test_every_integration_module_declares_its_packages():
    """A new integration test module must say what it needs, or the combo sessions break."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "_integration_conftest", ROOT / "tests/integration/conftest.py"
    )
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    modules = {p.name for p in (ROOT / "tests" / "integration").glob("test_*.py")}
    undeclared = modules - set(conftest.NEEDS) - {"test_docs_examples.py"}  # skips per block
    assert not undeclared, (
        f"add these to NEEDS in tests/integration/conftest.py: {sorted(undeclared)}"
    )
