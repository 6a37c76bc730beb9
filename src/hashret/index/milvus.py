"""Milvus as a Hamming index (``"milvus"``): packed codes searched in a Milvus collection.

`Milvus <https://milvus.io>`_ stores binary vectors natively (``BINARY_VECTOR`` searched
with the ``HAMMING`` metric through a ``BIN_FLAT`` index), and runs embedded (Milvus Lite),
as one server, or as a cluster; only the connection URI differs:

* ``uri="index.db"``: a local file, the embedded engine (Milvus Lite, one process);
* ``uri="http://host:19530"`` (+ ``token="user:password"``): a server or a cluster;
* ``uri=None``: a temporary embedded database, deleted when the process exits (what
  ``create_index("milvus", bits)`` gives, like the in-memory backends).

:class:`MilvusIndex` is the codes part only: either a temporary collection of its own
(``id INT64`` primary key = the row index, ``code BINARY_VECTOR``), dropped with the object,
or a view (:meth:`MilvusIndex.over`) of the ``code`` field of a collection that a
:class:`hashret.store.milvus.MilvusCollection` keeps with features and metadata.

**Exact results under hashret's tie rule.** Milvus returns the right *distances* for a
top-k, but which items of the boundary distance it keeps is database order, not
hashret's (equal distances by increasing id); and one search returns at most 16,384
results (``limit``), range searches included. This backend therefore:

1. asks Milvus for the top ``L = min(k + 1, 16384)``; with ``t`` the last distance
   returned, every item closer than ``t`` is in that answer (exactly);
2. when that gives fewer than ``k`` items, collects *every* item at distance ``t``,
   ``t + 1``, ... (range searches on one distance, ``range_filter <= d < radius``) until
   ``k`` are known, and keeps the first ``k`` by (distance, id);
3. a range search whose answer came back full (16,384 hits, maybe truncated) is repeated
   on two halves of the id range (``filter="id >= a and id < b"``) until no answer is
   truncated. So ``search`` and ``range_search`` return exactly the numpy reference's
   answer, ties included, for any ``k`` and radius.

On random codes step 2 runs for almost every query (the boundary is tied), so a search
costs one top-k search plus one range search of one distance.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import re
import shutil
import tempfile
import time
import uuid
import warnings
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np

from hashret.index._faiss import sort_rows
from hashret.index.base import HammingIndex, RangeResult

#: Milvus's largest ``limit`` for one search or query (results per query).
MAX_LIMIT = 16384
#: The collection that records hashret's collections (bits, features, next id, state).
REGISTRY = "hashret_collections"
#: The limit a range search asks first (most distance bands of the tie repair are small).
_BAND_LIMIT = 1024
#: Most results one search request may return (queries are sent in groups below it).
_MAX_RESULTS = 1 << 20
#: Bytes of codes + features per insert request. Milvus Lite 2.5 ingests a request in
#: time that grows faster than its size (10,000 rows of 128-d features: 14 s in one request,
#: 3 s in requests of 1 MiB); 1 MiB costs nothing measurable with codes only.
INSERT_BYTES = 1 << 20
#: Searches and fetches read at Session consistency: they see this process's writes and (the
#: strong query made when a collection is opened having synced it) everything written before
#: the open. Strong reads wait for the server's next time tick: about 0.2 s per request on a
#: Milvus 2.3 server (1.5-3 ms at Session); the loading protocol's counts stay Strong.
SESSION = "Session"
#: A valid collection name.
NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
INSTALL = "pip install 'hashret[milvus]'"

_clients: dict[tuple[str, str], Any] = {}
_temp_dir: list[Path] = []


class MilvusUnavailableError(RuntimeError):
    """Milvus cannot be reached at the given URI."""


@dataclass(frozen=True)
class MilvusLocation:
    """Where a collection lives: ``uri`` as :func:`connect` takes it, and maybe its name."""

    uri: str
    collection: str | None


def parse_milvus_uri(text: str) -> MilvusLocation:
    """Read a Milvus location as the CLI takes it (``--milvus``).

    * ``milvus://HOST:PORT/COLLECTION`` (or ``milvus://HOST:PORT``): a server, plain
      HTTP/2 (``http://HOST:PORT``); the port defaults to 19530. ``milvus+https://`` for TLS.
    * ``http://HOST:PORT`` / ``https://...``: a server, as pymilvus takes it (its path, if
      any, is a database name to pymilvus, not a collection).
    * ``FILE.db``: an embedded Milvus Lite database.

    Credentials go in ``--token``, never in the URI.

    Raises:
        ValueError: a malformed ``milvus://`` URI (names the expected form).
    """
    from urllib.parse import urlsplit

    text = str(text).strip()
    form = "milvus://HOST:PORT/COLLECTION (e.g. milvus://127.0.0.1:19530/hashret)"
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme not in ("milvus", "milvus+https"):
        return MilvusLocation(text, None)
    parts = urlsplit(text)
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"--milvus {text}: put the credentials in --token user:password, not in the URI "
                         f"({form})")
    try:
        port = parts.port or 19530
    except ValueError as e:
        raise ValueError(f"--milvus {text} has a bad port: use {form}") from e
    host = parts.hostname
    if not host or parts.query or parts.fragment:
        raise ValueError(f"--milvus {text} is not a Milvus location: use {form}")
    name = parts.path.strip("/") or None
    if name is not None and (not NAME.match(name) or name == REGISTRY):
        raise ValueError(f"--milvus {text}: {name!r} is not a valid collection name (letters, digits and "
                         f"'_', starting with a letter or '_'): use {form}")
    host = f"[{host}]" if ":" in host else host  # IPv6
    http = "https" if scheme == "milvus+https" else "http"
    return MilvusLocation(f"{http}://{host}:{port}", name)


@dataclass(frozen=True)
class ServerFeatures:
    """What a Milvus engine can store: ``version`` (as it reports it, or how it was found)."""

    version: str
    multiple_vectors: bool  # several vector fields in one collection (2.4+)
    arrays: bool  # scalar ARRAY fields (2.3+)


def server_features(client: Any, uri: str) -> ServerFeatures:
    """The engine's version and the two capabilities the layouts need.

    Milvus Lite 2.5 (a ``.db`` file) has both. A server is asked its version; one that
    does not say (or says something unreadable) is probed with a throw-away collection.
    """
    if re.match(r"^(https?|tcp|grpc|unix)://", uri, re.IGNORECASE) is None:
        return ServerFeatures("milvus-lite", True, True)
    pymilvus = import_pymilvus()
    try:
        with _quiet_pymilvus():
            version = str(client.get_server_version())
    except pymilvus.MilvusException:
        version = ""
    except Exception as e:  # noqa: BLE001 - grpc's UNIMPLEMENTED is not a MilvusException
        if "UNIMPLEMENTED" not in str(e):
            raise
        version = ""
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", version)
    if m:
        v = tuple(int(x) for x in m.groups())
        return ServerFeatures(version, v >= (2, 4, 0), v >= (2, 3, 0))
    dt = pymilvus.DataType
    multi = _probe(client, lambda s: s.add_field("b", dt.FLOAT_VECTOR, dim=2))
    arrays = multi or _probe(client, lambda s: s.add_field("b", dt.ARRAY, element_type=dt.FLOAT,
                                                              max_capacity=2))
    return ServerFeatures(f"unknown (probed: {uri})", multi, arrays)


def _probe(client: Any, add_field: Any) -> bool:
    """Whether the engine accepts a collection of a float vector plus the field added."""
    pymilvus = import_pymilvus()
    name = f"hashret_probe_{uuid.uuid4().hex[:12]}"
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", pymilvus.DataType.INT64, is_primary=True)
    schema.add_field("a", pymilvus.DataType.FLOAT_VECTOR, dim=2)
    add_field(schema)
    try:
        with _quiet_pymilvus():
            client.create_collection(name, schema=schema)
    except pymilvus.MilvusException:
        return False
    client.drop_collection(name)
    return True


@contextlib.contextmanager
def _quiet_pymilvus() -> Iterator[None]:
    """Silence pymilvus's error log for a call whose failure is an expected answer."""
    logger = logging.getLogger("pymilvus")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        logger.setLevel(level)


