"""A Milvus collection as a :class:`hashret.store.base.Collection`: codes, features, metadata.

One Milvus collection per hashret collection, one record per item::

    id          INT64 primary key   hashret's id: insertion order 0, 1, ... (never reused)
    code        BINARY_VECTOR       the packed code (8 * nbytes bits), BIN_FLAT / HAMMING
    features    FLOAT_VECTOR        float32 re-rank features, FLAT / L2, in the "vector" layout
                                    (Milvus 2.4+ and Milvus Lite 2.5)
                or ARRAY of FLOAT   in the "array" layout (Milvus 2.3: one vector field per
                                    collection; at most 4,096 dimensions)
    source      VARCHAR             where the item came from
    label       INT64               class index, -1 when unknown
    class_name  VARCHAR             class name, "" when unknown
    extra       VARCHAR             any other per-item fields, as JSON text ("" when none)
    file_sha256 VARCHAR             hex SHA-256 of the file the item was added from ("" when none)
    image       VARCHAR             the thumbnail, PNG bytes in base64 ("" when none, or when it
                                    would exceed the 65,535 characters a VARCHAR holds)

(Collections made before ``file_sha256`` and ``image`` existed, format 1, are read without them.)

**Where to find one.** A location names the engine and the collection (:func:`parse_location`):
``milvus://HOST:PORT/NAME`` (a server or cluster; ``milvus+https://`` for TLS; credentials in
a token, never in the URI), or ``FILE.db`` / ``FILE.db:NAME`` (the embedded Milvus Lite).
The name defaults to ``hashret``.

**Layouts.** Milvus before 2.4 refuses a second vector field in a collection ("multiple
vector fields is not supported"), so where the server is older (its version, or a probe when
it does not say), features are stored as a scalar ``ARRAY`` of float32 and the re-rank runs in
the client on the fetched features (exact float32 arithmetic, as the numpy reference). On 2.4+
the features are a ``FLOAT_VECTOR`` and the re-rank may run inside Milvus. The layout chosen is
recorded, so a reopened collection keeps it; ``layout=`` forces one, and a server that lacks
what it needs is refused with the fix named.

**Records.** The collection ``hashret_collections`` keeps one record per hashret collection:
code length, feature dimension, layout, the next id, the model that made the codes (its
SHA-256, config and where its file was), a build record and a state, ``"ready"`` or
``"loading"``. A bulk load (:mod:`hashret.shards`) marks its collection ``"loading"`` until
the last row is in; opening a loading collection fails, so nothing half-loaded is ever
searched as if complete. An add writes its rows, then the record's next id: an add that dies
in between leaves rows beyond the recorded next id, which the next open finds and counts
(no id is ever given twice).

**Search.** The Hamming stage is :class:`hashret.index.milvus.MilvusIndex` over the ``code``
field (exact, ties by id); the re-rank is :class:`hashret.search.HierarchicalSearcher` on the
candidates' fetched features, or (``rerank_in="milvus"``, the ``"vector"`` layout) a float
search filtered to the candidate ids. ``benchmarks/milvus.py`` and
``benchmarks/milvus_server.py`` measure them.

Writers: one at a time per collection (ids are assigned by the client). Milvus Lite opens a
database file in one process at a time.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import uuid
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashret.codes import check_bits, check_codes
from hashret.index.base import check_int
from hashret.index.milvus import (
    INSERT_BYTES,
    MAX_LIMIT,
    NAME,
    REGISTRY,
    SESSION,
    MilvusIndex,
    MilvusUnavailableError,
    connect,
    count_rows,
    create_collection,
    id_in,
    import_pymilvus,
    parse_milvus_uri,
    query,
    server_features,
    temporary_uri,
)
from hashret.io import file_sha256
from hashret.search import HierarchicalSearcher, SearchResult
from hashret.store.base import Collection
from hashret.store.manifest import IndexCorruptError
from hashret.store.metadata import ItemMeta

#: Seconds to wait for a connection (an unreachable server is reported after this; the longer
#: ``timeout`` of a collection is for its writes and for a new collection's index and load)
CONNECT_TIMEOUT = 10.0
#: Largest ARRAY capacity of Milvus 2.3 (and so the "array" layout's feature dimension).
ARRAY_CAPACITY = 4096
#: How features are stored: a FLOAT_VECTOR field (2.4+), or a scalar ARRAY of FLOAT (2.3+).
LAYOUTS = ("vector", "array")
#: The collection name a location without one means.
DEFAULT_NAME = "hashret"
#: Record format: 2 added the ``file_sha256`` and ``image`` fields and the model record.
FORMAT = 2
#: Most characters of a VARCHAR field (the thumbnail's base64 must fit).
VARCHAR_MAX = 65535
_META_FIELDS = ["source", "label", "class_name", "extra"]
#: ``FILE.db:NAME``: an embedded database and a collection in it (":" is literal in every shell)
_LITE = re.compile(r"^(.+\.db):([^/\\:]*)$", re.IGNORECASE)


@dataclass(frozen=True)
class MilvusPlace:
    """A Milvus collection's place: ``uri`` as :func:`hashret.index.milvus.connect` takes it, and its name."""

    uri: str
    name: str

    def __str__(self) -> str:
        if self.uri.startswith(("http://", "https://")):
            scheme = "milvus+https" if self.uri.startswith("https://") else "milvus"
            return f"{scheme}://{self.uri.split('://', 1)[1]}/{self.name}"
        return f"{self.uri}:{self.name}"


