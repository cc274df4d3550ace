"""Hatch metadata hook: every AutoTimm package's version is the repository's ``VERSION`` file.

The same file sits in every package folder (tests/core/test_versions.py checks the copies are
identical): an sdist must build on its own, so the hook cannot live outside the package.
It sets ``version`` from ``VERSION`` and pins each requirement on a sibling AutoTimm
distribution, listed without a version in ``[tool.hatch.metadata.hooks.custom]``
(``autotimm-core``, ``autotimm-detection[albumentations]``), to exactly that version. So one
edit of ``VERSION`` changes every package's version and every pin between them.

``VERSION`` is ``../../VERSION`` in the repository; an sdist carries its own copy at its root
(``[tool.hatch.build.targets.sdist.force-include]``), and a wheel built from an sdist reads it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.metadata.plugin.interface import MetadataHookInterface
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet


def read_version(root: Path) -> str:
    """The version in ``root/VERSION`` (an sdist) or ``root/../../VERSION`` (the repository)."""
    for candidate in (root / "VERSION", root.parent.parent / "VERSION"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8").strip()
    raise FileNotFoundError(f"no VERSION file in {root} or {root.parent.parent}")


def pin_siblings(requirements: list[str], version: str, where: str) -> list[str]:
    """``requirements`` with every ``autotimm``/``autotimm-*`` one pinned to ``==version``.

    A sibling given with a version of its own is an error: it would not follow ``VERSION``.
    """
    pinned = []
    for text in requirements:
        req = Requirement(text)
        if req.name == "autotimm" or req.name.startswith("autotimm-"):
            if req.specifier:
                raise ValueError(
                    f"{where}: '{text}' has a version; list AutoTimm packages without one "
                    "(the hook pins them to VERSION)"
                )
            req.specifier = SpecifierSet(f"=={version}")
            text = str(req)
        pinned.append(text)
    return pinned


class VersionHook(MetadataHookInterface):
    """Fills ``version`` and the dynamic ``dependencies`` / ``optional-dependencies``."""

    def update(self, metadata: dict[str, Any]) -> None:
        version = read_version(Path(self.root))
        metadata["version"] = version
        where = f"{self.root}/pyproject.toml [tool.hatch.metadata.hooks.custom]"
        if "dependencies" in self.config:
            metadata["dependencies"] = pin_siblings(self.config["dependencies"], version, where)
        if "optional-dependencies" in self.config:
            metadata["optional-dependencies"] = {
                extra: pin_siblings(reqs, version, f"{where} optional-dependencies.{extra}")
                for extra, reqs in self.config["optional-dependencies"].items()
            }
