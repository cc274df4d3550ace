from pathlib import Path

import pytest

from autotimm_core.validation import check_choice


def test_check_choice_returns_valid_value():
    assert check_choice("mode", "max", ("max", "min")) == "max"


def test_check_choice_names_parameter_and_choices():
    with pytest.raises(ValueError, match=r"^mode must be one of \['max', 'min'\], got 'maximum'$"):
        check_choice("mode", "maximum", ("max", "min"))


def test_missing_optional_package_names_the_extra_to_install_quoted():
    from autotimm_core._imports import require

    with pytest.raises(ImportError) as err:
        require("autotimm_no_such_module", "autotimm-core[tensorboard]", purpose="the logger")
    message = str(err.value)
    assert "needed for the logger" in message
    assert "'autotimm-core[tensorboard]'" in message
    # Ours is not on the public registry: its folder in the repository, or the built wheel;
    # brackets quoted for a shell.
    assert 'pip install "./packages/core[tensorboard]" in a clone of the AutoTimm' in message
    version = (Path(__file__).resolve().parents[2] / "VERSION").read_text().strip()
    assert f'pip install "dist/autotimm_core-{version}-py3-none-any.whl[tensorboard]"' in message
    with pytest.raises(ImportError, match=r"pip install autotimm_no_such_module$"):
        require("autotimm_no_such_module")
