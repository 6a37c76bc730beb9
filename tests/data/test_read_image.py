import io

import numpy as np
import pytest
from PIL import Image

from hashret.data import BadImageError, read_image


def test_png_rgb_exact(tmp_path, build):
    arr = build.solid(3, h=6, w=7)
    path = tmp_path / "x.png"
    path.write_bytes(build.png_bytes(arr))
    out = read_image(path, channels=3, size=(6, 7))
    assert out.dtype == np.uint8 and out.shape == (6, 7, 3)
    np.testing.assert_array_equal(out, arr)
    np.testing.assert_array_equal(read_image(str(path), channels=3, size=(6, 7)), arr)


def test_grey_conversion_and_resize_from_bytes(build):
    arr = build.solid(5, h=6, w=7)
    data = build.png_bytes(arr)
    grey = read_image(data, channels=1, size=(6, 7))
    expected = np.asarray(Image.fromarray(arr).convert("L"))
    assert grey.shape == (6, 7, 1)
    np.testing.assert_array_equal(grey[..., 0], expected)
    small = read_image(data, channels=3, size=(3, 4))
    assert small.shape == (3, 4, 3)
    expected = np.asarray(Image.fromarray(arr).resize((4, 3), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(small, expected)
    assert read_image(data, channels=3, size=5).shape == (5, 5, 3)


def test_grey_image_as_rgb(build):
    arr = build.solid(1, channels=1)
    out = read_image(build.png_bytes(arr), channels=3, size=arr.shape[:2])
    assert out.shape == (4, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], arr[..., 0])


def test_garbage_bytes_and_files(tmp_path):
    with pytest.raises(ValueError, match="not a readable image"):
        read_image(b"this is not an image", channels=3, size=(4, 4))
    bad = tmp_path / "notes.jpg"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(BadImageError, match="notes.jpg"):
        read_image(bad, channels=3, size=(4, 4))


def test_truncated_png_names_the_file(tmp_path):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ValueError, match="cut.png"):
        read_image(path, channels=3, size=(64, 64))


def test_bad_arguments(tmp_path, build):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png", channels=3, size=(4, 4))
    with pytest.raises(ValueError, match="channels"):
        read_image(build.png_bytes(build.solid(0)), channels=2, size=(4, 4))
    with pytest.raises(ValueError, match="positive"):
        read_image(build.png_bytes(build.solid(0)), channels=3, size=(0, 4))
