import pytest
import torch

from autotimm_classification.transforms import PRESETS, build_transform, normalize_images


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


@pytest.mark.parametrize("backend", ["torchvision", "albumentations"])
@pytest.mark.parametrize("preset", PRESETS)
def test_without_normalize_images_stay_uint8_and_normalize_to_the_same(backend, preset):
    image = torch.randint(0, 256, (3, 45, 60), dtype=torch.uint8)
    mean, std = (0.5, 0.25, 0.1), (0.2, 0.3, 0.4)
    kw = {"image_size": 32, "preset": preset, "backend": backend, "mean": mean, "std": std}
    raw = build_transform(True, normalize=False, **kw)(image)
    assert raw.shape == (3, 32, 32) and raw.dtype == torch.uint8
    normalized = build_transform(False, **kw)(image)
    uint8 = build_transform(False, normalize=False, **kw)(image)
    assert torch.allclose(normalize_images(uint8, mean, std), normalized, atol=1e-4)
    batch = torch.stack([uint8, uint8])
    assert torch.allclose(normalize_images(batch, mean, std)[1], normalized, atol=1e-4)
    assert normalize_images(normalized, mean, std) is normalized  # float: already normalized


@pytest.mark.parametrize("backend", ["torchvision", "albumentations"])
def test_random_erasing_fills_with_the_mean_colour(backend):
    # "strong" erases a patch with p=0.25 (60 tries: never erasing has odds 0.75**60 = 3e-8);
    # the patch must normalize to 0, the mean colour, as erasing a normalized image gives
    mean = (0.2, 0.4, 0.6)
    fill = torch.tensor([round(255 * m) for m in mean], dtype=torch.uint8).view(3, 1, 1)
    image = torch.full((3, 64, 64), 255, dtype=torch.uint8)  # white: no augmentation gives fill
    kw = {"image_size": 32, "preset": "strong", "backend": backend, "mean": mean}
    torch.manual_seed(0)
    tf = build_transform(True, normalize=False, **kw)
    found = False
    for _ in range(60):
        out = tf(image)
        found |= bool((out == fill).all(0).any())
    assert found


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
