"""Connection-level guards for uvicorn's h11 protocol: header and body deadlines, a connection cap.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) but has no deadline for
a request's head or body: a client that opens a connection and sends nothing, or sends its
headers (or its body) a byte at a time, holds a connection and a file descriptor for as
long as it likes. :func:`guarded_protocol` makes an ``H11Protocol`` subclass that

- gives every connection ``header_timeout`` seconds, from its opening (or from the end of
  its previous response), to send a complete request head;
- gives every request ``body_timeout`` seconds from its head to the end of its body;
- answers ``408`` (when no response has started) and closes the connection when either
  deadline passes (the application then sees the client leave);
- answers ``503`` and closes at once a connection beyond ``max_connections`` open ones, or
  beyond ``max_client_connections`` from one address, before reading from it, so file
  descriptors stay bounded and one client cannot take them all.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import get_remote_addr

from hashret.serve.logs import RefusalLog


def _raw_response(status: int, reason: str, detail: str, extra: str = "") -> bytes:
    body = json.dumps({"detail": detail, "status": status}).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"connection: close\r\n{extra}\r\n")
    return head.encode("latin-1") + body


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with deadlines and a connection cap (set by :func:`guarded_protocol`)."""

    header_timeout: float = 10.0
    body_timeout: float = 60.0
    max_connections: int = 256
    max_client_connections: int = 64
    refusals: RefusalLog | None = None

    def _note(self, kind: str, detail: str) -> None:
        if self.refusals is not None:
            who = f"{self.client[0]}:{self.client[1]}" if self.client else "?"
            self.refusals.note(kind, f"{who}: {detail}")

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._deadline: asyncio.TimerHandle | None = None
        self._seen: Any = None
        self.transport = transport
        self.client = get_remote_addr(transport)
        why = self._over_limit()
        self._refused = why is not None
        if why is not None:
            self._note("connections", why)
            transport.write(_raw_response(503, "Service Unavailable", "too many open connections: retry "
                                          "shortly", "retry-after: 1\r\n"))
            transport.close()
            return
        super().connection_made(transport)
        self._arm(self.header_timeout, "header")

    def _over_limit(self) -> str | None:
        if len(self.connections) >= self.max_connections:
            return f"{len(self.connections)} open (limit {self.max_connections})"
        if self.client is not None:
            addr = self.client[0]
            mine = sum(1 for c in self.connections if c.client is not None and c.client[0] == addr)
            if mine >= self.max_client_connections:
                return f"{mine} open from {addr} (limit {self.max_client_connections} per client)"
        return None

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._follow(idle=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._refused:
            return
        super().connection_lost(exc)

    # ------------------------------------------------------------------ deadlines
    def _follow(self, idle: bool = False) -> None:
        """Re-arm the deadline for the request state the connection is in now."""
        cycle = self.cycle
        if cycle is not None and cycle is not self._seen:  # a new request's head arrived
            self._seen = cycle
            if cycle.more_body:
                self._arm(self.body_timeout, "body")
            else:
                self._disarm()
        elif cycle is not None and not cycle.more_body and self._kind == "body":
            self._disarm()  # the body is complete
        elif idle:
            self._arm(self.header_timeout, "header")  # the next request's head has to come in time

    _kind = "header"

    def _arm(self, seconds: float, kind: str) -> None:
        self._disarm()
        self._kind = kind
        self._deadline = self.loop.call_later(seconds, self._expire, kind)

    def _disarm(self) -> None:
        if getattr(self, "_deadline", None) is not None:
            self._deadline.cancel()  # type: ignore[union-attr]
            self._deadline = None

    def _expire(self, kind: str) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        seconds = self.header_timeout if kind == "header" else self.body_timeout
        self._note(f"{kind}-timeout", f"request {kind} not complete within {seconds:g} s")
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            self.transport.write(_raw_response(408, "Request Timeout", f"the request's {kind} did not "
                                               f"arrive within {seconds:g} s: connection closed"))
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.close()


def guarded_protocol(*, header_timeout: float, body_timeout: float, max_connections: int,
                     max_client_connections: int, refusals: RefusalLog | None) -> type[GuardedH11Protocol]:
    """A :class:`GuardedH11Protocol` subclass with these settings, for ``uvicorn.Config(http=...)``."""
    return type("GuardedH11Protocol", (GuardedH11Protocol,), {
        "header_timeout": float(header_timeout), "body_timeout": float(body_timeout),
        "max_connections": int(max_connections), "max_client_connections": int(max_client_connections),
        "refusals": refusals})
