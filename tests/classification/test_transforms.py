import pytest
import torch

from autotimm_classification import build_classification_transform
from autotimm_core.data import PRESETS, DataConfig, normalize_images


@pytest.mark.parametrize("backend", ["torchvision", "albumentations"])
@pytest.mark.parametrize("preset", PRESETS)
def test_every_preset_gives_normalized_float_images_of_the_size(backend, preset):
    image = torch.randint(0, 256, (3, 45, 60), dtype=torch.uint8)
    for train in (True, False):
        out = build_classification_transform(train, image_size=32, preset=preset, backend=backend)(
            image
        )
        assert out.shape == (3, 32, 32) and out.dtype == torch.float32


@pytest.mark.parametrize("backend", ["torchvision", "albumentations"])
def test_eval_is_deterministic_and_normalizes_last(backend):
    image = torch.full((3, 40, 50), 128, dtype=torch.uint8)
    tf = build_classification_transform(
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
    raw = build_classification_transform(True, normalize=False, **kw)(image)
    assert raw.shape == (3, 32, 32) and raw.dtype == torch.uint8
    normalized = build_classification_transform(False, **kw)(image)
    uint8 = build_classification_transform(False, normalize=False, **kw)(image)
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
    tf = build_classification_transform(True, normalize=False, **kw)
    found = False
    for _ in range(60):
        out = tf(image)
        found |= bool((out == fill).all(0).any())
    assert found


def _white_pixels(tf, image: torch.Tensor, draws: int) -> set[int]:
    torch.manual_seed(0)
    return {int((tf(image) > 128).all(0).sum()) for _ in range(draws)}


@pytest.mark.parametrize("backend", ["torchvision", "albumentations"])
def test_default_preset_keeps_the_scale_of_small_images(backend):
    # A white square in the middle of a black image: a scale-keeping crop (the "light" pipeline,
    # what "default" is at image_size <= 64) shows it as large as the evaluation transform does,
    # every time; a random-resized crop (the "default" at larger sizes) zooms it in and out.
    def square(side: int) -> torch.Tensor:
        image = torch.zeros((3, side, side), dtype=torch.uint8)
        image[:, side * 3 // 8 : side * 5 // 8, side * 3 // 8 : side * 5 // 8] = 255
        return image

    kw = {"backend": backend, "normalize": False}
    small, large = square(32), square(224)
    eval_small = _white_pixels(build_classification_transform(False, image_size=32, **kw), small, 1)
    default_small = build_classification_transform(True, image_size=32, preset="default", **kw)
    assert _white_pixels(default_small, small, 30) == eval_small
    default_large = build_classification_transform(True, image_size=224, preset="default", **kw)
    assert len(_white_pixels(default_large, large, 30)) > 1


def test_train_default_preset_augments():
    image = torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)
    tf = build_classification_transform(True, image_size=32, preset="default")
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
        ({"mean": (0.5, 0.5)}, r"mean needs 3 numbers \(R, G, B\)"),
    ],
)
def test_bad_arguments_name_the_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_classification_transform(True, **kwargs)


@pytest.mark.parametrize("backend", ["torchvision", "albumentations"])
def test_a_data_config_gives_size_mean_and_std_and_keywords_replace_them(backend):
    image = torch.full((3, 40, 50), 128, dtype=torch.uint8)
    cfg = DataConfig(image_size=16, mean=(0.5, 0.25, 0.0), std=(0.5, 0.5, 0.5), crop_pct=1.0)
    out = build_classification_transform(False, cfg, backend=backend)(image)
    expected = (torch.tensor([128 / 255 - 0.5, 128 / 255 - 0.25, 128 / 255]) / 0.5).view(3, 1, 1)
    assert out.shape == (3, 16, 16)
    assert torch.allclose(out, expected.expand_as(out), atol=1e-3)
    resized = build_classification_transform(False, cfg, backend=backend, image_size=8)(image)
    assert resized.shape == (3, 8, 8)
    # crop_pct=1.0 keeps the whole short side: a 40x50 image of 16 px is resized, not cropped
    ramp = torch.arange(50, dtype=torch.uint8).repeat(3, 40, 1) * 5
    kept = build_classification_transform(False, cfg, backend=backend, normalize=False)(ramp)
    cropped = build_classification_transform(
        False, cfg, backend=backend, normalize=False, crop_pct=0.5
    )(ramp)
    assert kept.dtype == torch.uint8 and int(kept[0, 0, 0]) < int(cropped[0, 0, 0])


def test_the_default_config_is_timms_imagenet_one():
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

    tf = build_classification_transform(False)
    normalize = tf.transforms[-1]
    assert tuple(normalize.mean) == IMAGENET_DEFAULT_MEAN
    assert tuple(normalize.std) == IMAGENET_DEFAULT_STD
    assert tf(torch.zeros(3, 300, 400, dtype=torch.uint8)).shape == (3, 224, 224)
    assert tf.transforms[0].size == [256]  # 224 / 0.875


def test_a_letterbox_config_is_refused_naming_resize_mode():
    with pytest.raises(ValueError, match="resize_mode='crop', got resize_mode='letterbox'"):
        build_classification_transform(False, DataConfig(resize_mode="letterbox"))


def test_albumentations_missing_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "albumentations", None)  # import now fails
    with pytest.raises(ImportError, match=r"autotimm-classification\[albumentations\]"):
        build_classification_transform(True, backend="albumentations")
    # the torchvision backend never imports it
    assert build_classification_transform(True)(torch.zeros(3, 8, 8, dtype=torch.uint8)).shape


def test_albumentations_augmentation_follows_torch_seed():
    """Seeded from torch's generator: seed_everything (and a resumed checkpoint's generator
    state) reproduce the albumentations backend's augmentation, which draws from its own."""
    tf = build_classification_transform(
        True, image_size=32, preset="strong", backend="albumentations", normalize=False
    )
    image = torch.randint(0, 256, (3, 40, 48), dtype=torch.uint8)
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append([tf(image) for _ in range(4)])
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    assert not all(torch.equal(runs[0][0], x) for x in runs[0][1:])  # it does augment
