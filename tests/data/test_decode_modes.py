"""Every image a user has decodes to what a viewer shows: EXIF orientation, transparency on
white, 16-bit and float scaled, CMYK / palette / 1-bit; and the changes are reported."""

import io

import numpy as np
import pytest
from PIL import Image

from hashret.data import BadImageError, read_image
from hashret.data.image import BACKGROUND, EXIF_ORIENTATION


def _bytes(img, fmt="PNG", **kw):
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_exif_orientation_is_applied():
    """A phone stores a portrait photo as landscape plus 'rotate 90' in EXIF (orientation 6)."""
    stored = np.zeros((8, 16), np.uint8)
    stored[:2, :] = 255  # white top rows as stored
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[EXIF_ORIENTATION] = 6  # display = rotate 90 degrees clockwise
    notes = []
    out = read_image(_bytes(img, "JPEG", exif=exif.tobytes(), quality=100), channels=1, size=(16, 8),
                     notes=notes)
    assert out.shape == (16, 8, 1)
    # the stored top rows are the displayed right columns
    assert out[:, -1, 0].mean() > 200 and out[:, 0, 0].mean() < 60
    assert notes == ["turned upright by its EXIF orientation"]


def test_transparency_is_shown_on_white():
    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[0, 0] = (0, 0, 0, 255)  # opaque black
    rgba[0, 1] = (0, 0, 0, 0)    # fully transparent
    rgba[1, :] = (200, 100, 0, 128)  # half transparent orange
    notes = []
    out = read_image(_bytes(Image.fromarray(rgba, "RGBA")), channels=3, size=(2, 2), notes=notes)
    assert tuple(out[0, 0]) == (0, 0, 0)
    assert tuple(out[0, 1]) == BACKGROUND
    np.testing.assert_allclose(out[1, 0], [(200 * 128 + 255 * 127) / 255, (100 * 128 + 255 * 127) / 255,
                                           255 * 127 / 255], atol=1)
    assert notes == ["transparent pixels shown on white (mode RGBA)"]


def test_a_digit_drawn_only_in_the_alpha_channel_is_visible():
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 3:5, 3] = 255  # black ink where alpha is set, transparent elsewhere
    out = read_image(_bytes(Image.fromarray(rgba, "RGBA")), channels=1, size=(8, 8))
    assert out[3, 3, 0] == 0 and out[0, 0, 0] == 255


def test_16_bit_grey_is_scaled_not_clipped():
    a = np.array([[0, 257 * 100], [65535, 30000]], np.uint16)
    notes = []
    out = read_image(_bytes(Image.fromarray(a)), channels=1, size=(2, 2), notes=notes)
    np.testing.assert_array_equal(out[..., 0], [[0, 100], [255, round(30000 / 257)]])
    assert any("scaled to 8 bits" in n for n in notes)


def test_float_image_in_unit_range():
    img = Image.fromarray(np.array([[0.0, 0.5], [1.0, 0.25]], np.float32), "F")
    out = read_image(_bytes(img, "TIFF"), channels=1, size=(2, 2))
    np.testing.assert_array_equal(out[..., 0], [[0, 128], [255, 64]])


@pytest.mark.parametrize("mode", ["CMYK", "P", "1", "LA", "YCbCr", "I"])
def test_every_mode_decodes(mode):
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8))
    img = rgb.convert(mode)
    fmt = "JPEG" if mode in ("CMYK", "YCbCr") else ("TIFF" if mode == "I" else "PNG")
    for channels in (1, 3):
        out = read_image(_bytes(img, fmt), channels=channels, size=(5, 6))
        assert out.shape == (5, 6, channels) and out.dtype == np.uint8


def test_notes_say_resize_and_colour_conversion():
    notes = []
    read_image(_bytes(Image.new("RGB", (40, 30), (10, 200, 30))), channels=1, size=(28, 28), notes=notes)
    assert notes == ["converted colour to grey", "resized from 40x30 to 28x28 px (w x h)"]
    notes = []
    read_image(_bytes(Image.new("L", (28, 28), 9)), channels=1, size=(28, 28), notes=notes)
    assert notes == []


def test_unreadable_messages_have_no_object_reprs(tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_bytes(b"hello, I am text")
    with pytest.raises(BadImageError) as e:
        read_image(bad, channels=1, size=8)
    assert str(bad) in str(e.value) and "object at 0x" not in str(e.value)
    truncated = _bytes(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")[:60]
    with pytest.raises(BadImageError) as e:
        read_image(truncated, channels=3, size=8)
    assert "object at 0x" not in str(e.value) and "on_bad_image" not in str(e.value)
