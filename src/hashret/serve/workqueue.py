"""A bounded queue for the expensive work (decoding and encoding uploads).

At most ``workers`` uploads are decoded and encoded at once; up to ``depth`` more wait
their turn; any further one is answered 503 with ``Retry-After`` at once instead of
growing the line (and the memory it holds). Admission is decided on the event loop, before
the upload's bytes are read into memory or a worker thread is taken.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hashret.serve.errors import Busy


class WorkQueue:
    """``async with queue.slot(): ...`` runs the body with one of ``workers`` slots.

    Args:
        workers: bodies running at once.
        depth: callers that may wait for a slot; one more gets :class:`Busy`.
        retry_after: seconds the 503 tells the client to wait.
    """

    def __init__(self, workers: int, depth: int, *, retry_after: int = 1) -> None:
        self.workers, self.depth, self.retry_after = int(workers), int(depth), int(retry_after)
        self._sem: asyncio.Semaphore | None = None
        self.admitted = 0  # running + waiting

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Raises :class:`Busy` (503) when ``workers + depth`` callers are already in."""
        if self._sem is None:  # made on first use, inside the server's event loop
            self._sem = asyncio.Semaphore(self.workers)
        if self.admitted >= self.workers + self.depth:
            raise Busy(f"the server is busy ({self.workers} images being decoded, {self.depth} waiting): "
                       f"retry in {self.retry_after} s", headers={"Retry-After": str(self.retry_after)})
        self.admitted += 1
        try:
            async with self._sem:
                yield
        finally:
            self.admitted -= 1
