"""Decoding single image files with Pillow (shared by the folder reader and queries)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

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
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
        raise BadImageError(
            f"{name} is not a readable image ({type(e).__name__}: {e}); "
            "replace or delete the file (folder datasets can skip it with on_bad_image='skip')"
        ) from e
    return img


def is_grey(img: Image.Image) -> bool:
    """Whether a decoded image is greyscale by its mode (``L``, ``1``, ``I;16``, ...)."""
    return img.mode in GREY_MODES


def image_to_array(img: Image.Image, mode: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Convert a decoded image to ``mode`` (``"L"`` or ``"RGB"``) and optionally resize it.

    Args:
        img: a decoded Pillow image.
        mode: ``"L"`` (grey) or ``"RGB"``.
        size: ``(h, w)`` to resize to with bilinear interpolation, or None to keep the size.

    Returns:
        ``uint8[h, w]`` for ``"L"`` or ``uint8[h, w, 3]`` for ``"RGB"``.
    """
    if img.mode != mode:
        img = img.convert(mode)
    if size is not None and img.size != (size[1], size[0]):  # PIL sizes are (w, h)
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
    path_or_bytes: str | Path | bytes, *, channels: int, size: int | tuple[int, int]
) -> np.ndarray:
    """Read one image file as a model input (for queries).

    Args:
        path_or_bytes: a path to an image file, or the file's bytes.
        channels: 1 (converted to grey, ``"L"``) or 3 (converted to ``"RGB"``).
        size: ``(h, w)`` (or one side for a square) to resize to, bilinear.

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
    arr = image_to_array(decode_image(data, name), "L" if channels == 1 else "RGB", hw)
    return arr[:, :, None] if channels == 1 else arr
