"""Decoding single image files with Pillow (shared by the folder reader and queries)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: Pillow modes that hold one grey band (with or without alpha).
GREY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


class BadImageError(ValueError):
    """A file that Pillow cannot decode (not an image, truncated, or corrupt)."""


def decode_image(data: bytes, name: str) -> Image.Image:
    """Decode an encoded image (JPEG, PNG, ...) fully into memory.

    Args:
        data: the file's bytes.
        name: what to call the file in an error message (its path).

    Raises:
        BadImageError: (a ``ValueError``) naming ``name`` when it is not a readable image.
    """
    try:
        img = Image.open(io.BytesIO(data))
        img.load()  # decode now, so a truncated file fails here and not later
    except UnidentifiedImageError:
        raise BadImageError(f"{name} is not a readable image (not a format Pillow knows: PNG, JPEG, GIF, "
                            f"BMP, TIFF, WebP, ...); replace or delete it") from None
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise BadImageError(
            f"{name} is not a readable image ({type(e).__name__}: {_without_reprs(e)}); "
            "replace or delete the file"
        ) from e
    return img


def _without_reprs(e: BaseException) -> str:
    """An exception's text without object reprs such as ``<_io.BytesIO object at 0x7f...>``."""
    return re.sub(r"<[\w.]+ object at 0x[0-9a-f]+>", "the file", str(e)) or "no details"


def is_grey(img: Image.Image) -> bool:
    """Whether a decoded image is greyscale by its mode (``L``, ``1``, ``I;16``, ...)."""
    return img.mode in GREY_MODES


#: what a transparent pixel is shown on before the alpha channel is dropped (white, as a
#: browser or an image viewer shows it)
BACKGROUND = (255, 255, 255)
#: the EXIF tag saying how a stored image is to be turned for display (1: as stored)
EXIF_ORIENTATION = 0x0112


def _to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit / 32-bit integer or float grey image as 8-bit ``L``, scaled (not clipped):
    integer images by their type's range (16-bit: /257), float images from [0, 1] or [0, 255]."""
    a = np.asarray(img)
    if a.dtype.kind == "f":
        a = np.nan_to_num(a.astype(np.float64))
        a = a * 255.0 if a.size and a.max() <= 1.0 else a
    elif a.dtype.itemsize > 1:
        top = 65535.0 if img.mode.startswith("I;16") or (a.size and 0 <= a.min() and a.max() <= 65535) \
            else float(np.iinfo(a.dtype).max)
        a = a.astype(np.float64) * (255.0 / top)
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")


def _flatten_alpha(img: Image.Image) -> Image.Image:
    """Composite an image with transparency onto :data:`BACKGROUND` (RGBA or LA result)."""
    rgba = img.convert("RGBA")
    back = Image.new("RGBA", rgba.size, (*BACKGROUND, 255))
    return Image.alpha_composite(back, rgba).convert("RGB")


def image_to_array(img: Image.Image, mode: str, size: tuple[int, int] | None = None,
                   notes: list[str] | None = None) -> np.ndarray:
    """Convert a decoded image to ``mode`` (``"L"`` or ``"RGB"``) and optionally resize it.

    The one conversion every image goes through (training, indexing, queries, uploads):
    turned upright by its EXIF orientation (phone photos are stored rotated), transparency
    composited onto :data:`BACKGROUND`, 16-bit and float images scaled to 8 bits, then
    converted to ``mode`` and resized.

    Args:
        img: a decoded Pillow image (any mode: 1, L, P, RGB, RGBA, LA, CMYK, YCbCr, I;16, I, F...).
        mode: ``"L"`` (grey) or ``"RGB"``.
        size: ``(h, w)`` to resize to with bilinear interpolation, or None to keep the size.
        notes: when given, a line is appended for each change that alters what the model sees
            (rotated, alpha dropped, colour converted, resized), for the user.

    Returns:
        ``uint8[h, w]`` for ``"L"`` or ``uint8[h, w, 3]`` for ``"RGB"``.
    """
    say = notes.append if notes is not None else (lambda _line: None)
    if img.getexif().get(EXIF_ORIENTATION, 1) in range(2, 9):
        say("turned upright by its EXIF orientation")
        img = ImageOps.exif_transpose(img)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        say(f"transparent pixels shown on white (mode {img.mode})")
        img = _flatten_alpha(img)
    if img.mode.startswith("I") or img.mode == "F":
        say(f"{img.mode} pixels scaled to 8 bits")
        img = _to_8bit(img)
    if img.mode != mode:
        if is_grey(img) != (mode == "L") and not (img.mode == "P" and mode == "RGB"):
            say("converted colour to grey" if mode == "L" else "converted grey to colour (3 equal channels)")
        img = img.convert(mode)
    if size is not None and img.size != (size[1], size[0]):  # PIL sizes are (w, h)
        say(f"resized from {img.size[0]}x{img.size[1]} to {size[1]}x{size[0]} px (w x h)")
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def check_size(size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    """Normalise an image size: ``None``, a side ``s`` (square) or ``(h, w)`` -> ``(h, w)``.

    Raises:
        ValueError: the size is not one or two positive integers.
    """
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        size = (int(size), int(size))
    try:
        h, w = (int(v) for v in size)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(
            f"image size must be a side length or (height, width), got {size!r}"
        ) from None
    if h <= 0 or w <= 0:
        raise ValueError(f"image size must be positive, got (h, w) = ({h}, {w})")
    return h, w


def read_image(
    path_or_bytes: str | Path | bytes, *, channels: int, size: int | tuple[int, int],
    notes: list[str] | None = None,
) -> np.ndarray:
    """Read one image file as a model input (for queries).

    Args:
        path_or_bytes: a path to an image file, or the file's bytes.
        channels: 1 (converted to grey, ``"L"``) or 3 (converted to ``"RGB"``).
        size: ``(h, w)`` (or one side for a square) to resize to, bilinear.
        notes: filled with what was changed to fit the model (see :func:`image_to_array`).

    Returns:
        ``uint8[h, w, channels]``.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: ``channels`` or ``size`` is invalid, or the file is not a readable image
            (:class:`BadImageError`, naming the file).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    hw = check_size(size)
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        data, name = bytes(path_or_bytes), "<image bytes>"
    else:
        path = Path(path_or_bytes)
        if not path.is_file():
            raise FileNotFoundError(f"image file {path} does not exist (or is not a file)")
        data, name = path.read_bytes(), str(path)
    arr = image_to_array(decode_image(data, name), "L" if channels == 1 else "RGB", hw, notes)
    return arr[:, :, None] if channels == 1 else arr
