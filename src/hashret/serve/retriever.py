"""A thread-safe retriever over one open index and its model: what the HTTP app calls.

:class:`IndexStore` is not thread-safe, and the web server answers requests on a pool of
threads, so every use of the store is serialised by one lock (a search takes a fraction of a
millisecond to milliseconds). A quick search (``now=True``) runs on the caller's thread, the
event loop, only when that lock is free at that instant and recent searches took little CPU
time (:data:`QUICK_SEARCH_SECONDS`): then it costs less than the hop to a worker thread and back;
otherwise the app sends it to a worker thread, so the event loop never waits for the store.
Encoding runs on one model thread (:mod:`hashret.serve.batcher`), which encodes the images of
concurrent uploads together in one forward pass, with the index's own model or, when given
one, a faster query encoder that computes the same codes (an
:class:`hashret.onnx_encoder.OnnxEncoder`). Decoding uploads needs no lock. An index opened
read-only is refreshed (at most every ``refresh_seconds``) so that adds committed by another
process become visible.

An add that the disk refuses (full, quota, file-size limit) answers 507, any other OS error
503; either way nothing is committed and the index stays as it was.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashret.codes import unpack
from hashret.encode import Encoded
from hashret.encoder import Encoder
from hashret.index.milvus import MilvusUnavailableError
from hashret.indexing import THUMBNAIL_SIDE, add_images
from hashret.search import SearchResult
from hashret.serve.batcher import DEFAULT_MAX_BATCH, DEFAULT_MAX_PENDING, DEFAULT_WINDOW, MicroBatcher
from hashret.serve.decode import check_header, decode_upload
from hashret.serve.errors import BadRequest, InsufficientStorage, NotFound, ReadOnly, Unavailable
from hashret.serve.limits import DEFAULT_MAX_DECODED_BYTES, DEFAULT_MAX_PIXELS
from hashret.store import Collection

#: Largest item id (ids are int64); a larger one names no item.
MAX_ID = 2**63 - 1
#: A search may run at once on the caller's thread (the event loop: ``now=True``) while searches
#: have been taking less than this CPU time on average: then a hop to a worker thread and back costs
#: about as much as the search itself. Slower ones (a large index, big pools) go to worker threads.
QUICK_SEARCH_SECONDS = 0.002
#: Largest coarse pool (``candidates``) a search on the caller's thread may ask for; no ``radius``.
QUICK_SEARCH_POOL = 1000
#: A search that took longer than this in wall time counts by its wall time, not its CPU time:
#: something blocked it (a cold disk, a network file system), and would block the event loop.
BLOCKED_SEARCH_SECONDS = 0.02
_EMA = 0.1  # weight of the latest search in the running mean of search times
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@dataclass(frozen=True)
class Upload:
    """One uploaded file: its bytes and the name the client gave it (stored as text only)."""

    data: bytes
    name: str = "upload"


@dataclass
class Outcome:
    """The answer to one query: the code searched with and the hits, nearest first."""

    query_id: int | None
    code: np.ndarray  # uint8[nbytes] packed
    hits: list[dict[str, Any]] = field(default_factory=list)
    took_ms: float = 0.0
    #: what was changed to fit an uploaded image to the model (resized, converted to grey, ...)
    notes: list[str] = field(default_factory=list)


def code_strings(code: np.ndarray, bits: int) -> tuple[str, str]:
    """``('0101...', 'a3...')``: a packed code as bits (bit 0 first) and as hexadecimal bytes."""
    b = unpack(np.asarray(code, np.uint8)[None], bits)[0]
    return "".join("1" if v else "0" for v in b), bytes(np.asarray(code, np.uint8)).hex()


class Retriever:
    """Search by image or by item, item lookup and add, over one index, from many threads.

    Args:
        store: an open index (writable for :meth:`add`).
        model: the index's model (:func:`hashret.indexing.load_index_model`).
        max_pixels: largest image (width x height) decoded.
        max_decoded_bytes: largest memory one decode may take (:mod:`hashret.serve.decode`).
        refresh_seconds: a read-only store looks for other processes' commits at most this often.
        thumbnail_side: longer side of the thumbnail stored for each added image.
        query_encoder: encodes uploaded queries instead of ``model`` (same ``encode`` / ``bits`` /
            ``image_shape``; e.g. an :class:`hashret.onnx_encoder.OnnxEncoder` of ``model``);
            added images are always encoded by ``model``, as the database was.
        batch_window, max_batch, max_pending: the micro-batcher's (:class:`MicroBatcher`): seconds
            a query waits for others, most queries per forward pass, queries that may wait (503
            beyond).
    """

    def __init__(self, store: Collection, model: Encoder, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 max_decoded_bytes: int = DEFAULT_MAX_DECODED_BYTES, refresh_seconds: float = 2.0,
                 thumbnail_side: int = THUMBNAIL_SIDE, query_encoder: Any = None,
                 batch_window: float = DEFAULT_WINDOW, max_batch: int = DEFAULT_MAX_BATCH,
                 max_pending: int = DEFAULT_MAX_PENDING) -> None:
        if model.bits != store.bits:
            raise ValueError(f"the model makes {model.bits}-bit codes, the index holds {store.bits}-bit "
                             "codes: load the index's own model (load_index_model(store))")
        self.store = store
        self.model = model
        self.max_pixels = int(max_pixels)
        self.max_decoded_bytes = int(max_decoded_bytes)
        self.refresh_seconds = float(refresh_seconds)
        self.thumbnail_side = int(thumbnail_side)
        self.query_encoder = query_encoder if query_encoder is not None else model
        if (self.query_encoder.bits != model.bits
                or tuple(self.query_encoder.image_shape) != tuple(model.image_shape)):
            raise ValueError("the query encoder does not encode like the index's model (bits or image shape "
                             "differ): export the index's own model (`hashret export-onnx INDEX`)")
        self._store_lock = threading.RLock()
        self.batcher = MicroBatcher(self.query_encoder, window=batch_window, max_batch=max_batch,
                                     max_pending=max_pending)
        self._last_refresh = time.monotonic()
        self._count = len(store)  # read without the lock by /health
        self._search_seconds = 0.0  # running mean of searches' CPU time (with the store lock held)
        self.searches = {"event_loop": 0, "worker_thread": 0}  # where searches ran (for /stats)

    # ------------------------------------------------------------------ helpers
    @property
    def writable(self) -> bool:
        return self.store.writable

    def _refresh(self) -> None:
        """Called with the store lock held."""
        if self.store.writable or time.monotonic() - self._last_refresh < self.refresh_seconds:
            return
        self._last_refresh = time.monotonic()
        self.store.refresh()
        self._count = len(self.store)

    def quick(self, k: int, candidates: int | None = None, radius: int | None = None) -> bool:
        """Whether a search of this pool may run on the event loop (``now=True``): the default pool
        size at most (:data:`QUICK_SEARCH_POOL`, no ``radius``), recent searches quick
        (:data:`QUICK_SEARCH_SECONDS`) and no refresh due (it may load new segments). Whether the
        store is free is only known when the search tries it."""
        return (radius is None and max(k, candidates or 0) <= QUICK_SEARCH_POOL
                and self._search_seconds <= QUICK_SEARCH_SECONDS
                and (self.store.writable or time.monotonic() - self._last_refresh < self.refresh_seconds))

    def _enter(self, now: bool, k: int, candidates: int | None, radius: int | None) -> bool:
        """Take the store lock for a search (waiting for it), or with ``now``: only when the search is
        :meth:`quick` and the store free this instant; False without waiting otherwise."""
        if not now:
            self._store_lock.acquire()
            return True
        if not self.quick(k, candidates, radius) or not self._store_lock.acquire(blocking=False):
            return False
        if not self.quick(k, candidates, radius):  # a refresh fell due meanwhile
            self._store_lock.release()
            return False
        return True

    def _timed(self, t0: tuple[float, float], now: bool) -> None:
        """Note a search's time since ``t0 = (time.thread_time(), time.perf_counter())`` (the store lock
        held): its CPU time, the work that would hold the event loop, not the time other processes had
        the core; its wall time when that is over :data:`BLOCKED_SEARCH_SECONDS`."""
        cpu, wall = time.thread_time() - t0[0], time.perf_counter() - t0[1]
        took = wall if wall > BLOCKED_SEARCH_SECONDS else cpu
        self._search_seconds += _EMA * (took - self._search_seconds)
        self.searches["event_loop" if now else "worker_thread"] += 1

    def decode(self, upload: Upload, notes: list[str] | None = None) -> np.ndarray:
        """``uint8[h, w, c]`` at the index's image shape; ``notes`` gets what was changed to fit.

        Raises:
            BadUpload: an empty file, not an image, or a truncated one.
            TooLarge: more than ``max_pixels`` pixels or ``max_decoded_bytes`` to decode.
        """
        return decode_upload(upload.data, upload.name, tuple(self.model.image_shape),  # type: ignore[arg-type]
                             max_pixels=self.max_pixels, max_decoded_bytes=self.max_decoded_bytes,
                             notes=notes)

    def precheck(self, upload: Upload) -> tuple[str, int, int] | None:
        """Refuse (TooLarge) an upload over the limits from its first bytes (``upload.data`` may be a
        prefix), before it takes a place in the decode queue; returns the header's ``(format, width,
        height)``, or None when the prefix does not parse."""
        return check_header(upload.data, upload.name, tuple(self.model.image_shape),  # type: ignore[arg-type]
                            max_pixels=self.max_pixels, max_decoded_bytes=self.max_decoded_bytes)

    def encode_query(self, image: np.ndarray) -> Future:
        """Queue one decoded ``uint8[h, w, c]`` image for the model thread; the future gives its
        :class:`Encoded` (one row). Raises Busy (503) when too many queries wait."""
        return self.batcher.submit(image)

    def _encode(self, images: np.ndarray) -> Encoded:
        """``uint8[n, h, w, c]`` encoded by the query encoder on the model thread, in one batch."""
        return self.batcher.encode(images)

    def close(self) -> None:
        """Stop the model thread (the store is the caller's to close)."""
        self.batcher.close()

    def _describe(self, ids: list[int]) -> list[dict[str, Any]]:
        """Metadata dicts of live ids (store lock held); KeyError for unknown ones."""
        metas = self.store.get_items(ids)
        with_image = self.store.ids_with_image(ids) if ids else set()
        return [{"id": i, "label": int(m.label), "class_name": m.class_name, "source": m.source,
                 "extra": dict(m.extra or {}), "has_image": i in with_image}
                for i, m in zip(ids, metas, strict=True)]

    def _hits(self, result: SearchResult) -> list[dict[str, Any]]:
        ids = [int(i) for i in result.indices]
        hits = self._describe(ids)
        for r, (h, ham, euc) in enumerate(zip(hits, result.hamming, result.euclidean, strict=True)):
            h.update(rank=r + 1, hamming=int(ham), euclidean=None if np.isnan(euc) else float(euc))
        return hits

    @staticmethod
    def _check_id(item_id: int) -> int:
        """``item_id`` as an int64 id, or NotFound for one no index can hold (negative, >= 2**63)."""
        item_id = int(item_id)
        if not 0 <= item_id <= MAX_ID:
            raise NotFound(f"no item with id {item_id} in the index (ids are 0 .. 2**63 - 1)")
        return item_id

    def _check_searchable(self) -> None:
        if len(self.store) == 0:
            raise NotFound("the index is empty: add images first (POST /items or `hashret index add`)")

    # ------------------------------------------------------------------ queries
    def search_image(self, upload: Upload, *, k: int, rerank: bool, candidates: int | None = None,
                     radius: int | None = None) -> Outcome:
        """Decode, encode and search one uploaded image (``candidates`` / ``radius``: the coarse
        stage's pool, as in :meth:`IndexStore.search`)."""
        t0 = time.perf_counter()
        notes: list[str] = []
        image = self.decode(upload, notes)
        enc = self.encode_query(image).result()
        out = self.search_encoded(enc, k=k, rerank=rerank, candidates=candidates, radius=radius,
                                  notes=notes, started=t0)
        assert out is not None  # waited for the store
        return out

    def search_encoded(self, enc: Encoded, *, k: int, rerank: bool, candidates: int | None = None,
                       radius: int | None = None, notes: list[str] | None = None,
                       started: float | None = None, now: bool = False) -> Outcome | None:
        """Search with one encoded query (:meth:`encode_query`'s result); ``notes`` and ``started``
        (``time.perf_counter()`` when the request began) go into the Outcome. ``now``: search only
        if it can start at once and looks quick (for the event loop), else return None at once."""
        t0 = time.perf_counter() if started is None else started
        if not self._enter(now, k, candidates, radius):
            return None
        try:
            t1 = time.thread_time(), time.perf_counter()
            self._refresh()
            self._check_searchable()
            result = self.store.search(enc.codes, enc.features, k, rerank=rerank, candidates=candidates,
                                       radius=radius)[0]
            hits = self._hits(result)
            self._timed(t1, now)
        finally:
            self._store_lock.release()
        return Outcome(None, enc.codes[0], hits, (time.perf_counter() - t0) * 1e3, list(notes or []))

    def search_id(self, item_id: int, *, k: int, rerank: bool, candidates: int | None = None,
                  radius: int | None = None, now: bool = False) -> Outcome | None:
        """Search by an indexed item's stored code and features (``now`` as in :meth:`search_encoded`)."""
        t0 = time.perf_counter()
        item_id = self._check_id(item_id)
        if not self._enter(now, k, candidates, radius):
            return None
        try:
            t1 = time.thread_time(), time.perf_counter()
            self._refresh()
            try:
                code, feats = self.store.item_vectors(item_id)
            except KeyError:
                raise NotFound(f"no item with id {item_id} in the index (unknown or removed)") from None
            result = self.store.search(code[None], feats[None], k, rerank=rerank, candidates=candidates,
                                       radius=radius, features_stored=True)[0]
            hits = self._hits(result)
            self._timed(t1, now)
        finally:
            self._store_lock.release()
        return Outcome(item_id, code, hits, (time.perf_counter() - t0) * 1e3)

    def item(self, item_id: int) -> dict[str, Any]:
        """An item's metadata (``has_image`` tells whether a copy of its image is stored).

        Raises:
            NotFound: unknown or removed id.
        """
        item_id = self._check_id(item_id)
        with self._store_lock:
            self._refresh()
            try:
                return self._describe([int(item_id)])[0]
            except KeyError:
                raise NotFound(f"no item with id {item_id} in the index (unknown or removed)") from None

    def item_image(self, item_id: int) -> bytes:
        """The index's own stored copy of an item's image (never a file named by a request).

        Raises:
            NotFound: unknown or removed id, or the index keeps no image of it.
        """
        item_id = self._check_id(item_id)
        with self._store_lock:
            self._refresh()
            try:
                meta = self.store.get_items([int(item_id)], image=True)[0]
            except KeyError:
                raise NotFound(f"no item with id {item_id} in the index (unknown or removed)") from None
        if not meta.image:
            raise NotFound(f"the index keeps no image of item {item_id} (built without thumbnails)")
        return meta.image

    def add(self, uploads: list[Upload], *, label: str | None = None) -> list[int]:
        """Decode every upload, then add them all in one commit; on any error nothing is added.

        Raises:
            ReadOnly: the index was opened read-only.
            BadUpload / TooLarge: an upload that cannot be added (named); nothing is added.
            InsufficientStorage: the disk (quota, file-size limit) is full (507); nothing is added.
            Unavailable: another OS error while writing (503); nothing is added.
        """
        if not self.writable:
            raise ReadOnly("the server opened the index read-only: restart `hashret serve` without "
                           "--read-only to add images")
        if not uploads:
            raise BadRequest("no images: send one or more files in the form field 'images'")
        images = np.stack([self.decode(u) for u in uploads])  # all decoded before anything is written
        sources = [f"upload:{u.name}" for u in uploads]
        # the database's own encoder; on the model thread when it is also the query encoder
        model = _OnModelThread(self.model, self.batcher) if self.query_encoder is self.model else self.model
        with self._store_lock:
            try:
                ids = add_images(self.store, model, images, sources, label=label,
                                 thumbnail_side=self.thumbnail_side)
            except (OSError, sqlite3.OperationalError, MilvusUnavailableError) as e:
                raise _write_error(e) from e
            finally:
                self._count = len(self.store)
        return [int(i) for i in ids]

    def warm_up(self) -> float:
        """Encode a blank image and search once, so that the first real request does not pay for
        lazy initialisation (kernel compilation, first forward pass); returns the seconds taken."""
        t0 = time.perf_counter()
        enc = self._encode(np.zeros((1, *self.model.image_shape), np.uint8))
        with self._store_lock:
            if len(self.store):
                for pool in ({}, {"radius": 0}):  # top-k and range kernels, for this code width
                    self.store.search(enc.codes, enc.features, 1, rerank=True, **pool)
                    self.store.search(enc.codes, None, 1, **pool)
        return time.perf_counter() - t0

    def count(self) -> int:
        with self._store_lock:
            self._refresh()
            return len(self.store)

    def count_nowait(self) -> int:
        """Items as of the last state loaded, without waiting for the store (for /health)."""
        return self._count

    def stats(self) -> dict[str, Any]:
        """Items, bits, backend, model identity, generation, writability."""
        with self._store_lock:
            self._refresh()
            info = self.store.info()
            cfg = info.get("model") or {}
            return {
                "items": info["items"], "bits": info["bits"], "backend": info.get("backend"),
                "engine": info["engine"], "feature_storage": info.get("feature_storage"),
                "generation": info.get("generation"), "writable": self.store.writable,
                "model": {"sha256": info.get("model_sha256"), "method": cfg.get("method"),
                          "backbone": cfg.get("backbone"), "bits": cfg.get("bits"),
                          "classes": list(self.model.classes),
                          "image_shape": list(self.model.image_shape)},
                "encoder": self.encoder_stats(), "searches": dict(self.searches),
            }

    def encoder_stats(self) -> dict[str, Any]:
        """How queries are encoded: runtime, precision, batching, and batches / images so far."""
        b, q = self.batcher, self.query_encoder
        return {"runtime": getattr(q, "runtime", "torch"), "precision": q.precision,
                "max_batch": b.max_batch, "batch_window_ms": round(b.window * 1e3, 3),
                "batches": b.batches, "encoded": b.encoded}


class _OnModelThread:
    """An encoder whose ``encode`` runs on the batcher's model thread (so one model is never
    used by two threads at once); everything else is the encoder's."""

    def __init__(self, encoder: Any, batcher: MicroBatcher) -> None:
        self._encoder, self.batcher = encoder, batcher

    def encode(self, images: np.ndarray, **_: Any) -> Encoded:
        return self.batcher.encode(images)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._encoder, name)


def _write_error(e: BaseException) -> InsufficientStorage | Unavailable:
    """The service error for an OS / SQLite / Milvus error while adding (nothing was committed to an
    index directory; a Milvus collection counts what got in at its next open)."""
    full = (isinstance(e, OSError) and e.errno in _DISK_FULL) or "full" in str(e).lower()
    what = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    if full:
        return InsufficientStorage(f"the index's disk is full ({what}): nothing was added; free space "
                                   "on the server, then retry")
    return Unavailable(f"the index could not be written ({what}): nothing was added; retry later",
                       headers={"Retry-After": "5"})
