"""The service's resource limits, in one dataclass, and the request-body limit.

:class:`ServeLimits` holds every bound the server enforces (``hashret serve`` fills it from
its flags; tests make small ones): body size, image pixels and decode memory, concurrent
decodes and their queue, per-client request rate, header / body / keep-alive timeouts and
open connections.

:class:`BodySizeLimit` is plain ASGI middleware: a request that announces a larger body
(``Content-Length``) is answered 413 before its body is read; a body without a length
(chunked) is counted as it streams through, and answered 413 as soon as it passes the
limit (nothing is buffered here). Either way the application never sees more than
``max_bytes``.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Default largest request body (an uploaded image with its form fields), bytes.
DEFAULT_MAX_UPLOAD_BYTES = 16 << 20
#: Default largest decoded image, pixels (width x height), checked from the header before decoding.
DEFAULT_MAX_PIXELS = 40_000_000
#: Default largest memory one decode may take (the decoded image and its converted copy), bytes.
DEFAULT_MAX_DECODED_BYTES = 128 << 20


@dataclass(frozen=True)
class ServeLimits:
    """Every resource bound of the service (``0`` for ``rate`` turns rate limiting off).

    Attributes:
        max_upload_bytes: largest request body (413 above it, before it is read).
        max_pixels: largest image (width x height) decoded, read from its header (413 above).
        max_decoded_bytes: largest memory one image's decode may take (413 above, before decoding).
        decode_workers: images decoded at once.
        decode_queue: uploads that may wait for a decode worker; beyond, 503 with Retry-After.
        max_batch: most decoded uploads encoded together in one forward pass (1: one at a time).
        batch_window: seconds the first upload of a batch waits for others to join it.
        encode_queue: decoded uploads that may wait for the model; beyond, 503 with Retry-After.
        rate: requests per second per client address (token bucket refill); 0 = unlimited.
        burst: bucket size: requests a client may send at once.
        header_timeout: seconds a connection has to send a complete request head (408, closed).
        body_timeout: seconds a request has to send its whole body (408, closed).
        keep_alive: seconds an idle keep-alive connection stays open.
        max_connections: open connections; beyond, a new one is answered 503 and closed.
        max_client_connections: open connections from one client address (same answer
            beyond), so one client cannot take every connection (raise it behind a proxy).
        log_interval: at most one log line per refusal class per this many seconds.
    """

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES
    decode_workers: int = 2
    decode_queue: int = 32
    max_batch: int = 32
    batch_window: float = 0.003
    encode_queue: int = 256
    rate: float = 50.0
    burst: int = 200
    header_timeout: float = 10.0
    body_timeout: float = 60.0
    keep_alive: float = 5.0
    max_connections: int = 256
    max_client_connections: int = 64
    log_interval: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_decoded_bytes", "decode_workers", "burst",
                     "max_connections", "max_client_connections", "max_batch", "encode_queue"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)!r}")
        if not 0 <= self.batch_window <= 1:
            raise ValueError(f"batch_window must be between 0 and 1 s (--batch-window-ms 0 .. 1000), got "
                             f"{self.batch_window!r}")
        if self.decode_queue < 0 or self.rate < 0:
            raise ValueError("decode_queue and rate must be >= 0 (rate 0 turns rate limiting off)")
        for name in ("header_timeout", "body_timeout", "keep_alive", "log_interval"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {getattr(self, name)!r}")


def json_body(status: int, detail: str) -> bytes:
    """An error body in the service's shape, ``{"detail", "status"}``, as bytes."""
    return json.dumps({"detail": detail, "status": status}).encode()


async def reply(send: Send, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """Answer with a JSON error and ask the client to close the connection."""
    body = json_body(status, detail)
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": body})


class BodySizeLimit:
    """ASGI middleware answering 413 to any request body over ``max_bytes``.

    Args:
        app: the wrapped application.
        max_bytes: largest body.
        on_refuse: called with (class, detail) for each refusal (the service's refusal log).
    """

    def __init__(self, app: ASGIApp, max_bytes: int,
                 on_refuse: Callable[[str, str], None] | None = None) -> None:
        self.app = app
        self.max_bytes = int(max_bytes)
        self.on_refuse = on_refuse or (lambda kind, detail: None)

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
                await reply(send, 400, "Content-Length is not a number")
                return
            if n > self.max_bytes:
                self.on_refuse("too-large", f"{n:,}-byte body")
                await reply(send, 413, self._too_large())
                return
            await self.app(scope, receive, send)
            return
        if b"transfer-encoding" not in headers:
            await self.app(scope, receive, send)
            return
        # a chunked body: count it as the application reads it; past the limit, answer 413,
        # tell the application the client left, and drop whatever it sends afterwards
        size, refused, started = 0, False, False

        async def counted_receive() -> Message:
            nonlocal size, refused
            if refused:
                return {"type": "http.disconnect"}
            msg = await receive()
            if msg["type"] == "http.request":
                size += len(msg.get("body", b""))
                if size > self.max_bytes:
                    refused = True
                    if not started:
                        self.on_refuse("too-large", f"chunked body over {self.max_bytes:,} bytes")
                        await reply(send, 413, self._too_large())
                    return {"type": "http.disconnect"}
            return msg

        async def guarded_send(msg: Message) -> None:
            nonlocal started
            if refused:
                return
            started = True
            await send(msg)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not refused:
                raise