def is_milvus_location(text: str | Path) -> bool:
    """Whether ``text`` names a Milvus collection rather than an index directory."""
    t = str(text).strip()
    low = t.lower()
    return (low.startswith(("milvus://", "milvus+https://", "http://", "https://"))
            or low.endswith(".db") or _LITE.match(t) is not None)


def parse_location(text: str | Path, collection: str | None = None) -> MilvusPlace:
    """Read a Milvus collection's location: ``milvus://HOST:PORT/NAME``, ``http://HOST:PORT``,
    ``FILE.db`` or ``FILE.db:NAME``; ``collection`` names it when the location does not (and
    must agree when it does). The name defaults to :data:`DEFAULT_NAME`.

    Raises:
        ValueError: a malformed location, a bad name, or two names that differ.
    """
    t = str(text).strip()
    given: str | None = None
    lite = _LITE.match(t) if "://" not in t else None
    if lite is not None:
        t, given = lite.group(1), lite.group(2)
        if not NAME.match(given) or given == REGISTRY:
            raise ValueError(f"{text}: {given!r} is not a valid collection name (letters, digits and '_', "
                             "starting with a letter or '_'): use FILE.db:NAME")
    else:
        loc = parse_milvus_uri(t)
        t, given = loc.uri, loc.collection
        if "://" not in t and not t.lower().endswith(".db"):
            raise ValueError(f"{text} is neither a Milvus server address (milvus://HOST:PORT/NAME) nor "
                             "an embedded database file: a Milvus Lite database is a file whose name ends in "
                             ".db (FILE.db or FILE.db:NAME)")
    if collection and given and collection != given:
        raise ValueError(f"{text} names collection {given!r}, --collection {collection!r}: give one of them")
    name = given or collection or DEFAULT_NAME
    if not NAME.match(name) or name == REGISTRY:
        raise ValueError(f"--collection {name!r} is not valid in Milvus: use letters, digits and '_', "
                         f"starting with a letter or '_', at most 255 characters (and not {REGISTRY!r})")
    return MilvusPlace(t, name)


