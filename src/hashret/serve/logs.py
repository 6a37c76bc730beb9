"""Logging that an attack cannot turn into a flood.

Every refusal (a bad Host, a cross-site write, a missing key, a rate-limited client, a full
decode queue, a timed-out connection, ...) is counted by :class:`RefusalLog`, which writes
at most one line per class per interval, saying how many it did not write. The access log
leaves refusals out (:class:`DropRefused`), and repeated server messages (``Invalid HTTP
request received.``, the event loop's ``accept`` errors) pass at most once per interval
(:class:`OncePerInterval`).
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger("hashret.serve")

#: Statuses a refusal answers with: left out of the access log (the refusal log counts them).
REFUSED_STATUSES = frozenset({400, 401, 403, 408, 413, 421, 429, 503, 507})


class RefusalLog:
    """Counts refusals by class; logs the first of a class, then at most one line per interval.

    Args:
        interval: seconds between two lines of one class.
        logger: where the lines go.
    """

    def __init__(self, interval: float = 10.0, logger: logging.Logger = log) -> None:
        self.interval = float(interval)
        self.logger = logger
        self.totals: dict[str, int] = {}
        self._pending: dict[str, int] = {}
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def note(self, kind: str, detail: str) -> None:
        """Count one refusal of class ``kind`` (``detail``: what was refused, for the log line)."""
        now = time.monotonic()
        with self._lock:
            self.totals[kind] = self.totals.get(kind, 0) + 1
            last = self._last.get(kind)
            if last is not None and now - last < self.interval:
                self._pending[kind] = self._pending.get(kind, 0) + 1
                return
            skipped = self._pending.pop(kind, 0)
            self._last[kind] = now
        more = f" (and {skipped} more in the last {now - last:.0f} s)" if skipped and last is not None else ""
        self.logger.warning("refused (%s): %s%s", kind, detail, more)

    def counts(self) -> dict[str, int]:
        """Refusals so far, by class."""
        with self._lock:
            return dict(self.totals)


class DropRefused(logging.Filter):
    """An access-log filter that leaves out refused requests (uvicorn's record args end with the status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and args and isinstance(args[-1], int):
            return args[-1] not in REFUSED_STATUSES
        return True


class OncePerInterval(logging.Filter):
    """Lets a given message template through at most once per ``interval`` seconds."""

    def __init__(self, interval: float = 10.0) -> None:
        super().__init__()
        self.interval = float(interval)
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.msg}"
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                return False
            if len(self._last) > 1000:
                self._last.clear()
            self._last[key] = now
        return True


def install_log_filters(interval: float) -> None:
    """Attach the filters to uvicorn's and the event loop's loggers (after uvicorn configured them)."""
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, DropRefused) for f in access.filters):
        access.addFilter(DropRefused())
    for name in ("uvicorn.error", "asyncio"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, OncePerInterval) for f in lg.filters):
            lg.addFilter(OncePerInterval(interval))