def import_pymilvus() -> ModuleType:
    """``import pymilvus``, or an ImportError saying what to install."""
    try:
        import pymilvus
    except ImportError as e:
        raise ImportError(
            f"the milvus index backend needs pymilvus: {INSTALL} (pymilvus 2.5 and, for local "
            "'.db' files, milvus-lite 2.5)"
        ) from e
    return pymilvus


def temporary_uri() -> str:
    """The process's temporary embedded database (created on first use, deleted at exit)."""
    if not _temp_dir:
        path = Path(tempfile.mkdtemp(prefix="hashret-milvus-"))
        atexit.register(shutil.rmtree, path, True)
        _temp_dir.append(path)
    return str(_temp_dir[0] / "lite.db")


def connect(uri: str | None = None, token: str | None = None, *, timeout: float = 10.0) -> Any:
    """A ``pymilvus.MilvusClient`` for ``uri`` (one per URI and token in a process).

    Args:
        uri: ``"path/to/file.db"`` (embedded Milvus Lite), ``"http://host:19530"``
            (server or cluster), or ``None`` for the temporary embedded database.
        token: ``"user:password"`` or an API key for a server that checks them.
        timeout: seconds to wait for the connection.

    Raises:
        ImportError: pymilvus (or milvus-lite for a file) is not installed.
        ValueError: a local path that does not end in ``.db``.
        MilvusUnavailableError: no Milvus answers at ``uri``.
    """
    uri = temporary_uri() if uri is None else str(uri)
    remote = re.match(r"^(https?|tcp|grpc|unix)://", uri, re.IGNORECASE) is not None
    key = (uri, token or "")
    if key in _clients:
        return _clients[key]
    pymilvus = import_pymilvus()
    if not remote:
        if not uri.endswith(".db"):
            raise ValueError(
                f"--milvus {uri} is neither a server address (--milvus http://host:19530) nor an embedded "
                "database file: a Milvus Lite database is a file whose name ends in .db (--milvus FILE.db)"
            )
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            with warnings.catch_warnings():  # milvus-lite 2.5 imports the deprecated pkg_resources
                warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
                import milvus_lite  # noqa: F401
        except ImportError as e:
            raise ImportError(
                f"a local Milvus database ({uri}) needs the embedded engine milvus-lite 2.5 (and "
                f"setuptools<81 for its pkg_resources import): {INSTALL}; or connect to a server "
                "with --milvus http://host:19530"
            ) from e
    try:
        client = pymilvus.MilvusClient(uri=uri, token=token or "", timeout=timeout)
    except pymilvus.MilvusException as e:
        where = f"a Milvus server at {uri}" if remote else f"the embedded Milvus Lite database {uri}"
        raise MilvusUnavailableError(
            f"cannot connect to {where} ({e.message}): check that the server runs and the URI and "
            "token are right (`milvus-server --data DIR --proxy-port 19530`, from pip install "
            "'hashret[milvus-server]', or Docker with Milvus's standalone compose file, starts one on port "
            "19530), or use a local file (--milvus FILE.db) for the embedded engine"
        ) from e
    _clients[key] = client
    return client


