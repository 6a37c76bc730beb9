"""Decoding an uploaded image within a pixel limit and a memory budget, checked before decoding.

Pillow's ``Image.open`` reads only the file's header, so the image's size and mode are
known before any pixel is decoded. An image is refused (413) when its header declares more
than ``max_pixels`` pixels, or when decoding it would take more than ``max_decoded_bytes``:
Pillow keeps a decoded pixel in 1 byte (modes ``1``, ``L``, ``P``), 2 (``I;16``) or 4
(every other mode, RGB included), and the conversion to the model's ``L`` / ``RGB`` makes a
second copy. A JPEG over the budget is decoded at a reduced scale (``Image.draft``: 1/2,
1/4 or 1/8, done by the JPEG decoder itself) when that fits; otherwise it is refused too.
Within the budget the image is decoded exactly as :func:`hashret.data.image.read_image`
does (full size, then a bilinear resize), so an upload gets the code that indexing it gives.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from hashret.data.image import image_to_array
from hashret.serve.errors import BadUpload, TooLarge


def pixel_bytes(mode: str) -> int:
    """Bytes Pillow keeps per decoded pixel in ``mode``."""
    if mode in ("1", "L", "P"):
        return 1
    if mode.startswith("I;16"):
        return 2
    return 4


def decode_bytes(mode: str, size: tuple[int, int], target: str) -> int:
    """Memory to decode an image of ``size`` (w, h) in ``mode`` and convert it to ``target``."""
    w, h = size
    return w * h * (pixel_bytes(mode) + (pixel_bytes(target) if target != mode else 0))


def _unreadable(name: str, e: BaseException) -> BadUpload:
    return BadUpload(f"{name!r} is not a readable image ({type(e).__name__}): upload a complete image "
                     "file (PNG, JPEG, ...)")


def _within_budget(img: Image.Image, target: str, size: tuple[int, int], *, max_pixels: int,
                   max_decoded_bytes: int) -> None:
    """Refuse an opened (not decoded) image over the limits; may set a JPEG's draft scale."""
    width, height = img.size
    if width * height > max_pixels:
        raise TooLarge(f"image of {width}x{height} pixels is over the limit of {max_pixels:,} pixels: "
                       "send a smaller image")
    need = decode_bytes(img.mode, img.size, target)
    if need > max_decoded_bytes and img.format == "JPEG":
        img.draft(target, size)  # the decoder scales by 1/2, 1/4 or 1/8 (never below size)
        need = decode_bytes(img.mode, img.size, target)
    if need > max_decoded_bytes:
        raise TooLarge(f"image of {width}x{height} pixels ({img.mode}) needs about "
                       f"{need / 2**20:,.0f} MiB to decode, over the limit of "
                       f"{max_decoded_bytes / 2**20:,.0f} MiB: send a smaller image "
                       "(the server's --max-decode-mb sets the limit)")


def check_header(head: bytes, name: str, shape: tuple[int, int, int], *, max_pixels: int,
                 max_decoded_bytes: int) -> tuple[str, int, int] | None:
    """Refuse an upload over the limits from the first bytes of the file alone (a prefix is enough
    for PNG and most JPEG files); a prefix that does not parse passes (decoding checks again).

    Returns:
        ``(format, width, height)`` as the header declares them (format as Pillow names it, e.g.
        ``"PNG"``), or None when the prefix does not parse.

    Raises:
        TooLarge: over ``max_pixels`` or ``max_decoded_bytes``.
    """
    h, w, c = shape
    try:
        img = Image.open(io.BytesIO(head))
    except Image.DecompressionBombError as e:
        raise TooLarge(f"{name!r} is over Pillow's decompression-bomb limit: send a smaller image") from e
    except (OSError, ValueError, SyntaxError, EOFError):
        return None
    with img:
        declared = (str(img.format), *img.size)
        _within_budget(img, "L" if c == 1 else "RGB", (w, h), max_pixels=max_pixels,
                       max_decoded_bytes=max_decoded_bytes)
    return declared


def decode_upload(data: bytes, name: str, shape: tuple[int, int, int], *, max_pixels: int,
                  max_decoded_bytes: int, notes: list[str] | None = None) -> np.ndarray:
    """Decode an uploaded file to the model's input.

    Args:
        data: the file's bytes.
        name: the client's file name (for messages).
        shape: ``(h, w, c)`` the model's input shape, ``c`` 1 (grey) or 3 (RGB).
        max_pixels: largest width x height the header may declare.
        max_decoded_bytes: largest memory the decode may take (see the module docstring).
        notes: filled with what was changed to fit the model (:func:`hashret.data.image.image_to_array`).

    Returns:
        ``uint8[h, w, c]``.

    Raises:
        BadUpload: empty, not an image, or truncated (400).
        TooLarge: over ``max_pixels`` or ``max_decoded_bytes`` (413), before decoding.
    """
    if not data:
        raise BadUpload(f"{name!r} is empty (0 bytes): upload an image file (PNG, JPEG, ...)")
    h, w, c = shape
    target = "L" if c == 1 else "RGB"
    try:
        img = Image.open(io.BytesIO(data))  # reads the header only
    except Image.DecompressionBombError as e:
        raise TooLarge(f"{name!r} is over Pillow's decompression-bomb limit: send a smaller image") from e
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise _unreadable(name, e) from e
    with img:
        _within_budget(img, target, (w, h), max_pixels=max_pixels, max_decoded_bytes=max_decoded_bytes)
        try:
            img.load()
        except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as e:
            raise _unreadable(name, e) from e
        arr = image_to_array(img, target, (h, w), notes)
    return arr[:, :, None] if c == 1 else arr
