import pytest

from autotimm_core.validation import check_choice


def test_check_choice_returns_valid_value():
    assert check_choice("mode", "max", ("max", "min")) == "max"


def test_check_choice_names_parameter_and_choices():
    with pytest.raises(ValueError, match=r"^mode must be one of \['max', 'min'\], got 'maximum'$"):
        check_choice("mode", "maximum", ("max", "min"))
