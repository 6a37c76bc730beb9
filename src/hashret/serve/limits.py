"""Request limits: the largest body the server reads, the largest image it decodes.

:class:`BodySizeLimit` is plain ASGI middleware: a request that announces a larger body
(``Content-Length``) is answered 413 before its body is read; a body without a length
(chunked) is read up to the limit and answered 413 as soon as it passes it. Either way
the application never sees more than ``max_bytes``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from hashret.serve.errors import TooLarge

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Default largest request body (an uploaded image with its form fields), bytes.
DEFAULT_MAX_UPLOAD_BYTES = 16 << 20
#: Default largest decoded image, pixels (width x height), checked from the header before decoding.
DEFAULT_MAX_PIXELS = 40_000_000


async def _reply(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail, "status": status}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """ASGI middleware answering 413 to any request body over ``max_bytes``."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)

    def _too_large(self) -> str:
        return (f"request body over the limit of {self.max_bytes:,} bytes: send a smaller image "
                "(the server's --max-upload-mb sets the limit)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                n = int(length)
            except ValueError:
                await _reply(send, 400, "Content-Length is not a number")
                return
            if n > self.max_bytes:
                await _reply(send, 413, self._too_large())
                return
            await self.app(scope, receive, send)
            return
        if b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        # a chunked body: read it here, up to the limit, then replay it to the application
        chunks, size, more = [], 0, True
        while more:
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _reply(send, 413, self._too_large())
                return
            chunks.append(chunk)
            more = msg.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def check_pixels(data: bytes, max_pixels: int) -> None:
    """Refuse an image whose header declares more than ``max_pixels`` pixels, before decoding it.

    Undecodable data passes: decoding reports it with a clearer message.

    Raises:
        TooLarge: the image is larger than ``max_pixels``.
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            w, h = img.size
    except Image.DecompressionBombError as e:
        raise TooLarge(f"image over Pillow's decompression-bomb limit ({e}): send a smaller image") from e
    except Exception:  # noqa: BLE001 - not an image: model.read says why
        return
    if w * h > max_pixels:
        raise TooLarge(f"image of {w}x{h} pixels is over the limit of {max_pixels:,} pixels: "
                       "send a smaller image")