class MilvusCollection(Collection):
    """A hashret collection kept in Milvus (see the module docstring).

    Make one with :meth:`create`, open one with :meth:`open`; bulk loads use
    :meth:`open_for_loading`. ``MilvusCollection.create(None, ...)`` makes a temporary one in
    the process's temporary embedded database, dropped with the object.

    Raises (every way in):
        ImportError: pymilvus / milvus-lite missing (``pip install 'hashret[milvus]'``).
        MilvusUnavailableError: Milvus unreachable.
    """

    engine = "milvus"

    def __init__(self, place: MilvusPlace, client: Any, record: dict[str, Any], *, writable: bool,
                 timeout: float, temporary: bool = False) -> None:
        self.place = place
        self.uri, self.collection = place.uri, place.name
        self.client = client
        self.timeout = float(timeout)
        self.writable = writable
        self._bits = int(record["bits"])
        self._feature_dim: int | None = record.get("feature_dim")
        self.layout: str | None = _record_layout(record)
        self.build: dict[str, Any] | None = record.get("build")
        self._model: dict[str, Any] = dict(record.get("model") or {})
        self._state = str(record.get("state", "ready"))
        self._next_id = int(record.get("next_id", 0))
        self._count = int(record.get("count", 0))
        self._format = int(record.get("format", 1))
        self._orm: Any = None
        self.index = MilvusIndex.over(client, self.uri, self.collection, self._bits, lambda: self._next_id,
                                      lambda: self._count, timeout)
        if temporary:  # dropped with this object, not at exit (the engine stops then)
            fin = weakref.finalize(self, _drop_quietly, client, self.collection)
            fin.atexit = False

    # ------------------------------------------------------------------ ways in
    @classmethod
    def create(cls, location: str | Path | None, *, bits: int, feature_dim: int | None,
               collection: str | None = None, token: str | None = None, layout: str | None = None,
               model: dict[str, Any] | None = None, model_file: str | Path | None = None,
               overwrite: bool = False, timeout: float = 30.0) -> MilvusCollection:
        """Create an empty collection, open for writing.

        Args:
            location: ``milvus://HOST:PORT/NAME``, ``FILE.db[:NAME]``, or ``None`` for a temporary
                collection in the process's temporary embedded database.
            bits: code length (8..256).
            feature_dim: dimension of the features kept for the re-rank (``None``: codes only).
            collection: the name, where the location gives none.
            token: credentials for a server (``"user:password"`` or an API key).
            layout: ``"vector"`` / ``"array"`` (see the module docstring); ``None`` chooses by
                the engine's version.
            model: what to record of the model that makes the codes (:meth:`hashret.encoder.Encoder.record`).
            model_file: where its checkpoint is (recorded with its SHA-256, found again at open).
            overwrite: drop an existing collection of that name first.

        Raises:
            FileExistsError: the collection exists and ``overwrite`` is False.
            ValueError: bad bits, name, feature dimension or layout; a layout the engine cannot
                store; a name taken by a collection hashret did not make.
        """
        temporary = location is None
        place = (MilvusPlace(temporary_uri(), f"hashret_tmp_{uuid.uuid4().hex[:16]}") if temporary
                 else parse_location(location, collection))  # type: ignore[arg-type]
        bits = check_bits(bits)
        if feature_dim is not None:
            feature_dim = check_int(feature_dim, "feature_dim", minimum=1)
        if layout is not None and layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {', '.join(LAYOUTS)} (or None: chosen by the server's "
                             f"version), got {layout!r}")
        client = connect(place.uri, token, timeout=min(timeout, CONNECT_TIMEOUT))
        _ensure_registry(client, place.uri, timeout)
        if client.has_collection(place.name):
            if read_record(client, place.name) is None:
                raise FileExistsError(f"{place} is a collection hashret did not make: choose another "
                                      "name (hashret never drops a collection it did not make, --overwrite "
                                      "or not)")
            if not overwrite:
                raise FileExistsError(f"{place} already holds a hashret collection: choose another name, "
                                      "or pass --overwrite to replace it")
            drop_collection(client, place.name)
        model = json.loads(json.dumps(model or {}))
        if model_file is not None:
            model["file_path"] = str(Path(model_file).resolve())
            model.setdefault("sha256", file_sha256(model_file))
        chosen = None if feature_dim is None else _choose_layout(client, place, layout, feature_dim)
        record = {"bits": bits, "feature_dim": feature_dim, "layout": chosen,
                  "next_id": 0, "state": "ready", "build": None, "model": model, "format": FORMAT}
        self = cls(place, client, record, writable=True, timeout=timeout, temporary=temporary)
        self._create()
        return self

    @classmethod
    def open(cls, location: str | Path, *, collection: str | None = None, token: str | None = None,
             writable: bool = False, timeout: float = 30.0) -> MilvusCollection:
        """Open an existing hashret collection (its code length, features and model come from its record).

        Raises:
            LookupError: no hashret collection of that name there (names how to make one).
            ValueError: a collection hashret did not make, or one left half-loaded by a bulk load.
        """
        place = parse_location(location, collection)
        client = connect(place.uri, token, timeout=min(timeout, CONNECT_TIMEOUT))
        record = _existing_record(client, place)
        if record.get("state") == "loading":
            raise ValueError(
                f"Milvus collection {place} is being bulk-loaded, or its load stopped part-way: resume it "
                "with the same `hashret index load-shards` command, or replace it with --overwrite"
            )
        self = cls(place, client, record, writable=writable, timeout=timeout)
        _ensure_loaded(client, place.name)
        self._repair_next_id()
        self._recount()
        return self

    @classmethod
    def open_for_loading(cls, location: str | Path, *, bits: int, feature_dim: int | None,
                         collection: str | None = None, token: str | None = None,
                         model: dict[str, Any] | None = None, model_file: str | Path | None = None,
                         layout: str | None = None, timeout: float = 30.0) -> MilvusCollection:
        """Create or reopen a collection in the ``"loading"`` state (bulk loads only; see
        :func:`hashret.shards.load_shards_milvus`). :meth:`mark_ready` ends it.

        Raises:
            ValueError: an existing collection of another code length, feature dimension or
                layout, or one that is loaded already.
        """
        place = parse_location(location, collection)
        client = connect(place.uri, token, timeout=min(timeout, CONNECT_TIMEOUT))
        _ensure_registry(client, place.uri, timeout)
        if not client.has_collection(place.name):
            self = cls.create(location, collection=collection, bits=bits, feature_dim=feature_dim,
                              token=token, layout=layout, model=model, model_file=model_file, timeout=timeout)
            self._state = "loading"
            self._write_record()
            return self
        record = _existing_record(client, place)
        problems = [f"{what} {have} (this load: {want})" for what, have, want in (
            ("code length", record["bits"], bits),
            ("feature dimension", record.get("feature_dim"), feature_dim),
            ("layout", _record_layout(record), layout or _record_layout(record)))
            if have != want]
        if problems:
            raise ValueError(f"Milvus collection {place} has {'; '.join(problems)}: choose another name, "
                             "or pass --overwrite to replace it")
        self = cls(place, client, record, writable=True, timeout=timeout)
        self._state = "loading"
        _ensure_loaded(client, place.name)
        self._repair_next_id()
        self._recount()
        return self

    # ------------------------------------------------------------------ what it is
    @property
    def location(self) -> str:
        return str(self.place)

    @property
    def bits(self) -> int:
        return self._bits

    @property
    def nbytes(self) -> int:
        return (self._bits + 7) // 8

    @property
    def feature_dim(self) -> int | None:
        return self._feature_dim

    @property
    def next_id(self) -> int:
        """The id the next added item gets."""
        return self._next_id

    @property
    def state(self) -> str:
        """``"ready"``, or ``"loading"`` while a bulk load fills the collection."""
        return self._state

    @property
    def model_record(self) -> dict[str, Any]:
        return {k: v for k, v in self._model.items() if k != "file_path"}

    def model_file(self) -> Path | None:
        """The checkpoint recorded at creation, if this machine still has it.

        Raises:
            ValueError: a file is there but it is not the model that made the codes.
        """
        path = self._model.get("file_path")
        if not path or not Path(path).is_file():
            return None
        if self._model.get("sha256") and file_sha256(path) != self._model["sha256"]:
            raise ValueError(f"{path} is no longer the model that made the codes of {self.location} (its "
                             "SHA-256 changed): pass --model PATH to that model's model.safetensors")
        return Path(path)

    def __len__(self) -> int:
        """Live items, as this client keeps count (counted by Milvus at every open, kept in the
        record by every write; :meth:`refresh` reads other writers' counts)."""
        return self._count

    def __repr__(self) -> str:
        return f"MilvusCollection({self.location!r}, bits={self.bits}, feature_dim={self.feature_dim})"

    def info(self) -> dict[str, Any]:
        """A summary: engine, location, items, bits, features and layout, next id, state, model, build."""
        return {"engine": self.engine, "location": self.location, "uri": self.uri,
                "collection": self.collection, "items": len(self), "bits": self.bits,
                "feature_dim": self.feature_dim,
                "feature_storage": None if self.feature_dim is None else "float32",
                "layout": self.layout, "backend": "milvus", "next_id": self._next_id, "state": self._state,
                "format": self._format, "model_sha256": self._model.get("sha256"),
                "model": self._model.get("config"), "build": self.build}

    def close(self) -> None:
        self.writable = False

    def refresh(self) -> bool:
        """Read the record again (another writer's adds: the next id, the build); Milvus itself
        answers every search with what is committed. Returns whether the record changed."""
        record = read_record(self.client, self.collection)
        if record is None:
            raise LookupError(f"Milvus collection {self.location} was dropped while open: load it again")
        before = (self._next_id, self._count, self.build, self._state)
        self._next_id = max(self._next_id, int(record["next_id"]))
        self._count = int(record.get("count", self._count))
        self.build, self._state = record.get("build"), str(record.get("state", "ready"))
        return before != (self._next_id, self._count, self.build, self._state)

    # ------------------------------------------------------------------ writing
    def add(self, codes: np.ndarray, features: np.ndarray | None, items: Sequence[ItemMeta] | None = None,
            *, build: dict[str, Any] | None = None) -> np.ndarray:
        """Add items; returns their ids ``int64[m]`` (``next_id .. next_id + m - 1``).

        Args:
            codes: ``uint8[m, nbytes]`` packed codes.
            features: ``float[m, feature_dim]``, required when the collection keeps features.
            items: per-item metadata (default: source ``""``, label ``-1``).
            build: replaces the record's build progress after the rows are in.

        Raises:
            ValueError: bad codes, features of another dimension / NaN, missing or unexpected
                features, a count mismatch, or a collection opened read-only. Nothing is written then.
            MilvusUnavailableError: Milvus failed part-way (says what may be in).
        """
        self._check_writable()
        c = check_codes(codes, self.bits, "codes")
        f = self._check_features(features, len(c))
        if items is not None and len(items) != len(c):
            raise ValueError(f"{len(items)} metadata items for {len(c)} codes: give one per code")
        if len(c) == 0:
            return np.zeros(0, np.int64)
        ids = np.arange(self._next_id, self._next_id + len(c), dtype=np.int64)
        self.insert_rows(ids, c, f, items)
        if build is not None:
            self.build = build
        self._write_record()
        return ids

    def insert_rows(self, ids: np.ndarray, codes: np.ndarray, features: np.ndarray | None,
                    items: Sequence[ItemMeta] | None) -> None:
        """Insert validated rows with the given ids (bulk loads; :meth:`add` assigns ids)."""
        row_bytes = codes.shape[1] + (4 * features.shape[1] if features is not None else 0) + 64
        step = max(1, INSERT_BYTES // row_bytes)
        for lo in range(0, len(codes), step):
            sl = slice(lo, lo + step)
            meta = list(items[sl]) if items is not None else [ItemMeta("")] * len(codes[sl])
            columns: list[Any] = [ids[sl].tolist(), [bytes(r) for r in codes[sl]]]
            if self.feature_dim is not None:
                columns.append(np.ascontiguousarray(features[sl], dtype=np.float32))  # type: ignore[index]
            columns += [[m.source for m in meta], [int(m.label) for m in meta],
                        [m.class_name or "" for m in meta],
                        [json.dumps(m.extra) if m.extra else "" for m in meta]]
            if self._format >= 2:
                columns += [[m.file_sha256 or "" for m in meta], [_image_text(m.image) for m in meta]]
            with self._writing("inserting rows"):
                # columnar: about twice as fast as row dicts. timeout: without it (or with a float,
                # which pymilvus's retry ignores) a write to a stopped server retries 75 times (3.5 min)
                self._collection_orm().insert(columns, timeout=max(1, round(self.timeout)))
            self._count += len(columns[0])
        self._next_id = max(self._next_id, int(ids[-1]) + 1) if len(ids) else self._next_id

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Delete items by id; returns how many were deleted.

        Raises:
            KeyError: an id not in the collection (nothing is deleted then).
        """
        self._check_writable()
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        if len(ids) == 0:
            return 0
        self._fetch(ids, ["id"], consistency_level="Strong")  # KeyError for unknown / removed ids
        with self._writing("deleting rows"):
            for lo in range(0, len(ids), MAX_LIMIT):
                self.client.delete(self.collection, ids=ids[lo : lo + MAX_LIMIT].tolist())
        self._count -= len(ids)
        self._write_record()
        return len(ids)

    def delete_id_range(self, start: int, stop: int) -> None:
        """Delete every item with ``start <= id < stop`` (a bulk load redoing a part)."""
        self.client.delete(self.collection, filter=f"id >= {int(start)} and id < {int(stop)}")
        self._recount()

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
        self._recount()
        self._write_record()

    def drop(self) -> None:
        """Delete the collection and its record."""
        drop_collection(self.client, self.collection)

    # ------------------------------------------------------------------ reading
    def get_items(self, ids: Sequence[int] | np.ndarray, *, image: bool = False) -> list[ItemMeta]:
        """Metadata of live items, in the order asked (with the thumbnail when ``image``).

        Raises:
            KeyError: an unknown or removed id.
        """
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) == 0:
            return []
        fields = _META_FIELDS + (["file_sha256"] + (["image"] if image else []) if self._format >= 2 else [])
        rows = self._fetch(ids, fields)
        return [ItemMeta(r["source"], int(r["label"]), r["class_name"] or None,
                         json.loads(r["extra"]) if r["extra"] else {},
                         image=base64.b64decode(r["image"]) if r.get("image") else None,
                         file_sha256=r.get("file_sha256") or None) for r in rows]

    def ids_with_image(self, ids: Sequence[int] | np.ndarray) -> set[int]:
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) == 0:
            return set()
        self._fetch(ids, ["id"])  # KeyError for unknown or removed ids
        if self._format < 2:
            return set()
        uniq = np.unique(ids)  # (the thumbnails themselves stay on the server)
        rows = query(self.client, self.collection, f'{id_in(uniq)} and image != ""', ["id"], len(uniq),
                     consistency_level=SESSION)
        return {int(r["id"]) for r in rows}

    def get_features(self, ids: Sequence[int] | np.ndarray) -> np.ndarray:
        """Stored ``float32[m, feature_dim]`` features of items, in the order asked.

        Raises:
            ValueError: the collection keeps no features.
            KeyError: an unknown id.
        """
        if self.feature_dim is None:
            raise ValueError(f"Milvus collection {self.location} keeps no features")
        ids = np.asarray(ids, dtype=np.int64).ravel()
        if len(ids) == 0:
            return np.zeros((0, self.feature_dim), np.float32)
        rows = self._fetch(ids, ["features"])
        return np.asarray([r["features"] for r in rows], dtype=np.float32).reshape(len(ids), self.feature_dim)

    def item_vectors(self, item_id: int) -> tuple[np.ndarray, np.ndarray]:
        """An item's ``code uint8[nbytes]`` and ``features float32[feature_dim]`` (as stored)."""
        fields = ["code"] + (["features"] if self.feature_dim else [])
        row = self._fetch(np.array([item_id], np.int64), fields)[0]
        code = row["code"]
        code = code[0] if isinstance(code, list) else code
        feats = np.asarray(row.get("features", []), np.float32)
        return np.frombuffer(bytes(code), np.uint8)[: self.nbytes].copy(), feats

    def find_files(self, sha256s: Sequence[str]) -> dict[str, int]:
        if self._format < 2 or not len(sha256s):
            return {}
        out: dict[str, int] = {}
        wanted = sorted({str(s) for s in sha256s if s})
        for lo in range(0, len(wanted), 1000):
            chunk = wanted[lo : lo + 1000]
            names = ",".join(json.dumps(s) for s in chunk)
            for r in query(self.client, self.collection, f"file_sha256 in [{names}]", ["id", "file_sha256"],
                           MAX_LIMIT, consistency_level=SESSION):
                out.setdefault(r["file_sha256"], int(r["id"]))
        return out

    def verify(self) -> None:
        """Check the record against the collection: the state, the schema the layout needs, and
        that no stored id is at or beyond the recorded next id.

        Raises:
            IndexCorruptError: what disagrees, with the fix.
        """
        problems = []
        if self._state != "ready":
            problems.append(f"it is marked {self._state!r}")
        fields = {f["name"]: f for f in self.client.describe_collection(self.collection)["fields"]}
        need = ["id", "code", *_META_FIELDS] + (["features"] if self.feature_dim else [])
        if self._format >= 2:
            need += ["file_sha256", "image"]
        missing = [n for n in need if n not in fields]
        if missing:
            problems.append(f"its fields lack {', '.join(missing)}")
        beyond = query(self.client, self.collection, f"id >= {self._next_id}", ["id"], 5,
                       consistency_level="Strong")
        if beyond:
            problems.append(f"ids at or beyond the recorded next id {self._next_id} are stored "
                            f"({', '.join(str(r['id']) for r in beyond)})")
        held = count_rows(self.client, self.collection)
        if held != self._count:
            problems.append(f"it holds {held} items, the record says {self._count}")
        if problems:
            raise IndexCorruptError(f"Milvus collection {self.location}: {'; '.join(problems)}: reload it "
                                    "(`hashret index build ... --out LOCATION --overwrite`)")

    # ------------------------------------------------------------------ search
    def search(self, query_codes: np.ndarray, query_features: np.ndarray | None = None, k: int = 10, *,
               candidates: int | None = None, radius: int | None = None, rerank: bool = False,
               features_stored: bool = False, ties: bool | None = None,
               rerank_in: str | None = None) -> list[SearchResult]:
        """As :meth:`hashret.store.base.Collection.search` (``features_stored`` changes nothing:
        features are kept as given, in float32).

        Args:
            rerank_in: ``"milvus"``: one float search per query filtered to its candidate ids
                (the ``"vector"`` layout only; 9x faster than the client at 200k items,
                ``benchmarks/results/milvus-server-cpu2.md``); ``"client"``: the candidates'
                features are fetched and compared here. ``None``: ``"milvus"`` for the ``"vector"``
                layout, ``"client"`` for ``"array"``. Both give the same ids; ``"milvus"`` orders by
                Milvus's float32 distances, which may differ from the client's in the last bits (an
                order can swap where two distances are that close).
        """
        k = check_int(k, "k", minimum=1)
        rerank_in = rerank_in or ("milvus" if self.layout == "vector" else "client")
        if rerank_in not in ("milvus", "client"):
            raise ValueError(f"rerank_in must be 'milvus' or 'client', got {rerank_in!r}")
        if rerank and self.feature_dim is None:
            raise ValueError(f"Milvus collection {self.location} keeps no features to re-rank on: "
                             "create it with feature_dim=d, or search with rerank=False")
        if rerank and rerank_in == "milvus" and self.layout != "vector":
            raise ValueError(f"Milvus collection {self.location} keeps its features as an array (the "
                             f"{self.layout!r} layout, for Milvus before 2.4), which Milvus cannot compare: "
                             "re-rank with rerank_in='client' (the default for this layout)")
        if rerank and query_features is None:
            raise ValueError("rerank=True needs the queries' float features (query_features)")
        if len(self) == 0:
            raise ValueError(f"the collection {self.location} is empty: add items first "
                             "(`hashret index add`)")
        if radius is None and candidates is None:
            candidates = max(k, 1000) if rerank else k
        if ties is None:
            ties = rerank and candidates is not None
        ties = bool(ties and candidates is not None)
        searcher = HierarchicalSearcher(self.index, _FeatureView(self))
        if not rerank or rerank_in == "client":
            return searcher.search(query_codes, query_features, k, candidates=candidates, radius=radius,
                                   rerank=rerank, ties=ties)
        codes = self.index.check_codes(query_codes, "query_codes")
        qf = searcher.check_query_features(query_features, len(codes))
        pools = searcher.pools(codes, candidates=candidates, radius=radius, ties=ties)
        return [self._rerank_in_milvus(q, d, i, k) for q, (d, i) in zip(qf, pools, strict=True)]

    def _rerank_in_milvus(self, query_f: np.ndarray, hamming: np.ndarray, ids: np.ndarray,
                          k: int) -> SearchResult:
        """Top ``k`` of one pool by (Euclidean, Hamming, id), distances computed by Milvus."""
        got_i, got_d = [], []
        for lo in range(0, len(ids), MAX_LIMIT):
            chunk = ids[lo : lo + MAX_LIMIT]
            limit = min(k + 1, len(chunk))
            hits = self._l2_search(query_f, chunk, limit)
            if limit < len(chunk) and hits[1][-1] == hits[1][k - 1]:  # tied at the boundary: all of them
                hits = self._l2_search(query_f, chunk, len(chunk))
            got_i.append(hits[0])
            got_d.append(hits[1])
        i = np.concatenate(got_i) if got_i else np.zeros(0, np.int64)
        d2 = np.concatenate(got_d) if got_d else np.zeros(0, np.float32)
        ham = dict(zip(ids.tolist(), hamming.tolist(), strict=True))
        h = np.array([ham[int(x)] for x in i], dtype=np.int32)
        euclid = np.sqrt(np.maximum(d2, 0)).astype(np.float32)
        order = np.lexsort((i, h, euclid))[:k]
        return SearchResult(i[order], h[order], euclid[order])

    def _l2_search(self, query_f: np.ndarray, ids: np.ndarray, limit: int) -> tuple[np.ndarray, np.ndarray]:
        res = self.client.search(self.collection, data=[query_f.astype(np.float32)], anns_field="features",
                                 limit=limit, filter=id_in(ids), output_fields=[],
                                 search_params={"metric_type": "L2"}, consistency_level=SESSION)
        return np.asarray(res[0].ids, np.int64), np.asarray(res[0].distances, np.float32)

    # ------------------------------------------------------------------ internals
    def _create(self) -> None:
        dt = import_pymilvus().DataType
        about = f"hashret: {self.bits}-bit codes" + (
            f", {self.feature_dim}-d features in the {self.layout!r} layout" if self.feature_dim else "")
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False, description=about)
        schema.add_field("id", dt.INT64, is_primary=True)
        schema.add_field("code", dt.BINARY_VECTOR, dim=8 * self.nbytes)
        params = self.client.prepare_index_params()
        params.add_index("code", index_type="BIN_FLAT", metric_type="HAMMING")
        if self.feature_dim is not None and self.layout == "vector":
            schema.add_field("features", dt.FLOAT_VECTOR, dim=self.feature_dim)
            params.add_index("features", index_type="FLAT", metric_type="L2")
        elif self.feature_dim is not None:  # "array": one vector field per collection (Milvus 2.3)
            schema.add_field("features", dt.ARRAY, element_type=dt.FLOAT, max_capacity=self.feature_dim)
        schema.add_field("source", dt.VARCHAR, max_length=VARCHAR_MAX)
        schema.add_field("label", dt.INT64)
        schema.add_field("class_name", dt.VARCHAR, max_length=1024)
        schema.add_field("extra", dt.VARCHAR, max_length=VARCHAR_MAX)
        schema.add_field("file_sha256", dt.VARCHAR, max_length=64)
        schema.add_field("image", dt.VARCHAR, max_length=VARCHAR_MAX)
        self._write_record()  # first: a collection without a record is never taken for ours
        create_collection(self.client, self.collection, schema, params, self.uri, self.timeout)

    def _write_record(self) -> None:
        info = {"bits": self.bits, "feature_dim": self.feature_dim, "layout": self.layout,
                "next_id": self._next_id, "count": self._count, "state": self._state, "build": self.build,
                "model": self._model, "format": self._format}
        self.client.upsert(REGISTRY, [{"name": self.collection, "info": info, "v": [0.0, 0.0]}])

    def _repair_next_id(self) -> None:
        """Ids beyond the recorded next id (an add that died before updating the record)."""
        while True:
            rows = query(self.client, self.collection, f"id >= {self._next_id}", ["id"], MAX_LIMIT,
                         consistency_level="Strong")
            if not rows:
                return
            self._next_id = max(int(r["id"]) for r in rows) + 1
            if self._state != "loading" and self.writable:
                self._write_record()

    def _recount(self) -> None:
        """Take Milvus's count (Strong; see :func:`hashret.index.milvus.count_rows`), recording it
        where it corrects the record (a writer that died between its rows and its record)."""
        n = count_rows(self.client, self.collection)
        if n != self._count:
            self._count = n
            if self._state != "loading" and self.writable:
                self._write_record()

    def _check_writable(self) -> None:
        if not self.writable:
            raise ValueError(f"Milvus collection {self.location} was opened read-only: open it with "
                             "writable=True to add or remove items")

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
                then = ("some of this write's items may be in: start Milvus again (reopening the collection "
                        "counts them) and check what it holds before writing again")
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
                    f"Milvus collection {self.location} keeps no features (created without "
                    "feature_dim): create it with feature_dim=d to keep features for the re-rank"
                )
            return None
        if features is None:
            raise ValueError(f"Milvus collection {self.location} keeps {self.feature_dim}-d features "
                             "for the re-rank: pass features with the codes")
        f = np.asarray(features)
        if f.ndim != 2 or f.shape != (n, self.feature_dim) or f.dtype.kind != "f":
            raise ValueError(f"features must be float [{n}, {self.feature_dim}] (one row per code, the "
                             f"collection's feature dimension), got {f.dtype} {f.shape}")
        if not np.isfinite(f).all():
            raise ValueError("features contain NaN or infinity: the model produced invalid features")
        return f.astype(np.float32, copy=False)

    def _fetch(self, ids: np.ndarray, fields: list[str], **kw: Any) -> list[dict[str, Any]]:
        """Rows of ``ids`` in that order (repeats allowed); KeyError naming unknown ones."""
        uniq = np.unique(ids)
        found: dict[int, dict[str, Any]] = {}
        kw.setdefault("consistency_level", SESSION)
        for lo in range(0, len(uniq), MAX_LIMIT):
            chunk = uniq[lo : lo + MAX_LIMIT]
            for r in query(self.client, self.collection, id_in(chunk), fields, len(chunk), **kw):
                found[int(r["id"])] = r
        missing = [int(i) for i in uniq if int(i) not in found]
        if missing:
            raise KeyError(f"no item with id {', '.join(map(str, missing[:5]))} in Milvus collection "
                           f"{self.location} (unknown or removed)")
        return [found[int(i)] for i in ids]