class MilvusIndex(HammingIndex):
    """Binary codes in a Milvus collection, searched exactly (see the module docstring).

    ``MilvusIndex(bits)`` keeps its codes in a temporary collection of its own (row ``i`` of
    ``add`` gets id ``i``), dropped when the object is garbage-collected;
    :meth:`MilvusIndex.over` searches the ``code`` field of a collection kept by someone else.

    Args:
        bits: code length (8..256).
        uri: ``"file.db"`` (embedded), ``"http://host:19530"`` (server / cluster), or
            ``None`` (the process's temporary embedded database; see :func:`connect`).
        token: credentials for a server (``"user:password"`` or an API key).
        timeout: seconds to wait for the connection and for the new collection to load.

    Raises:
        ImportError: pymilvus / milvus-lite missing (``pip install 'hashret[milvus]'``).
        MilvusUnavailableError: Milvus unreachable at ``uri``.
    """

    name: ClassVar[str] = "milvus"
    exact: ClassVar[bool] = True
    exact_range: ClassVar[bool] = True

    def __init__(self, bits: int, *, uri: str | None = None, token: str | None = None,
                 timeout: float = 30.0) -> None:
        super().__init__(bits)
        self.uri = temporary_uri() if uri is None else str(uri)
        self.timeout = float(timeout)
        self.client = connect(self.uri, token, timeout=timeout)
        self.collection = f"hashret_tmp_{uuid.uuid4().hex[:16]}"
        self._next_id: Any = 0
        self._count: Any = 0
        self._owned = True
        dt = import_pymilvus().DataType
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False,
                                           description=f"hashret: temporary {bits}-bit codes")
        schema.add_field("id", dt.INT64, is_primary=True)
        schema.add_field("code", dt.BINARY_VECTOR, dim=self.dim)
        params = self.client.prepare_index_params()
        params.add_index("code", index_type="BIN_FLAT", metric_type="HAMMING")
        create_collection(self.client, self.collection, schema, params, self.uri, self.timeout)
        fin = weakref.finalize(self, _drop_quietly, self.client, self.collection)
        fin.atexit = False  # dropped with this object, not at exit (the engine stops then)

    @classmethod
    def over(cls, client: Any, uri: str, collection: str, bits: int, next_id: Any, count: Any,
             timeout: float = 30.0) -> MilvusIndex:
        """A view of the ``code`` field (``BINARY_VECTOR``, ids in ``id``) of an existing collection.

        Args:
            client, uri: the connection (:func:`connect`) and its URI.
            collection: the collection's name.
            bits: its code length.
            next_id: a callable giving one more than the largest id that may be stored (the
                id windows of the range searches end there).
            count: a callable giving the number of items (the collection keeps it: Milvus's own
                ``count(*)`` is a round trip, and stale right after a delete, see :func:`count_rows`).
        """
        self = cls.__new__(cls)
        HammingIndex.__init__(self, bits)
        self.uri, self.client, self.collection = str(uri), client, str(collection)
        self.timeout = float(timeout)
        self._next_id, self._count = next_id, count
        self._owned = False
        return self

    @property
    def next_id(self) -> int:
        """One more than the largest id stored (the next id :meth:`add` gives)."""
        return int(self._next_id() if callable(self._next_id) else self._next_id)

    def __len__(self) -> int:
        return int(self._count() if callable(self._count) else self._count)

    def _add(self, codes: np.ndarray) -> None:
        if not self._owned:
            raise TypeError(f"this index is a view of Milvus collection {self.collection!r}: add items "
                            "through the collection that keeps it (hashret.store.milvus.MilvusCollection)")
        ids = np.arange(self.next_id, self.next_id + len(codes), dtype=np.int64)
        step = max(1, INSERT_BYTES // (codes.shape[1] + 8))
        for lo in range(0, len(codes), step):
            rows = zip(ids[lo : lo + step], codes[lo : lo + step], strict=True)
            self.client.insert(self.collection, [{"id": int(i), "code": bytes(c)} for i, c in rows])
        self._next_id = int(ids[-1]) + 1 if len(ids) else self._next_id
        self._count += len(ids)

    def _reset(self) -> None:
        if not self._owned:
            raise TypeError(f"this index is a view of Milvus collection {self.collection!r}: it cannot be "
                            "reset")
        self.client.delete(self.collection, filter="id >= 0")
        self._next_id = self._count = 0

    # ------------------------------------------------------------------ Hamming search
    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        n = len(self)
        limit = min(k + 1, MAX_LIMIT, n)
        dist, idx = self._top(queries, limit)  # [q, limit] sorted by (distance, id)
        if limit == n:  # everything came back
            return dist[:, :k], idx[:, :k]
        out_d = np.empty((len(queries), k), np.int32)
        out_i = np.empty((len(queries), k), np.int64)
        last = dist[:, -1]  # t: every item closer than t is in the answer, exactly
        parts: list[list[tuple[np.ndarray, np.ndarray]]] = []
        have = np.zeros(len(queries), np.int64)
        for row in range(len(queries)):
            closer = dist[row] < last[row]
            parts.append([(dist[row][closer], idx[row][closer])])
            have[row] = int(closer.sum())
        r = last.astype(np.int64).copy()
        short = np.flatnonzero(have < k)
        while len(short):  # every item at distance r, r + 1, ... until k are known
            for dist_r in np.unique(r[short]):
                rows = short[r[short] == dist_r]
                band = self._band(queries[rows], int(dist_r), int(dist_r))
                for row, (d, i) in zip(rows, band, strict=True):
                    order = np.argsort(i, kind="stable")
                    parts[row].append((d[order], i[order]))
                    have[row] += len(i)
            r[short] += 1
            short = short[have[short] < k]
        for row in range(len(queries)):
            d = np.concatenate([p[0] for p in parts[row]])[:k]  # closer ones sorted, then by distance, id
            i = np.concatenate([p[1] for p in parts[row]])[:k]
            out_d[row], out_i[row] = d, i
        return out_d, out_i

    def _range_search(self, queries: np.ndarray, radius: int) -> RangeResult:
        out: RangeResult = []
        for d, i in self._band(queries, 0, min(radius, self.dim)):
            order = np.lexsort((i, d))
            out.append((d[order], i[order]))
        return out

    def _top(self, queries: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        """Milvus top-``limit`` of each query, rows sorted by (distance, id)."""
        dist = np.empty((len(queries), limit), np.int32)
        idx = np.empty((len(queries), limit), np.int64)
        step = max(1, _MAX_RESULTS // limit)
        for lo in range(0, len(queries), step):
            res = self.client.search(self.collection, data=[bytes(q) for q in queries[lo : lo + step]],
                                     anns_field="code", limit=limit, output_fields=[],
                                     search_params={"metric_type": "HAMMING"}, consistency_level=SESSION)
            for row, hits in enumerate(res, start=lo):
                if len(hits.ids) != limit:
                    raise RuntimeError(
                        f"Milvus returned {len(hits.ids)} results for a top-{limit} of collection "
                        f"{self.collection!r}: the collection changed during the search; search again"
                    )
                dist[row] = np.rint(hits.distances)
                idx[row] = hits.ids
        return sort_rows(dist, idx)

    def _band(self, queries: np.ndarray, lo: int, hi: int) -> RangeResult:
        """Every item at Hamming distance ``lo..hi`` (inclusive) of each query, unsorted.

        One range search per id window, first with a limit of ``_BAND_LIMIT``; a query whose
        answer came back full (maybe cut) is asked again with ``MAX_LIMIT``, and if that is
        full too, on the two halves of its window. (A Milvus 2.3 server spends time in
        proportion to the limit, full or not: 30 queries cost 3.2 s at 16,384, 0.4 s at 200.)
        """
        found: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(len(queries))]
        end = self.next_id
        todo = [(np.arange(len(queries)), 0, end, min(_BAND_LIMIT, MAX_LIMIT))]
        params = {"metric_type": "HAMMING", "params": {"radius": hi + 1, "range_filter": lo}}
        while todo:
            rows, a, b, limit = todo.pop()
            window = "" if (a, b) == (0, end) else f"id >= {a} and id < {b}"
            full = []
            step = max(1, _MAX_RESULTS // limit)
            for start in range(0, len(rows), step):
                part = rows[start : start + step]
                res = self.client.search(self.collection, data=[bytes(q) for q in queries[part]],
                                         anns_field="code", limit=limit, filter=window,
                                         output_fields=[], search_params=params, consistency_level=SESSION)
                for row, hits in zip(part, res, strict=True):
                    if len(hits.ids) >= limit and b - a > limit:
                        full.append(row)  # maybe cut: ask again
                    else:
                        found[row].append((np.rint(hits.distances).astype(np.int32),
                                           np.asarray(hits.ids, dtype=np.int64)))
            if full and limit < MAX_LIMIT:
                todo.append((np.array(full), a, b, MAX_LIMIT))
            elif full:
                mid = (a + b) // 2
                todo += [(np.array(full), mid, b, MAX_LIMIT), (np.array(full), a, mid, MAX_LIMIT)]
        return [(np.concatenate([p[0] for p in f]) if f else np.zeros(0, np.int32),
                 np.concatenate([p[1] for p in f]) if f else np.zeros(0, np.int64)) for f in found]


def create_collection(client: Any, name: str, schema: Any, params: Any, uri: str, timeout: float) -> None:
    """Create, index and load a collection, polling (pymilvus's own wait sleeps 0.5 s)."""
    client.create_collection(name, schema=schema, consistency_level="Strong")
    client.create_index(name, params, sync=False)  # sent and acknowledged; not waited for
    fields = [p.field_name for p in params]
    wait(lambda: all((client.describe_index(name, f) or {}).get("state") == "Finished" for f in fields),
         f"indexing the new collection {name!r}", uri, timeout)
    client.load_collection(name, _async=True)  # the request is acknowledged; not waited for
    wait(lambda: str(client.get_load_state(name)["state"]).endswith("Loaded"),
         f"loading the new collection {name!r}", uri, timeout)


def wait(done: Any, what: str, uri: str, timeout: float) -> None:
    """Poll ``done()`` until true (2 ms, doubling to 0.2 s), or MilvusUnavailableError after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while not done():
        if time.monotonic() > deadline:
            raise MilvusUnavailableError(f"Milvus at {uri} did not finish {what} in {timeout} s")
        time.sleep(delay)
        delay = min(2 * delay, 0.2)


def query(client: Any, collection: str, filter: str, fields: list[str], limit: int,
          **kw: Any) -> list[dict[str, Any]]:
    """``client.query``; an empty answer of Milvus Lite 2.5.1 on a collection with an ARRAY
    field fails to parse in pymilvus ("Unsupported data type: 0"): confirmed empty by a count."""
    pymilvus = import_pymilvus()
    try:
        return list(client.query(collection, filter=filter, output_fields=fields, limit=limit, **kw))
    except pymilvus.MilvusException as e:
        if "Unsupported data type: 0" not in str(e.message):
            raise
        res = client.query(collection, filter=filter, output_fields=["count(*)"], **kw)
        if int(res[0]["count(*)"]):
            raise
        return []


def count_rows(client: Any, collection: str) -> int:
    """The rows of a collection as Milvus counts them now, at Strong consistency (about 0.2 s on a
    server): at Session consistency a Milvus 2.3 server answers a count(*) made right after this
    client's delete with the count from before it (1441 after deleting 2 of 1441; the deleted ids are
    already gone from queries), and 3 s later with the right one."""
    res = client.query(collection, filter="", output_fields=["count(*)"], consistency_level="Strong")
    return int(res[0]["count(*)"])


def id_in(ids: np.ndarray) -> str:
    """A Milvus filter selecting these ids."""
    return f"id in [{','.join(map(str, np.asarray(ids).tolist()))}]"


def _drop_quietly(client: Any, name: str) -> None:
    try:
        client.drop_collection(name)
    except Exception:  # noqa: BLE001 - best effort: the engine may be gone already
        pass
