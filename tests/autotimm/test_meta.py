"""The meta-package: lazy re-exports, the spec's names, and the ImportError for a missing extra."""

import importlib
import importlib.metadata as md
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

import autotimm

ROOT = Path(__file__).resolve().parents[2]
SPEC_NAMES = {
    "AutoTrainer",
    "DetectionDataModule",
    "ImageClassifier",
    "ImageDataModule",
    "LoggerConfig",
    "LoggerManager",
    "LoggingConfig",
    "MetricConfig",
    "ObjectDetector",
    "TunerConfig",
    "list_optimizers",
    "list_schedulers",
}
EXTRA_OF = {
    "ImageClassifier": ("autotimm_classification", "classification"),
    "ImageDataModule": ("autotimm_classification", "classification"),
    "ObjectDetector": ("autotimm_detection", "detection"),
    "DetectionDataModule": ("autotimm_detection", "detection"),
    "SemanticSegmentor": ("autotimm_segmentation", "segmentation"),
    "SegmentationDataModule": ("autotimm_segmentation", "segmentation"),
    "AutoTrainer": ("autotimm_trainer", "trainer"),
    "TunerConfig": ("autotimm_trainer", "trainer"),
}


def test_installed_autotimm_is_ours():
    """The registry's 'autotimm' is another project: ours is pinned to our core."""
    version = (ROOT / "VERSION").read_text().strip()
    dist = md.distribution("autotimm")
    assert dist.version == version
    assert f"autotimm-core=={version}" in dist.requires
    assert autotimm.__version__ == version
    assert hasattr(autotimm, "_EXPORTS")


def test_all_lists_the_spec_names():
    assert set(autotimm.__all__) >= SPEC_NAMES
    assert sorted(autotimm.__all__) == sorted(autotimm._EXPORTS)
    assert set(dir(autotimm)) >= SPEC_NAMES


def test_import_is_lazy():
    code = (
        "import sys, autotimm; "
        "heavy = [m for m in ('torch', 'autotimm_core', 'autotimm_classification', "
        "'autotimm_detection', 'autotimm_segmentation', 'autotimm_trainer', 'pytorch_lightning') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_core_names_resolve():
    from autotimm_core import list_optimizers

    assert autotimm.list_optimizers is list_optimizers
    assert "adamw" in autotimm.list_optimizers()["torch"]


@pytest.mark.parametrize("name", sorted(EXTRA_OF))
def test_task_names_resolve_or_name_the_extra(name):
    """With the package installed the name resolves; without it, the error says what to install.

    Which branch runs depends on the nox session: `meta` has no task package, `tests_all` has all.
    """
    module, extra = EXTRA_OF[name]
    if importlib.util.find_spec(module) is not None:
        assert getattr(autotimm, name) is getattr(importlib.import_module(module), name)
    else:
        with pytest.raises(ImportError, match=rf'pip install "\./packages/{extra}"'):
            getattr(autotimm, name)


@pytest.mark.parametrize("name", sorted(EXTRA_OF))
def test_missing_extra_message(monkeypatch, name):
    """Simulate the package being absent (None in sys.modules blocks the import)."""
    module, extra = EXTRA_OF[name]
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.delitem(autotimm.__dict__, name, raising=False)
    with pytest.raises(ImportError) as err:
        getattr(autotimm, name)
    msg = str(err.value)
    # From the repository, or the built wheel: never the registry's `autotimm`, another project.
    assert f'pip install "./packages/{extra}" in a clone of the AutoTimm repository' in msg
    version = (ROOT / "VERSION").read_text().strip()
    assert f'pip install "dist/{module}-{version}-py3-none-any.whl"' in msg
    assert f"needs the '{module.replace('_', '-')}' package" in msg
    assert "autotimm[" not in msg


def test_unknown_name_is_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        autotimm.Nope  # noqa: B018


def _public_names(package: str) -> list[str]:
    """A package's ``__all__`` read from its source (the package need not be installed)."""
    import ast

    init = ROOT / "packages" / package / "src" / f"autotimm_{package}" / "__init__.py"
    for node in ast.parse(init.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            getattr(t, "id", "") == "__all__" for t in node.targets
        ):
            return [e.value for e in node.value.elts if e.value != "__version__"]
    raise AssertionError(f"{init} has no __all__")


@pytest.mark.parametrize(
    ("package", "extra"),
    [
        ("core", None),
        ("classification", "classification"),
        ("detection", "detection"),
        ("segmentation", "segmentation"),
        ("trainer", "trainer"),
    ],
)
def test_every_public_name_of_every_package_is_re_exported(package, extra):
    for name in _public_names(package):
        assert autotimm._EXPORTS.get(name) == (f"autotimm_{package}", extra), name
