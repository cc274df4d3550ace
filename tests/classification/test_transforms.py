import pytest
import torch

from autotimm_classification.transforms import PRESETS, build_transform


@pytest.mark.parametrize("backend", ["torchvision", "albumentations"])
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_gives_normalized_float_images_of_the_size(backend, preset):
    image = torch.randint(0, 256, (3, 45, 60), dtype=torch.uint8)
    for train in (True, False):
        out = build_transform(train, image_size=32, preset=preset, backend=backend)(image)
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32


@pytest.mark.parametrize("backend", ["torchvision", "albumentations"])
def test_eval_is_deterministic_and_normalizes_last(backend):
    image = torch.full((3, 40, 50), 128, dtype=torch.uint8)
    tf = build_transform(
        False, image_size=16, backend=backend, mean=(0.5, 0.25, 0.0), std=(0.5,) * 3
    )
    out = tf(image)
    expected = (torch.tensor([128 / 255 - 0.5, 128 / 255 - 0.25, 128 / 255]) / 0.5).view(3, 1, 1)
    assert torch.allclose(out, expected.expand_as(out), atol=1e-3)
    assert torch.equal(tf(image), out)


def test_train_default_preset_augments():
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    tf = build_transform(True, image_size=32, preset="default")
    assert not torch.equal(tf(image), tf(image))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"preset": "heavy"}, r"augmentation_preset must be one of \['none', 'light'"),
        (
            {"backend": "kornia"},
            r"transform_backend must be one of \['torchvision', 'albumentations'\]",
        ),
        ({"interpolation": "lanczos"}, "interpolation must be one of"),
        ({"image_size": 0}, "image_size must be a positive int"),
        ({"mean": (0.5, 0.5)}, "mean and std need 3 values"),
    ],
)
def test_bad_arguments_name_the_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_transform(True, **kwargs)
