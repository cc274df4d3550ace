"""One version for every distribution, and sibling pins that match it.

The version and the pins between our packages are not written in any pyproject.toml: each
package's hatch_build.py reads VERSION and pins the AutoTimm requirements listed (without a
version) in ``[tool.hatch.metadata.hooks.custom]``. ``nox -s build`` checks the built wheels and
that a changed VERSION moves every version and pin (.ci/check_dists.py).
"""

import importlib.metadata as md
import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: tomli (pytest's own dependency there) is the same parser
    import tomli as tomllib
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = sorted(p.parent.name for p in (ROOT / "packages").glob("*/pyproject.toml"))


def _config(pkg: str) -> dict:
    return tomllib.loads((ROOT / "packages" / pkg / "pyproject.toml").read_text())


def _hook(pkg: str) -> dict:
    return _config(pkg)["tool"]["hatch"]["metadata"]["hooks"]["custom"]


def _project(pkg: str) -> dict:
    """``[project]`` with the requirements declared to the version hook merged in."""
    meta = dict(_config(pkg)["project"])
    for field in ("dependencies", "optional-dependencies"):
        if field in _hook(pkg):
            meta[field] = _hook(pkg)[field]
    return meta


def _ours(requirement: str) -> bool:
    return requirement.startswith("autotimm")


def _requirements(meta: dict) -> list[str]:
    """The dependencies and every extra's requirements of a ``[project]``-like table."""
    deps = list(meta.get("dependencies", []))
    for extra in meta.get("optional-dependencies", {}).values():
        deps += extra
    return deps


def test_every_package_is_listed():
    assert PACKAGES == [
        "autotimm",
        "classification",
        "core",
        "detection",
        "runtime",
        "segmentation",
        "trainer",
    ]


def test_no_pyproject_writes_a_version_of_ours():
    """Editing VERSION alone releases a new version: no other file holds one."""
    hook = (ROOT / "packages" / "core" / "hatch_build.py").read_text()
    for pkg in PACKAGES:
        config, meta = _config(pkg), _project(pkg)
        assert "version" not in config["project"], pkg
        assert "version" in config["project"]["dynamic"], pkg
        # An sdist builds on its own: it carries the hook and copies of VERSION and LICENSE.
        assert (ROOT / "packages" / pkg / "hatch_build.py").read_text() == hook, pkg
        sdist = config["tool"]["hatch"]["build"]["targets"]["sdist"]
        assert sdist["force-include"] == {"../../VERSION": "VERSION", "../../LICENSE": "LICENSE"}
        assert config["project"]["license"] == "Apache-2.0", pkg
        # uv rebuilds the metadata of an installed workspace package when VERSION changes.
        assert {"file": "../../VERSION"} in config["tool"]["uv"]["cache-keys"], pkg
        for dep in filter(_ours, _requirements(meta)):
            assert not Requirement(dep).specifier, f"{pkg}: {dep} must not name a version"
        # Static [project] requirements are never rewritten by the hook, so none is ours.
        assert not any(map(_ours, _requirements(config["project"]))), (
            f"{pkg}: list AutoTimm packages in [tool.hatch.metadata.hooks.custom]"
        )


def test_installed_versions_and_sibling_pins_equal_the_version_file():
    """What the hook built: every installed package of ours is at VERSION and pins VERSION."""
    version = (ROOT / "VERSION").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+(\w+\d*)?", version)
    installed = [d for d in md.distributions() if _ours(d.metadata["Name"].lower())]
    assert "autotimm-core" in {d.metadata["Name"].lower() for d in installed}
    for dist in installed:
        name = dist.metadata["Name"]
        assert dist.version == version, name
        for dep in filter(_ours, dist.requires or []):
            assert dep.split(";")[0].strip().endswith(f"=={version}"), f"{name}: {dep}"


def test_task_packages_depend_on_core_only():
    """Declared dependencies; the imports themselves are import-linter's contracts (nox -s lint)."""
    for pkg in ["classification", "detection", "segmentation", "trainer"]:
        meta = _project(pkg)
        ours = [Requirement(d).name for d in meta["dependencies"] if _ours(d)]
        assert ours == ["autotimm-core"], pkg


def _sibling_extras(name: str, extras: dict[str, list[str]], extra: str) -> set[str]:
    """The extras of sibling ``name`` that the meta-package's ``extra`` installs."""
    found = [re.fullmatch(rf"{name}(?:\[([^\]]*)\])?", d) for d in extras[extra]]
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
    # The detection extra also brings the built-in offline set (its quick start's data).
    assert _sibling_extras("autotimm-detection", extras, "detection") == {
        "albumentations",
        "builtin",
    }
    assert _sibling_extras("autotimm-trainer", extras, "trainer") == {"plot"}
    for extra in ["classification", "detection", "trainer"]:
        assert _sibling_extras("autotimm-core", extras, extra) == {"tensorboard"}, extra
    assert _sibling_extras("autotimm-core", extras, "export") == {"export"}


def test_installed_core_is_ours():
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
