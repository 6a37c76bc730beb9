"""Milvus as the Hamming index (``"milvus"``): codes, features and metadata in one collection.

`Milvus <https://milvus.io>`_ stores binary vectors natively (``BINARY_VECTOR`` searched
with the ``HAMMING`` metric through a ``BIN_FLAT`` index) next to float vectors and scalar
fields in one record, and runs embedded (Milvus Lite), as one server, or as a cluster;
only the connection URI differs:

* ``uri="index.db"``: a local file, the embedded engine (Milvus Lite, one process);
* ``uri="http://host:19530"`` (+ ``token="user:password"``): a server or a cluster;
* ``uri=None``: a temporary embedded database, deleted when the process exits (what
  ``create_index("milvus", bits)`` gives, like the in-memory backends).

One collection per index, one record per item::

    id        INT64 primary key   hashret's id: insertion order 0, 1, ... (never reused)
    code      BINARY_VECTOR       the packed code (8 * nbytes bits), BIN_FLAT / HAMMING
    features  FLOAT_VECTOR        float32 re-rank features (only with feature_dim), FLAT / L2,
                                  in the "vector" layout (Milvus 2.4+ and Milvus Lite 2.5)
              or ARRAY of FLOAT   in the "array" layout (Milvus 2.3: one vector field per
                                  collection; at most 4,096 dimensions)
    source    VARCHAR             where the item came from
    label     INT64               class index, -1 when unknown
    class_name VARCHAR            class name, "" when unknown
    extra     VARCHAR             any other per-item fields, as JSON text ("" when none; a
                                  JSON field costs about twice the insert time of the rest)

**Layouts.** Milvus before 2.4 refuses a second vector field in a collection ("multiple
vector fields is not supported"), so where the server is older (its version, or a probe
when it does not say), features are stored as a scalar ``ARRAY`` of float32 and the
re-rank runs in the client on the fetched features (exact float32 arithmetic, as the
numpy reference). On 2.4+ the features are a ``FLOAT_VECTOR`` and the re-rank may run
inside Milvus. The layout chosen is recorded (hashret's record and the collection's
description), so a reopened collection keeps it; ``layout=`` forces one, and a server
that lacks what it needs is refused with the fix named.

Next to them, the collection ``hashret_collections`` keeps one record per hashret
collection: code length, feature dimension, layout, the next id and a state, ``"ready"`` or
``"loading"``. A bulk load (:mod:`hashret.shards`) marks its collection ``"loading"``
until the last row is in; opening a loading collection fails, so nothing half-loaded is
ever searched as if complete.

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

**Hierarchical search.** :meth:`MilvusIndex.hierarchical_search` takes the Hamming
candidates and re-ranks them by Euclidean distance on the stored features, either inside
Milvus (a float search filtered to the candidate ids, one request per query) or in the
client (the candidates' features fetched, distances computed by
:class:`hashret.search.HierarchicalSearcher`); the ``"array"`` layout re-ranks in the
client only. ``benchmarks/milvus.py`` and ``benchmarks/milvus_server.py`` measure them.

Writers: one at a time per collection (ids are assigned by the client). Milvus Lite
opens a database file in one process at a time.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import re
import shutil
import tempfile
import time
import uuid
import warnings
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from hashret.index._faiss import sort_rows
from hashret.index.base import HammingIndex, RangeResult, check_int
from hashret.index.metadata import ItemMeta

if TYPE_CHECKING:
    from hashret.search import SearchResult

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
_INSERT_BYTES = 1 << 20
#: Searches and fetches read at Session consistency: they see this process's writes and (the
#: strong query made when a collection is opened having synced it) everything written before
#: the open. Strong reads wait for the server's next time tick: about 0.2 s per request on a
#: Milvus 2.3 server (1.5-3 ms at Session); the loading protocol's counts stay Strong.
_SESSION = "Session"
#: Largest ARRAY capacity of Milvus 2.3 (and so the "array" layout's feature dimension).
ARRAY_CAPACITY = 4096
#: How features are stored: a FLOAT_VECTOR field (2.4+), or a scalar ARRAY of FLOAT (2.3+).
LAYOUTS = ("vector", "array")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_INSTALL = "pip install 'hashret[milvus]'"

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
    if name is not None and (not _NAME.match(name) or name == REGISTRY):
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
            f"the milvus index backend needs pymilvus: {_INSTALL} (pymilvus 2.5 and, for local "
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
                f"setuptools<81 for its pkg_resources import): {_INSTALL}; or connect to a server "
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
    """Binary codes (and optionally float features and metadata) in a Milvus collection.

    Exact: ``search`` and ``range_search`` return exactly what the numpy reference
    :class:`hashret.index.FlatIndex` returns on the same codes, ties included (see the
    module docstring for how). Ids are hashret's: insertion order, never reused after
    :meth:`remove`.

    Args:
        bits: code length (8..256).
        uri: ``"file.db"`` (embedded), ``"http://host:19530"`` (server / cluster), or
            ``None`` (a temporary embedded database; see :func:`connect`).
        token: credentials for a server (``"user:password"`` or an API key).
        collection: collection name (letters, digits, ``_``). An existing hashret
            collection is opened (its code length must be ``bits``); ``None`` makes a
            temporary one, dropped when this object is garbage-collected.
        feature_dim: store ``float32[d]`` features per item for the re-rank (fixed when
            the collection is created; ``None`` when opening takes the collection's).
        layout: how features are stored, ``"vector"`` (a FLOAT_VECTOR field; Milvus 2.4+)
            or ``"array"`` (a scalar ARRAY field, re-rank in the client; Milvus 2.3+);
            ``None``: ``"vector"`` where the engine allows it, else ``"array"``. An
            existing collection keeps the layout it was made with.
        overwrite: drop an existing collection of that name first.
        timeout: seconds to wait for the connection and for a new collection to load.

    Raises:
        ImportError: pymilvus / milvus-lite missing (``pip install 'hashret[milvus]'``).
        MilvusUnavailableError: Milvus unreachable at ``uri``.
        ValueError: a bad collection name; an existing collection of another code length,
            feature dimension or layout, not made by hashret, or left half-loaded by a bulk
            load; a layout the server cannot store.
    """

    name: ClassVar[str] = "milvus"
    exact: ClassVar[bool] = True
    exact_range: ClassVar[bool] = True

    def __init__(self, bits: int, *, uri: str | None = None, token: str | None = None,
                 collection: str | None = None, feature_dim: int | None = None, layout: str | None = None,
                 overwrite: bool = False, timeout: float = 30.0) -> None:
        super().__init__(bits)
        self._open(uri, token, collection, feature_dim, layout, overwrite=overwrite, timeout=timeout,
                   loading=False)

    @classmethod
    def open_for_loading(cls, bits: int, *, uri: str | None, token: str | None, collection: str,
                         feature_dim: int | None, layout: str | None = None,
                         timeout: float = 30.0) -> MilvusIndex:
        """Create or reopen ``collection`` in the ``"loading"`` state (bulk loads only; see
        :func:`hashret.shards.load_shards_milvus`). :meth:`mark_ready` ends it."""
        self = cls.__new__(cls)
        HammingIndex.__init__(self, bits)
        self._open(uri, token, collection, feature_dim, layout, overwrite=False, timeout=timeout,
                   loading=True)
        return self

    @classmethod
    def open(cls, uri: str, collection: str = "", *, token: str | None = None,
             timeout: float = 30.0) -> MilvusIndex:
        """Open an existing hashret collection; its code length and features come from its record.

        ``uri`` may be a ``milvus://HOST:PORT/COLLECTION`` location (:func:`parse_milvus_uri`),
        whose collection must then agree with ``collection`` (or ``collection=""``).

        Raises:
            LookupError: no hashret collection of that name there (names the load command).
            MilvusUnavailableError, ValueError: as for the constructor.
        """
        loc = parse_milvus_uri(uri)
        if loc.collection and collection and loc.collection != collection:
            raise ValueError(f"--milvus {uri} names collection {loc.collection!r}, --collection "
                             f"{collection!r}: give one of them")
        name = loc.collection or collection
        client = connect(loc.uri, token, timeout=timeout)
        record = read_record(client, name) if name and client.has_collection(name) else None
        if record is None:
            raise LookupError(
                f"no hashret collection {name!r} at {loc.uri}: load one with `hashret index load-shards "
                f"SHARDS_DIR --milvus milvus://HOST:PORT/{name or 'COLLECTION'}`, or check the name"
            )
        return cls(int(record["bits"]), uri=loc.uri, token=token, collection=name, timeout=timeout)

    # ------------------------------------------------------------------ connection
    def _open(self, uri: str | None, token: str | None, collection: str | None, feature_dim: int | None,
              layout: str | None, *, overwrite: bool, timeout: float, loading: bool) -> None:
        self.uri = temporary_uri() if uri is None else str(uri)
        self.timeout = float(timeout)
        self.client = connect(self.uri, token, timeout=timeout)
        self.temporary = collection is None
        name = f"hashret_tmp_{uuid.uuid4().hex[:16]}" if collection is None else str(collection)
        if not _NAME.match(name) or name == REGISTRY:
            raise ValueError(
                f"--collection {name!r} is not valid in Milvus: use letters, digits and '_', "
                f"starting with a letter or '_', at most 255 characters (and not {REGISTRY!r})"
            )
        self.collection = name
        if feature_dim is not None:
            feature_dim = check_int(feature_dim, "feature_dim", minimum=1)
        if layout is not None and layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)} (or None: chosen by the server's "
                             f"version), got {layout!r}")
        self._ensure_registry()
        record = self._record()
        exists = self.client.has_collection(name)
        if exists and overwrite:
            self.client.drop_collection(name)
            exists = False
        if exists:
            self._check_record(record, feature_dim, layout, loading)
            self.feature_dim: int | None = record.get("feature_dim")
            self.layout: str | None = _record_layout(record)
            self.build: dict[str, Any] | None = record.get("build")
            self._state = "loading" if loading else record["state"]
            self._next_id = int(record["next_id"])
            self.client.load_collection(name)
            self._repair_next_id()
        else:
            self.feature_dim = feature_dim
            self.layout = None if feature_dim is None else self._choose_layout(layout, feature_dim)
            self.build = None
            self._state = "loading" if loading else "ready"
            self._next_id = 0
            self._create()
        self._orm = None
        if self.temporary:  # dropped with this object, not at exit (the engine stops then)
            fin = weakref.finalize(self, _drop_quietly, self.client, name)
            fin.atexit = False

    def _choose_layout(self, wanted: str | None, feature_dim: int) -> str:
        """The features' layout for a new collection on this engine (or a ValueError with the fix)."""
        caps = server_features(self.client, self.uri)
        where = f"Milvus {caps.version} at {self.uri}"
        if wanted is None:
            wanted = "vector" if caps.multiple_vectors else "array"
        if wanted == "vector" and not caps.multiple_vectors:
            raise ValueError(
                f"{where} keeps one vector field per collection (Milvus before 2.4), so it cannot store the "
                "re-rank features as a vector: leave the layout to hashret (layout=None: the 'array' layout, "
                "re-rank in the client), or upgrade the server to Milvus 2.4 or newer"
            )
        if wanted == "array" and not caps.arrays:
            raise ValueError(
                f"{where} has no ARRAY fields (Milvus before 2.3) to store the re-rank features: upgrade the "
                "server to Milvus 2.3 or newer, or load the codes without features"
            )
        if wanted == "array" and feature_dim > ARRAY_CAPACITY:
            raise ValueError(
                f"{feature_dim}-d features exceed the {ARRAY_CAPACITY} values a Milvus ARRAY holds ('array' "
                f"layout, used by {where}): store fewer feature dimensions, or use Milvus 2.4 or newer "
                "(the 'vector' layout)"
            )
        return wanted

    def _check_record(self, record: dict[str, Any] | None, feature_dim: int | None, layout: str | None,
                      loading: bool) -> None:
        name = self.collection
        if record is None:
            raise ValueError(
                f"Milvus collection {name!r} at {self.uri} was not made by hashret (no record in "
                f"{REGISTRY!r}): choose another --collection, or pass --overwrite to replace it"
            )
        if record["bits"] != self.bits:
            raise ValueError(
                f"Milvus collection {name!r} holds {record['bits']}-bit codes, this index is "
                f"{self.bits}-bit: choose another --collection, or pass --overwrite to replace it"
            )
        if feature_dim is not None and record.get("feature_dim") != feature_dim:
            raise ValueError(
                f"Milvus collection {name!r} stores features of dimension {record.get('feature_dim')}, "
                f"not {feature_dim}: choose another --collection, or pass --overwrite to replace it"
            )
        have = _record_layout(record)
        if layout is not None and have is not None and have != layout:
            raise ValueError(
                f"Milvus collection {name!r} stores its features in the {have!r} layout, not {layout!r}: "
                "open it without a layout, or pass --overwrite to replace it"
            )
        if record["state"] == "loading" and not loading:
            raise ValueError(
                f"Milvus collection {name!r} is being bulk-loaded, or its load stopped part-way: "
                "resume it with the same `hashret index load-shards` command, or replace it with --overwrite"
            )

    def _ensure_registry(self) -> None:
        if self.client.has_collection(REGISTRY):
            return
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        dt = import_pymilvus().DataType
        schema.add_field("name", dt.VARCHAR, is_primary=True, max_length=255)
        schema.add_field("info", dt.JSON)
        schema.add_field("v", dt.FLOAT_VECTOR, dim=2)  # Milvus needs a vector field in a collection
        params = self.client.prepare_index_params()
        params.add_index("v", index_type="FLAT", metric_type="L2")
        self._create_collection(REGISTRY, schema, params)

    def _record(self) -> dict[str, Any] | None:
        return read_record(self.client, self.collection)

    def _write_record(self) -> None:
        info = {"bits": self.bits, "feature_dim": self.feature_dim, "layout": self.layout,
                "next_id": self._next_id, "state": self._state, "build": self.build, "format": 1}
        self.client.upsert(REGISTRY, [{"name": self.collection, "info": info, "v": [0.0, 0.0]}])

    def _create(self) -> None:
        dt = import_pymilvus().DataType
        about = f"hashret: {self.bits}-bit codes" + (
            f", {self.feature_dim}-d features in the {self.layout!r} layout" if self.feature_dim else "")
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False, description=about)
        schema.add_field("id", dt.INT64, is_primary=True)
        schema.add_field("code", dt.BINARY_VECTOR, dim=self.dim)
        params = self.client.prepare_index_params()
        params.add_index("code", index_type="BIN_FLAT", metric_type="HAMMING")
        if self.feature_dim is not None and self.layout == "vector":
            schema.add_field("features", dt.FLOAT_VECTOR, dim=self.feature_dim)
            params.add_index("features", index_type="FLAT", metric_type="L2")
        elif self.feature_dim is not None:  # "array": one vector field per collection (Milvus 2.3)
            schema.add_field("features", dt.ARRAY, element_type=dt.FLOAT, max_capacity=self.feature_dim)
        schema.add_field("source", dt.VARCHAR, max_length=65535)
        schema.add_field("label", dt.INT64)
        schema.add_field("class_name", dt.VARCHAR, max_length=1024)
        schema.add_field("extra", dt.VARCHAR, max_length=65535)
        self._write_record()  # first: a collection without a record is never taken for ours
        self._create_collection(self.collection, schema, params)

    def _create_collection(self, name: str, schema: Any, params: Any) -> None:
        """Create, index and load a collection, polling (pymilvus's own wait sleeps 0.5 s)."""
        self.client.create_collection(name, schema=schema, consistency_level="Strong")
        self.client.create_index(name, params, sync=False)  # sent and acknowledged; not waited for
        fields = [p.field_name for p in params]
        self._wait(lambda: all((self.client.describe_index(name, f) or {}).get("state") == "Finished"
                               for f in fields), f"indexing the new collection {name!r}")
        self.client.load_collection(name, _async=True)  # the request is acknowledged; not waited for
        self._wait(lambda: str(self.client.get_load_state(name)["state"]).endswith("Loaded"),
                   f"loading the new collection {name!r}")

    def _wait(self, done: Any, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        delay = 0.002
        while not done():
            if time.monotonic() > deadline:
                raise MilvusUnavailableError(f"Milvus at {self.uri} did not finish {what} "
                                             f"in {self.timeout} s")
            time.sleep(delay)
            delay = min(2 * delay, 0.2)

    def _repair_next_id(self) -> None:
        """Ids beyond the recorded next id (an add that died before updating the record)."""
        while True:
            rows = self._query(f"id >= {self._next_id}", ["id"], MAX_LIMIT, consistency_level="Strong")
            if not rows:
                return
            self._next_id = max(int(r["id"]) for r in rows) + 1
            if self._state != "loading":
                self._write_record()

    # ------------------------------------------------------------------ properties
    def __len__(self) -> int:
        res = self.client.query(self.collection, filter="", output_fields=["count(*)"],
                                consistency_level=_SESSION)
        return int(res[0]["count(*)"])

    @property
    def next_id(self) -> int:
        """The id the next added item gets."""
        return self._next_id

    @property
    def state(self) -> str:
        """``"ready"``, or ``"loading"`` while a bulk load fills the collection."""
        return self._state

    def info(self) -> dict[str, Any]:
        """A summary: uri, collection, bits, feature dimension, layout, items, next id, state."""
        return {"uri": self.uri, "collection": self.collection, "bits": self.bits,
                "feature_dim": self.feature_dim, "layout": self.layout, "items": len(self),
                "next_id": self._next_id, "state": self._state}

    # ------------------------------------------------------------------ writing
    def add(self, codes: np.ndarray, features: np.ndarray | None = None,
            items: Sequence[ItemMeta] | None = None) -> np.ndarray:
        """Add items; returns their ids ``int64[m]`` (``next_id .. next_id + m - 1``).

        Args:
            codes: ``uint8[m, nbytes]`` packed codes.
            features: ``float[m, feature_dim]``, required when the collection stores features.
            items: per-item metadata (source, label, class name, extra; images are not
                stored in Milvus). Default: source ``""``, label ``-1``.

        Raises:
            ValueError: bad codes, features of another dimension / NaN, missing or
                unexpected features, or a count mismatch. Nothing is written then.
        """
        c = self.check_codes(codes, "codes")
        f = self._check_features(features, len(c))
        if items is not None and len(items) != len(c):
            raise ValueError(f"{len(items)} metadata items for {len(c)} codes: give one per code")
        if len(c) == 0:
            return np.zeros(0, np.int64)
        ids = np.arange(self._next_id, self._next_id + len(c), dtype=np.int64)
        self.insert_rows(ids, c, f, items)
        self._next_id = int(ids[-1]) + 1
        self._write_record()
        return ids

    def insert_rows(self, ids: np.ndarray, codes: np.ndarray, features: np.ndarray | None,
                    items: Sequence[ItemMeta] | None) -> None:
        """Insert validated rows with the given ids (bulk loads; :meth:`add` assigns ids)."""
        row_bytes = codes.shape[1] + (4 * features.shape[1] if features is not None else 0) + 64
        step = max(1, _INSERT_BYTES // row_bytes)
        for lo in range(0, len(codes), step):
            sl = slice(lo, lo + step)
            meta = list(items[sl]) if items is not None else None
            n = len(codes[sl])
            columns: list[Any] = [ids[sl].tolist(), [bytes(r) for r in codes[sl]]]
            if self.feature_dim is not None:
                columns.append(np.ascontiguousarray(features[sl], dtype=np.float32))
            columns += [
                [m.source for m in meta] if meta else [""] * n,
                [int(m.label) for m in meta] if meta else [-1] * n,
                [m.class_name or "" for m in meta] if meta else [""] * n,
                [json.dumps(m.extra) if m.extra else "" for m in meta] if meta else [""] * n,
            ]
            with self._writing("inserting rows"):
                # columnar: about twice as fast as row dicts. timeout: without it (or with a float,
                # which pymilvus's retry ignores) a write to a stopped server retries 75 times (3.5 min)
                self._collection_orm().insert(columns, timeout=max(1, round(self.timeout)))
        self._next_id = max(self._next_id, int(ids[-1]) + 1) if len(ids) else self._next_id

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Delete items by id; returns how many were deleted.

        Raises:
            KeyError: an id not in the collection (nothing is deleted then).
        """
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if len(ids) == 0:
            return 0
        found = set()
        for lo in range(0, len(ids), MAX_LIMIT):
            chunk = ids[lo : lo + MAX_LIMIT]
            rows = self._query(_id_in(chunk), ["id"], len(chunk), consistency_level="Strong")
            found.update(int(r["id"]) for r in rows)
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            raise KeyError(f"no item with id {', '.join(map(str, missing[:5]))} in Milvus collection "
                           f"{self.collection!r} (unknown or removed)")
        for lo in range(0, len(ids), MAX_LIMIT):
            self.client.delete(self.collection, ids=ids[lo : lo + MAX_LIMIT].tolist())
        return len(ids)

    def delete_id_range(self, start: int, stop: int) -> None:
        """Delete every item with ``start <= id < stop`` (a bulk load redoing a part)."""
        self.client.delete(self.collection, filter=f"id >= {int(start)} and id < {int(stop)}")

    def count_id_range(self, start: int, stop: int) -> int:
        """Items with ``start <= id < stop``."""
        res = self.client.query(self.collection, filter=f"id >= {int(start)} and id < {int(stop)}",
                                output_fields=["count(*)"])
        return int(res[0]["count(*)"])

    def set_build(self, build: dict[str, Any] | None) -> None:
        """Record what a bulk load is loading (checked when it resumes)."""
        self.build = build
        self._write_record()

    def mark_ready(self) -> None:
        """End a bulk load: the collection opens for search from now on."""
        self._state = "ready"
        self._write_record()

    def drop(self) -> None:
        """Delete the collection and its record."""
        drop_collection(self.client, self.collection)

    def _reset(self) -> None:
        self.client.drop_collection(self.collection)
        self._next_id = 0
        self._orm = None
        self._create()

    def _add(self, codes: np.ndarray) -> None:  # pragma: no cover - add() is overridden
        self.add(codes)

    @contextlib.contextmanager
    def _writing(self, what: str) -> Iterator[None]:
        """A write that fails because the server went away: a MilvusUnavailableError saying what
        is left (nothing is searchable half-written: the record keeps the old count or "loading")."""
        pymilvus = import_pymilvus()
        try:
            yield
        except pymilvus.MilvusException as e:
            if self._state == "loading":
                then = ("the collection stays marked as loading: start Milvus again and run the same "
                        "`hashret index load-shards` command to resume")
            else:
                then = ("some of this add's items may be in: start Milvus again (reopening the collection "
                        "counts them) and check what it holds before adding again")
            raise MilvusUnavailableError(f"Milvus at {self.uri} failed while {what} into collection "
                                         f"{self.collection!r} ({e.message}): {then}") from e

    def _collection_orm(self) -> Any:
        if self._orm is None:
            self._orm = import_pymilvus().Collection(self.collection, using=self.client._using)
        return self._orm

    def _check_features(self, features: np.ndarray | None, n: int) -> np.ndarray | None:
        if self.feature_dim is None:
            if features is not None:
                raise ValueError(
                    f"Milvus collection {self.collection!r} stores no features (created without "
                    "feature_dim): create it with feature_dim=d to keep features for the re-rank"
                )
            return None
        if features is None:
            raise ValueError(f"Milvus collection {self.collection!r} stores {self.feature_dim}-d features "
                             "for the re-rank: pass features= with the codes")
        f = np.asarray(features)
        if f.ndim != 2 or f.shape != (n, self.feature_dim) or f.dtype.kind != "f":
            raise ValueError(f"features must be float [{n}, {self.feature_dim}] (one row per code, the "
                             f"collection's feature dimension), got {f.dtype} {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError("features contain NaN or infinity: the model produced invalid features")
        return f.astype(np.float32, copy=False)

    # ------------------------------------------------------------------ reading
    def get_items(self, ids: Sequence[int] | np.ndarray) -> list[ItemMeta]:
        """Metadata of items, in the order asked. Raises KeyError for an unknown id."""
        ids = np.asarray(ids, dtype=np.int64).ravel()
        rows = self._fetch(ids, ["source", "label", "class_name", "extra"])
        return [ItemMeta(r["source"], int(r["label"]), r["class_name"] or None,
                         json.loads(r["extra"]) if r["extra"] else {}) for r in rows]

    def get_features(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stored ``float32[m, feature_dim]`` features of items, in the order asked.

        Raises:
            ValueError: the collection stores no features.
            KeyError: an unknown id.
        """
        if self.feature_dim is None:
            raise ValueError(f"Milvus collection {self.collection!r} stores no features")
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) == 0:
            return np.zeros((0, self.feature_dim), np.float32)
        rows = self._fetch(ids, ["features"])
        return np.asarray([r["features"] for r in rows], dtype=np.float32).reshape(len(ids), self.feature_dim)

    def _query(self, filter: str, fields: list[str], limit: int, **kw: Any) -> list[dict[str, Any]]:
        """``client.query``; an empty answer of Milvus Lite 2.5.1 on a collection with an ARRAY
        field fails to parse in pymilvus ("Unsupported data type: 0"): confirmed empty by a count."""
        pymilvus = import_pymilvus()
        try:
            return list(self.client.query(self.collection, filter=filter, output_fields=fields, limit=limit,
                                          **kw))
        except pymilvus.MilvusException as e:
            if "Unsupported data type: 0" not in str(e.message):
                raise
            res = self.client.query(self.collection, filter=filter, output_fields=["count(*)"], **kw)
            if int(res[0]["count(*)"]):
                raise
            return []

    def _fetch(self, ids: np.ndarray, fields: list[str]) -> list[dict[str, Any]]:
        uniq = np.unique(ids)
        found: dict[int, dict[str, Any]] = {}
        for lo in range(0, len(uniq), MAX_LIMIT):
            chunk = uniq[lo : lo + MAX_LIMIT]
            for r in self._query(_id_in(chunk), fields, len(chunk), consistency_level=_SESSION):
                found[int(r["id"])] = r
        missing = [int(i) for i in uniq if int(i) not in found]
        if missing:
            raise KeyError(f"no item with id {', '.join(map(str, missing[:5]))} in Milvus collection "
                           f"{self.collection!r}")
        return [found[int(i)] for i in ids]

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
                                     search_params={"metric_type": "HAMMING"}, consistency_level=_SESSION)
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
        todo = [(np.arange(len(queries)), 0, self._next_id, min(_BAND_LIMIT, MAX_LIMIT))]
        params = {"metric_type": "HAMMING", "params": {"radius": hi + 1, "range_filter": lo}}
        while todo:
            rows, a, b, limit = todo.pop()
            window = "" if (a, b) == (0, self._next_id) else f"id >= {a} and id < {b}"
            full = []
            step = max(1, _MAX_RESULTS // limit)
            for start in range(0, len(rows), step):
                part = rows[start : start + step]
                res = self.client.search(self.collection, data=[bytes(q) for q in queries[part]],
                                         anns_field="code", limit=limit, filter=window,
                                         output_fields=[], search_params=params, consistency_level=_SESSION)
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

    # ------------------------------------------------------------------ hierarchical search
    def hierarchical_search(self, query_codes: np.ndarray, query_features: np.ndarray | None, k: int, *,
                            candidates: int | None = None, radius: int | None = None, rerank: bool = True,
                            ties: bool = False, rerank_in: str | None = None) -> list[SearchResult]:
        """Coarse Hamming candidates, then a Euclidean re-rank on the stored features.

        Args:
            query_codes: ``uint8[q, nbytes]`` packed codes.
            query_features: ``float[q, feature_dim]`` (needed with ``rerank``).
            k: results per query (``>= 1``).
            candidates: pool = top-N by Hamming distance (default ``max(k, 1000)`` with
                ``rerank``, else ``k``); or ``radius``: every item within that distance.
            rerank: ``False`` returns the pool's first ``k`` in Hamming order.
            ties: widen a top-N pool to every item at its N-th Hamming distance (as
                :meth:`hashret.search.HierarchicalSearcher.search`).
            rerank_in: ``"milvus"``: one float search per query filtered to its candidate
                ids (the ``"vector"`` layout only); ``"client"``: the candidates' features
                are fetched and compared here. ``None``: ``"milvus"`` for the ``"vector"``
                layout, ``"client"`` for ``"array"``.

        Returns:
            one :class:`hashret.search.SearchResult` per query (indices are ids), sorted by
            (Euclidean, Hamming, id). Both ways give the same ids, except that ``"milvus"``
            orders by Milvus's float32 distances, which may differ from the client's in the
            last bits (an order can swap where two distances are that close).

        Raises:
            ValueError: no features stored, bad arguments, an empty collection, or
                ``rerank_in="milvus"`` on the ``"array"`` layout.
        """
        k = check_int(k, "k", minimum=1)
        if rerank_in is None:
            rerank_in = "milvus" if self.layout == "vector" else "client"
        if rerank_in not in ("milvus", "client"):
            raise ValueError(f"rerank_in must be 'milvus' or 'client', got {rerank_in!r}")
        if rerank and self.feature_dim is None:
            raise ValueError(f"Milvus collection {self.collection!r} stores no features to re-rank on: "
                             "create it with feature_dim=d, or search with rerank=False")
        if rerank and rerank_in == "milvus" and self.layout != "vector":
            raise ValueError(f"Milvus collection {self.collection!r} stores its features as an array (the "
                             f"{self.layout!r} layout, for Milvus before 2.4), which Milvus cannot compare: "
                             "re-rank with rerank_in='client' (the default for this layout)")
        if radius is None and candidates is None:
            candidates = max(k, 1000) if rerank else k
        from hashret.search import HierarchicalSearcher  # hashret.search imports hashret.index

        view = _FeatureView(self)
        searcher = HierarchicalSearcher(self, view)
        if not rerank or rerank_in == "client":
            return searcher.search(query_codes, query_features, k, candidates=candidates, radius=radius,
                                   rerank=rerank, ties=ties)
        codes = self.check_codes(query_codes, "query_codes")
        qf = searcher.check_query_features(query_features, len(codes))
        pools = searcher.pools(codes, candidates=candidates, radius=radius, ties=ties)
        return [self._rerank_in_milvus(q, d, i, k) for q, (d, i) in zip(qf, pools, strict=True)]

    def _rerank_in_milvus(self, query: np.ndarray, hamming: np.ndarray, ids: np.ndarray,
                          k: int) -> SearchResult:
        """Top ``k`` of one pool by (Euclidean, Hamming, id), distances computed by Milvus."""
        got_i, got_d = [], []
        for lo in range(0, len(ids), MAX_LIMIT):
            chunk = ids[lo : lo + MAX_LIMIT]
            limit = min(k + 1, len(chunk))
            hits = self._l2_search(query, chunk, limit)
            if limit < len(chunk) and hits[1][-1] == hits[1][k - 1]:  # tied at the boundary: all of them
                hits = self._l2_search(query, chunk, len(chunk))
            got_i.append(hits[0])
            got_d.append(hits[1])
        i = np.concatenate(got_i) if got_i else np.zeros(0, np.int64)
        d2 = np.concatenate(got_d) if got_d else np.zeros(0, np.float32)
        ham = dict(zip(ids.tolist(), hamming.tolist(), strict=True))
        h = np.array([ham[int(x)] for x in i], dtype=np.int32)
        euclid = np.sqrt(np.maximum(d2, 0)).astype(np.float32)
        order = np.lexsort((i, h, euclid))[:k]
        from hashret.search import SearchResult

        return SearchResult(i[order], h[order], euclid[order])

    def _l2_search(self, query: np.ndarray, ids: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        res = self.client.search(self.collection, data=[query.astype(np.float32)], anns_field="features",
                                 limit=limit, filter=_id_in(ids), output_fields=[],
                                 search_params={"metric_type": "L2"}, consistency_level=_SESSION)
        return np.asarray(res[0].ids, np.int64), np.asarray(res[0].distances, np.float32)


class _FeatureView:
    """A collection's stored features as the array-like :class:`HierarchicalSearcher` reads:
    ``view[ids]`` fetches those items' features from Milvus."""

    def __init__(self, index: MilvusIndex) -> None:
        self.index = index
        self.shape = (len(index), int(index.feature_dim or 0))
        self.ndim = 2
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        return self.index.get_features(ids)


def _record_layout(record: dict[str, Any]) -> str | None:
    """The features' layout a record names (records before layouts: "vector")."""
    if record.get("feature_dim") is None:
        return None
    return record.get("layout") or "vector"


def read_record(client: Any, collection: str) -> dict[str, Any] | None:
    """hashret's record of ``collection`` (bits, feature_dim, next_id, state, build), or None."""
    if not client.has_collection(REGISTRY):
        return None
    _ensure_loaded(client, REGISTRY)
    rows = client.get(REGISTRY, ids=[collection], output_fields=["info"])
    return dict(rows[0]["info"]) if rows else None


def _ensure_loaded(client: Any, name: str) -> None:
    """Load a collection that is not (a restarted Milvus 2.3 server reloads its collections in the
    background: reading one before that fails with "collection not loaded")."""
    if not str(client.get_load_state(name)["state"]).endswith("Loaded"):
        client.load_collection(name)


def drop_collection(client: Any, collection: str) -> None:
    """Delete a collection and hashret's record of it (no error when absent)."""
    if client.has_collection(collection):
        client.drop_collection(collection)
    if client.has_collection(REGISTRY):
        client.delete(REGISTRY, ids=[collection])


def _id_in(ids: np.ndarray) -> str:
    return f"id in [{','.join(map(str, np.asarray(ids).tolist()))}]"


def _drop_quietly(client: Any, name: str) -> None:
    try:
        client.drop_collection(name)
        client.delete(REGISTRY, ids=[name])
    except Exception:  # noqa: BLE001 - best effort: the engine may be gone already
        pass
