"""Per-client rate limiting: one token bucket per client address, 429 with Retry-After when empty.

A client may send ``burst`` requests at once and ``rate`` per second after that. The
page, its static files and ``/health`` are not counted. Buckets are keyed by the
connection's address: behind a reverse proxy every client shares the proxy's address,
so limit there instead (and pass ``rate=0`` here). At most ``max_clients`` buckets are
kept; when more clients appear, the buckets that have refilled completely (idle clients)
are dropped first.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from hashret.serve.limits import ASGIApp, Receive, Scope, Send, reply

_EXEMPT = ("/", "/health")


class TokenBuckets:
    """``rate`` tokens per second up to ``burst``, per key.

    Args:
        rate: refill, tokens per second (> 0).
        burst: bucket size.
        max_clients: most buckets kept.
        clock: seconds, monotonic (a parameter so tests can step time).
    """

    def __init__(self, rate: float, burst: int, *, max_clients: int = 10_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError(f"rate must be > 0 and burst >= 1, got rate={rate!r}, burst={burst!r}")
        self.rate, self.burst, self.max_clients, self.clock = float(rate), int(burst), max_clients, clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Take one token for ``key``: 0.0 when granted, else the seconds until one is available."""
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                self._store(key, tokens - 1.0, now)
                return 0.0
            self._store(key, tokens, now)
            return (1.0 - tokens) / self.rate

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self.max_clients:
            full = [k for k, (t, a) in self._buckets.items() if t + (now - a) * self.rate >= self.burst]
            for k in full or list(self._buckets)[: len(self._buckets) // 2]:
                del self._buckets[k]
        self._buckets[key] = (tokens, now)


class RateLimit:
    """ASGI middleware answering 429 (with Retry-After, whole seconds) to a client over its rate.

    Args:
        app: the wrapped application.
        buckets: the token buckets.
        on_refuse: called with (class, detail) for each refusal.
    """

    def __init__(self, app: ASGIApp, buckets: TokenBuckets,
                 on_refuse: Callable[[str, str], None] | None = None) -> None:
        self.app = app
        self.buckets = buckets
        self.on_refuse = on_refuse or (lambda kind, detail: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in _EXEMPT or path.startswith("/static/"):
            await self.app(scope, receive, send)
            return
        client = (scope.get("client") or ("unknown",))[0]
        wait = self.buckets.take(client)
        if wait > 0:
            self.on_refuse("rate-limited", f"{scope['method']} {path} from {client}")
            await reply(send, 429, f"too many requests from {client}: at most {self.buckets.rate:g} per "
                        f"second (bursts of {self.buckets.burst}); retry in {wait:.1f} s",
                        {"Retry-After": str(max(1, math.ceil(wait)))})
            return
        await self.app(scope, receive, send)
