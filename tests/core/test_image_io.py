import numpy as np
import pytest
import torch
from PIL import Image

from autotimm_core.data import check_image_file, read_image_rgb


@pytest.fixture
def pixels() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("rgb.jpg", lambda a: Image.fromarray(a)),
        ("grey.png", lambda a: Image.fromarray(a[..., 0])),
        ("rgba.png", lambda a: Image.fromarray(np.dstack([a, a[..., :1]]))),
        ("palette.png", lambda a: Image.fromarray(a).convert("P")),
        ("grey16.png", lambda a: Image.fromarray(a[..., 0].astype(np.uint16) * 257)),
        ("rgb.bmp", lambda a: Image.fromarray(a)),
        ("grey16.tif", lambda a: Image.fromarray(a[..., 0].astype(np.uint16) * 257)),
    ],
)
def test_any_image_reads_as_rgb_uint8(tmp_path, pixels, name, make):
    path = tmp_path / name
    make(pixels).save(path)
    img = read_image_rgb(path)
    assert img.shape == (3, 20, 30) and img.dtype == torch.uint8
    if "grey" in name:
        # Grey copies to all three channels; 16-bit is scaled down, not clipped to 255.
        assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
        assert torch.equal(img[0], torch.from_numpy(pixels[..., 0]))
    elif name in ("rgb.bmp", "rgba.png"):
        assert torch.equal(img, torch.from_numpy(pixels).permute(2, 0, 1))


def test_broken_files_raise_oserror_naming_file_and_are_found_by_check(tmp_path, pixels):
    good = tmp_path / "good.jpg"
    Image.fromarray(pixels).save(good)
    png = tmp_path / "good.png"
    Image.fromarray(pixels).save(png)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:200])
    truncated_png = tmp_path / "truncated.png"
    truncated_png.write_bytes(png.read_bytes()[:-20])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    assert check_image_file(good) is None and check_image_file(png) is None
    assert "truncated JPEG" in check_image_file(truncated)
    assert "truncated PNG" in check_image_file(truncated_png)
    assert check_image_file(empty) == "empty file"
    assert "cannot identify" in check_image_file(junk)
    for bad in (truncated, empty, junk):
        with pytest.raises(OSError, match=bad.name):
            read_image_rgb(bad)