class _FeatureView:
    """A collection's stored features as the array-like :class:`HierarchicalSearcher` reads:
    ``view[ids]`` fetches those items' features from Milvus."""

    def __init__(self, coll: MilvusCollection) -> None:
        self.coll = coll
        self.shape = (len(coll), int(coll.feature_dim or 0))
        self.ndim = 2
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, ids: np.ndarray) -> np.ndarray:
        return self.coll.get_features(ids)


def _image_text(image: bytes | None) -> str:
    """A thumbnail as the ``image`` field keeps it: base64, or "" when absent or too long."""
    if not image:
        return ""
    text = base64.b64encode(image).decode("ascii")
    return text if len(text) <= VARCHAR_MAX else ""


def _choose_layout(client: Any, place: MilvusPlace, wanted: str | None, feature_dim: int) -> str:
    """The features' layout for a new collection on this engine (or a ValueError with the fix)."""
    caps = server_features(client, place.uri)
    where = f"Milvus {caps.version} at {place.uri}"
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


def _existing_record(client: Any, place: MilvusPlace) -> dict[str, Any]:
    record = read_record(client, place.name) if client.has_collection(place.name) else None
    if record is not None:
        return record
    if client.has_collection(place.name):
        raise ValueError(f"Milvus collection {place} was not made by hashret (no record in {REGISTRY!r}): "
                         "choose another collection (hashret never writes into or drops one it did not make)")
    raise LookupError(
        f"no hashret collection {place.name!r} at {place.uri}: make one with `hashret index build RUN --out "
        f"{place}` (or `hashret index load-shards SHARDS_DIR --milvus {place}`), or check the name"
    )


def _ensure_registry(client: Any, uri: str, timeout: float) -> None:
    if client.has_collection(REGISTRY):
        return
    schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
    dt = import_pymilvus().DataType
    schema.add_field("name", dt.VARCHAR, is_primary=True, max_length=255)
    schema.add_field("info", dt.JSON)
    schema.add_field("v", dt.FLOAT_VECTOR, dim=2)  # Milvus needs a vector field in a collection
    params = client.prepare_index_params()
    params.add_index("v", index_type="FLAT", metric_type="L2")
    create_collection(client, REGISTRY, schema, params, uri, timeout)


def _record_layout(record: dict[str, Any]) -> str | None:
    """The features' layout a record names (records before layouts: "vector")."""
    if record.get("feature_dim") is None:
        return None
    return record.get("layout") or "vector"


def read_record(client: Any, collection: str) -> dict[str, Any] | None:
    """hashret's record of ``collection`` (bits, feature_dim, next_id, state, build, model), or None."""
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


def _drop_quietly(client: Any, name: str) -> None:
    try:
        drop_collection(client, name)
    except Exception:  # noqa: BLE001 - best effort at garbage collection: the engine may be gone already
        pass
