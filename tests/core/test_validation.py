from pathlib import Path

import pytest

from autotimm_core.validation import check_choice, check_num_classes, resolve_num_classes


def test_check_choice_returns_valid_value():
    assert check_choice("mode", "max", ("max", "min")) == "max"


def test_check_choice_names_parameter_and_choices():
    with pytest.raises(ValueError, match=r"^mode must be one of \['max', 'min'\], got 'maximum'$"):
        check_choice("mode", "maximum", ("max", "min"))


@pytest.mark.parametrize("bad", [0, -2, True, 2.0, "3"])
def test_check_num_classes_names_task_and_whether_none_is_valid(bad):
    with pytest.raises(
        ValueError, match=r"^Net: num_classes must be a positive int .*, or None to"
    ):
        check_num_classes("Net", bad)
    with pytest.raises(ValueError) as err:
        check_num_classes("Net", bad, optional=False)
    assert "or None" not in str(err.value) and str(err.value).endswith(f"got {bad!r}")
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        check_num_classes("Net", None, optional=False)
    assert check_num_classes("Net", None) is None
    assert check_num_classes("Net", 4, optional=False) == 4


def test_resolve_num_classes_takes_the_count_from_the_first_list_given():
    assert resolve_num_classes("Net", None) is None
    assert resolve_num_classes("Net", 3, class_names=None) == 3
    assert resolve_num_classes("Net", None, class_names=None, category_ids=[4, 7]) == 2
    assert resolve_num_classes("Net", None, class_names=["a", "b"], category_ids=[4, 7]) == 2
    with pytest.raises(ValueError, match=r"^Net: category_ids has 3 entries but num_classes=2$"):
        resolve_num_classes("Net", None, class_names=["a", "b"], category_ids=[1, 2, 3])
    with pytest.raises(ValueError, match=r"^Net: class_names has 1 entries but num_classes=5$"):
        resolve_num_classes("Net", 5, class_names=["a"])


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
