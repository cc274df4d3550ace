import pytest
import torch

from autotimm_core import create_backbone, list_backbones


def test_list_backbones_filters_by_pattern():
    names = list_backbones("*resnet*")
    assert "resnet50" in names and "test_resnet" in names
    assert all("resnet" in n for n in names)
    assert len(list_backbones()) > len(names)


def test_list_backbones_pretrained_only_lists_tagged_names():
    names = list_backbones("resnet50*", pretrained_only=True)
    assert names and all("." in n for n in names)  # pretrained names carry their tag


def test_create_backbone_classifier_and_features():
    model = create_backbone("test_resnet", num_classes=7)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    feats = create_backbone("test_resnet", features_only=True, out_indices=(2, 3, 4))
    outs = feats(torch.randn(1, 3, 64, 64))
    assert [o.shape[-1] for o in outs] == [8, 4, 2]
    assert feats.feature_info.reduction() == [8, 16, 32]


def test_create_backbone_drops_none_kwargs():
    model = create_backbone("test_resnet", num_classes=3, drop_rate=None)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_tagged_name_is_accepted():
    model = create_backbone("resnet18.a1_in1k", pretrained=False, num_classes=2)
    assert model.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 2)


def test_unknown_backbone_lists_close_matches():
    with pytest.raises(ValueError) as err:
        create_backbone("resnet5O")
    msg = str(err.value)
    assert "Unknown backbone 'resnet5O'" in msg
    assert "resnet50" in msg
    close = msg.split("Did you mean: ")[1].split("?")[0].split(", ")
    assert 1 <= len(close) <= 5


def test_unknown_backbone_says_how_to_search():
    with pytest.raises(ValueError) as err:
        create_backbone("convnext_tinyy")
    msg = str(err.value)
    assert msg.startswith("Unknown backbone 'convnext_tinyy'. Did you mean: convnext_tiny")
    assert "list_backbones('*pattern*')" in msg and "'hf-hub:'" in msg
    with pytest.raises(ValueError, match=r"backbone must be a timm model name"):
        create_backbone("")


def test_hub_names_pass_the_name_check(monkeypatch):
    import timm

    seen = {}

    def fake_create(name, pretrained=False, **kw):
        seen["name"] = name
        return torch.nn.Identity()

    monkeypatch.setattr(timm, "create_model", fake_create)
    create_backbone("hf-hub:someone/some-model")
    assert seen["name"] == "hf-hub:someone/some-model"
