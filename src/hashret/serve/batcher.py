"""Micro-batching: concurrent uploads encoded together by one model thread.

Each upload's decoded image is handed to :meth:`MicroBatcher.submit`, which returns a
``concurrent.futures.Future`` at once (``await asyncio.wrap_future(f)`` on the event loop,
``f.result()`` elsewhere). One thread owns the model: it takes the first waiting image,
waits up to ``window`` seconds for others to arrive (never past ``max_batch``), encodes them
in one forward pass, and hands each caller its own row. While it encodes, new images queue,
so under load batches fill without waiting; alone, an image waits at most ``window``.

If a batch fails, its images are encoded one by one, so an error reaches only the caller
whose image caused it. At most ``max_pending`` images wait; one more is refused with
:class:`hashret.serve.errors.Busy` (503 with ``Retry-After``), as the decode queue does.
``max_batch=1`` is the plain one-at-a-time encoder (the model lock of before).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import numpy as np

from hashret.encode import Encoded
from hashret.serve.errors import Busy

#: Defaults: wait at most 3 ms for a batch to fill, at most 32 images per forward pass.
DEFAULT_WINDOW = 0.003
DEFAULT_MAX_BATCH = 32
DEFAULT_MAX_PENDING = 256


@dataclass
class _Item:
    image: np.ndarray  # uint8[h, w, c]
    future: Future


class MicroBatcher:
    """Encodes single images submitted from many threads in batches, on one thread.

    Args:
        encoder: anything with ``encode(uint8[n, h, w, c]) -> Encoded`` (an
            :class:`hashret.encoder.Encoder` or :class:`hashret.onnx_encoder.OnnxEncoder`).
        window: seconds the first image of a batch waits for others (0: take only what is queued).
        max_batch: most images in one forward pass (1: one at a time).
        max_pending: images that may wait; one more gets :class:`Busy`.
        retry_after: seconds the 503 tells the client to wait.
    """

    def __init__(self, encoder: Any, *, window: float = DEFAULT_WINDOW, max_batch: int = DEFAULT_MAX_BATCH,
                 max_pending: int = DEFAULT_MAX_PENDING, retry_after: int = 1) -> None:
        if max_batch < 1 or max_pending < 1 or window < 0:
            raise ValueError("max_batch and max_pending must be at least 1 and window >= 0 seconds")
        self.encoder = encoder
        self.window, self.max_batch, self.max_pending = float(window), int(max_batch), int(max_pending)
        self.retry_after = int(retry_after)
        self._queue: deque[_Item] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self.batches = 0  # forward passes run (for tests and the stats)
        self.encoded = 0  # images encoded
        self._thread = threading.Thread(target=self._loop, name="hashret-encoder", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ callers
    def submit(self, image: np.ndarray) -> Future:
        """Queue one ``uint8[h, w, c]`` image; the future gives ``Encoded`` with one row (codes
        ``uint8[1, nbytes]``, features ``float32[1, d]``, latent ``float32[1, bits]``) or the error.

        Raises:
            Busy: ``max_pending`` images are already waiting.
            RuntimeError: the batcher was closed.
        """
        image = np.asarray(image)
        if image.ndim != 3:
            raise ValueError(f"submit takes one image uint8[h, w, c], got shape {image.shape}")
        item = _Item(image, Future())
        with self._cond:
            if self._closed:
                raise RuntimeError("the encoder has been shut down")
            if len(self._queue) >= self.max_pending:
                raise Busy(f"the server is busy ({self.max_pending} images waiting to be encoded): retry in "
                           f"{self.retry_after} s", headers={"Retry-After": str(self.retry_after)})
            self._queue.append(item)
            self._cond.notify()
        return item.future

    def encode(self, images: np.ndarray) -> Encoded:
        """Encode ``uint8[n, h, w, c]`` on the model thread, as one batch, ahead of the queued images
        (blocks; for warm-up and adds). Not bounded by ``max_pending``."""
        images = np.asarray(images)
        if images.ndim != 4:
            raise ValueError(f"encode takes images uint8[n, h, w, c], got shape {images.shape}")
        fut: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the encoder has been shut down")
            self._queue.appendleft(_Item(images, fut))
            self._cond.notify()
        return fut.result()

    def close(self) -> None:
        """Stop the model thread once the queued images are encoded."""
        with self._cond:
            self._closed = True
            self._cond.notify()
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------ the model thread
    def _take(self) -> list[_Item] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            first = self._queue.popleft()
            if first.image.ndim == 4:  # a whole batch from encode()
                return [first]
            batch = [first]
            deadline = time.monotonic() + self.window
            while len(batch) < self.max_batch:
                if self._queue and self._queue[0].image.ndim == 3:
                    batch.append(self._queue.popleft())
                    continue
                left = deadline - time.monotonic()
                if left <= 0 or self._closed or self._queue:
                    break
                self._cond.wait(left)
            return batch

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            live = [it for it in batch if it.future.set_running_or_notify_cancel()]
            if not live:
                continue
            if live[0].image.ndim == 4:
                self._run_whole(live[0])
                continue
            try:
                enc = self.encoder.encode(np.stack([it.image for it in live]))
            except Exception:  # noqa: BLE001 - find the image at fault: one by one
                self._one_by_one(live)
                continue
            self.batches += 1
            self.encoded += len(live)
            for i, it in enumerate(live):
                it.future.set_result(Encoded(enc.codes[i:i + 1], enc.features[i:i + 1], enc.latent[i:i + 1]))

    def _run_whole(self, item: _Item) -> None:
        try:
            enc = self.encoder.encode(item.image)
        except Exception as e:  # noqa: BLE001 - the caller gets it
            item.future.set_exception(e)
            return
        self.batches += 1
        self.encoded += len(item.image)
        item.future.set_result(enc)

    def _one_by_one(self, items: list[_Item]) -> None:
        for it in items:
            try:
                enc = self.encoder.encode(it.image[None])
            except Exception as e:  # noqa: BLE001 - only this caller's image failed
                it.future.set_exception(e)
                continue
            self.batches += 1
            self.encoded += 1
            it.future.set_result(enc)
