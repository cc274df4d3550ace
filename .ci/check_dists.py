"""Checks for ``nox -s build``: what would be published follows VERSION and is what gets tested.

    python .ci/check_dists.py built DIST       # the sdists and wheels in DIST (no dependencies)
    python .ci/check_dists.py new-version      # a changed VERSION moves every version and pin
                                               # (needs hatchling: uv run --with hatchling ...)
    python .ci/check_dists.py installed DIST   # the autotimm* installed here are DIST's wheels

Each prints what it checked and exits non-zero with a message naming the file on a mismatch.
"""

from __future__ import annotations

import email.parser
import json
import shutil
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = sorted(p.parent.name for p in (ROOT / "packages").glob("*/pyproject.toml"))


def _fail(message: str) -> None:
    sys.exit(f"check_dists: {message}")


def _check_metadata(
    where: str, name: str, version: str, requires: list[str], expected: str
) -> None:
    """``version`` is ``expected`` and every AutoTimm requirement is pinned ``==expected``."""
    if version != expected:
        _fail(f"{where}: version {version}, VERSION says {expected}")
    for req in requires:
        head = req.split(";")[0].strip()
        if head.startswith("autotimm") and not head.endswith(f"=={expected}"):
            _fail(f"{where}: requirement '{req}' is not pinned to =={expected}")
    if not name.startswith("autotimm"):
        _fail(f"{where}: distribution name {name!r} is not one of ours")


def _wheel_metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as zf:
        (meta,) = [n for n in zf.namelist() if n.endswith(".dist-info/METADATA")]
        return email.parser.Parser().parsestr(zf.read(meta).decode())


def _dist_stem(package: str) -> str:
    """The file-name stem of a package's dists: ``autotimm_core`` for packages/core."""
    return "autotimm" if package == "autotimm" else f"autotimm_{package}"


def check_built(dist: Path) -> None:
    """One wheel and one sdist per package at VERSION, with the LICENSE; each sdist carries
    what a wheel is built from (VERSION, the hook)."""
    version = (ROOT / "VERSION").read_text().strip()
    for package in PACKAGES:
        stem = _dist_stem(package)
        wheel = dist / f"{stem}-{version}-py3-none-any.whl"
        sdist = dist / f"{stem}-{version}.tar.gz"
        for path in (wheel, sdist):
            if not path.is_file():
                _fail(f"{path} was not built (VERSION is {version})")
        meta = _wheel_metadata(wheel)
        _check_metadata(
            wheel.name, meta["Name"], meta["Version"], meta.get_all("Requires-Dist") or [], version
        )
        if meta["License-Expression"] != "Apache-2.0" or meta["License-File"] != "LICENSE":
            _fail(f"{wheel.name}: no Apache-2.0 License-Expression with the LICENSE file")
        with zipfile.ZipFile(wheel) as zf:
            if not any(n.endswith(".dist-info/licenses/LICENSE") for n in zf.namelist()):
                _fail(f"{wheel.name} does not carry the LICENSE")
        with tarfile.open(sdist) as tf:
            names = {n.split("/", 1)[1] for n in tf.getnames() if "/" in n}
        needed = {"VERSION", "LICENSE", "PKG-INFO", "hatch_build.py", "pyproject.toml", "README.md"}
        missing = needed - names
        if missing:
            _fail(f"{sdist.name} lacks {sorted(missing)}: it cannot build a wheel on its own")
    print(f"check_dists: {len(PACKAGES)} wheels and sdists at {version}, pins =={version}")


def check_new_version() -> None:
    """Copy the packages next to a VERSION of 99.1.0 and read the metadata hatchling builds."""
    from hatchling.metadata.core import ProjectMetadata
    from hatchling.plugin.manager import PluginManager

    new = "99.1.0"
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(ROOT / "packages", Path(tmp) / "packages", ignore=_ignore_builds)
        (Path(tmp) / "VERSION").write_text(new + "\n")
        for package in PACKAGES:
            root = Path(tmp) / "packages" / package
            meta = ProjectMetadata(str(root), PluginManager())
            core = meta.core
            requires = list(core.dependencies)
            for extra, reqs in core.optional_dependencies.items():
                requires += [f"{r}; extra == '{extra}'" for r in reqs]
            _check_metadata(f"packages/{package}", core.name, meta.version, requires, new)
    print(f"check_dists: with VERSION {new} every package and pin is {new}")


def _ignore_builds(folder: str, names: list[str]) -> list[str]:
    return [n for n in names if n in {"__pycache__", "dist", "build"} or n.endswith(".egg-info")]


def check_installed(dist: Path) -> None:
    """Every installed autotimm* came from a wheel file in ``dist``, not from a source folder."""
    import importlib.metadata as md

    found = {}
    for d in md.distributions():
        name = d.metadata["Name"].lower()
        if not name.startswith("autotimm"):
            continue
        direct = json.loads(d.read_text("direct_url.json") or "{}")
        url = direct.get("url", "")
        if "archive_info" not in direct or not url.startswith(dist.resolve().as_uri() + "/"):
            _fail(f"{name} is installed from {url or 'an index'}, not from a wheel in {dist}")
        found[name] = url.rsplit("/", 1)[-1]
        for f in d.files or []:
            if str(f).endswith("__init__.py") and not Path(d.locate_file(f)).is_relative_to(
                sys.prefix
            ):
                _fail(f"{name}: {f} lies outside this environment")
    expected = {"autotimm" if p == "autotimm" else f"autotimm-{p}" for p in PACKAGES}
    if set(found) != expected:
        _fail(f"installed {sorted(found)}, expected {sorted(expected)}")
    print(f"check_dists: installed from {dist}: {', '.join(sorted(found.values()))}")


if __name__ == "__main__":
    match sys.argv[1:]:
        case ["built", folder]:
            check_built(Path(folder))
        case ["new-version"]:
            check_new_version()
        case ["installed", folder]:
            check_installed(Path(folder))
        case _:
            _fail(f"unknown arguments {sys.argv[1:]}; see the docstring of {__file__}")
