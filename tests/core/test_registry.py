"""The one registry type behind backbones, optimizers, schedulers, metrics and task classes."""

import pytest

from autotimm_core.registry import Registry, close_matches, unknown_name_error


def _colors(**kw):
    reg = Registry("color", "autotimm.list_colors", **kw)
    reg.register("red", 1, aliases=["rouge"])
    reg.register("green", 2)
    reg.register("blue", 3)
    return reg


def test_lookup_ignores_case_and_follows_aliases():
    reg = _colors()
    assert reg.get("RED") == 1 and reg.get(" Rouge ") == 1
    assert reg.resolve("rouge") == "red"
    assert "GREEN" in reg and "purple" not in reg and 5 not in reg
    assert reg.names() == ["blue", "green", "red"]
    assert reg.names(aliases=True) == ["blue", "green", "red", "rouge"]
    assert reg.names("*r*") == ["green", "red"]
    assert reg.aliases() == {"rouge": "red"}
    assert list(reg.items()) == [("blue", 3), ("green", 2), ("red", 1)]
    assert len(reg) == 3


def test_unknown_name_suggests_close_matches_and_lists_few_names():
    with pytest.raises(ValueError) as err:
        _colors().get("gren")
    msg = str(err.value)
    assert msg.startswith("Unknown color 'gren'. Did you mean: green")  # best match first
    assert "Valid names: blue, green, red, rouge." in msg


def test_empty_or_non_string_name_is_refused_naming_the_kind():
    for bad in ("", "  ", None, 3):
        with pytest.raises(ValueError, match=r"color must be a non-empty name"):
            _colors().get(bad)


def test_many_names_point_to_the_lister_or_count_them():
    names = [f"name{i:03d}" for i in range(50)]
    msg = str(unknown_name_error("widget", "nmae001", names, "autotimm.list_widgets"))
    assert "Did you mean: name001" in msg
    assert msg.endswith("See autotimm.list_widgets() for all 50 names.")
    msg = str(unknown_name_error("widget", "x", names, None, hint="Try harder."))
    assert msg == "Unknown widget 'x'. (50 names are known.) Try harder."


def test_close_matches_ignore_case_and_keep_the_registered_spelling():
    assert close_matches("acuracy", ["Accuracy", "F1Score"]) == ["Accuracy"]
    assert close_matches("ACCURACY", ["Accuracy"]) == ["Accuracy"]
    assert close_matches("zzz", ["Accuracy"]) == []
    assert len(close_matches("resnet", [f"resnet{i}" for i in range(20)])) == 5


def test_case_sensitive_registry_keeps_case_in_names_and_patterns():
    reg = Registry("task", None, normalize=str.strip)
    reg.register("ImageClassifier", object)
    assert reg.names("Image*") == ["ImageClassifier"]
    assert "imageclassifier" not in reg
    with pytest.raises(ValueError, match=r"Did you mean: ImageClassifier\?"):
        reg.get("imageclassifier")


def test_custom_normalize_and_alias():
    reg = Registry("optimizer", None, normalize=lambda n: n.strip().lower().replace("_", ""))
    reg.register("adamw", "A")
    reg.add_alias("adam_decoupled", "adamw")
    assert reg.get("Adam_W") == "A" and reg.get("adamdecoupled") == "A"


def test_loader_runs_once_on_first_use_and_is_retried_after_a_failure():
    calls = []

    def loader(reg):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("package broken")
        reg.register("one", 1)

    reg = Registry("thing", None, loader=loader)
    assert calls == []  # creating the registry loads nothing
    with pytest.raises(RuntimeError, match="package broken"):
        reg.names()
    assert reg.get("one") == 1 and reg.names() == ["one"] and len(reg) == 1
    assert calls == [1, 1]
