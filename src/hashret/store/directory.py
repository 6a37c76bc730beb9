"""A persistent index directory: codes, features, ids, metadata; atomic commits; search.

Layout of ``INDEX_DIR``::

    manifest.json            the commit point (hashret.store.manifest): files, checksums, model
    segments/<name>.codes.npy      uint8[m, nbytes]   packed codes of one batch of rows
    segments/<name>.features.npy   float16/32[m, d']  stored features (hashret.store.features)
    segments/<name>.ids.npy        int64[m]           item ids of those rows (increasing)
    removed-<generation>.npy int64[r], sorted ids removed since the last compaction
    pca-<generation>.npy     float32[p + 1, d] PCA mean + components (feature_storage="pca")
    model.safetensors        a copy of the checkpoint that made the codes (self-contained)
    metadata.sqlite          per-item source / label / class / thumbnail / file SHA-256 (WAL)
    metadata-<generation>.sums.npy  uint8[chunks, 32] the seal of metadata.sqlite
    write.lock               held (flock) by the one writer

Every data file is written under a temporary name, fsynced, renamed, and never changed
again; then the manifest that names it replaces the old one (fsync, rename, fsync of the
directory). So a crash (``kill -9``, power cut) at any point leaves the previous commit
readable, and readers that opened an older manifest keep reading its files. The metadata
database, the one file changed in place, is sealed by every commit (the SHA-256 of each
chunk of its bytes as of the commit, :mod:`hashret.store.sqlite_image`), so every byte of
the index is checked; the manifest carries its own checksum and is checked against the
stored ids at every open (``hashret index repair`` mends what can be rebuilt). One writer at
a time (``write.lock``); any number of readers, which see a new commit after ``refresh()``.

Ids are assigned in order (``0, 1, ...``), never reused, and survive compaction. Search
results carry ids; ties in Hamming distance go to the smaller id (database order), as in
:mod:`hashret.eval.ranking`.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hashret.codes import check_codes
from hashret.index.base import MISSING_INDEX, check_int
from hashret.index.filtered import FilteredIndex
from hashret.index.registry import create_index
from hashret.io import atomic_write, to_jsonable
from hashret.outdir import claim_dir
from hashret.search import HierarchicalSearcher, SearchResult
from hashret.store.base import Collection
from hashret.store.features import FeatureCodec, SegmentedRows
from hashret.store.manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    FileEntry,
    IndexCorruptError,
    Manifest,
    MetadataSeal,
    read_manifest,
    repair_hint,
    write_manifest,
)
from hashret.store.metadata import METADATA_FILE, ItemMeta, MetadataDB
from hashret.store.segments import SEGMENT_DIR, read_array, write_array, write_segment
from hashret.store.sqlite_image import (
    CHUNK_BYTES,
    Image,
    ImageChanged,
    WalMark,
    mismatched_chunks,
    read_wal,
    seal,
)

MODEL_FILE = "model.safetensors"
LOCK_FILE = "write.lock"
#: every name an index directory holds (what ``overwrite`` may replace; nothing else is touched)
INDEX_ENTRIES = (MANIFEST_FILE, f"{METADATA_FILE}*", SEGMENT_DIR, MODEL_FILE, LOCK_FILE, "removed-*.npy",
                 "pca-*.npy", "backend-*.npy", "metadata-*.sums.npy", ".*.tmp")
#: Verify every checksum at open when the index files total at most this many bytes.
VERIFY_AUTO_BYTES = 64 << 20
#: Merge the segments after the first one when there are more than this many.
MAX_SEGMENTS = 16


class IndexLockedError(RuntimeError):
    """Another process is writing this index."""


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


class IndexStore(Collection):
    """An index directory opened for reading (``IndexStore.open``) or writing (``create``,
    ``open(writable=True)``): the :class:`hashret.store.base.Collection` kept in files.
    Use as a context manager, or call :meth:`close`."""

    engine = "directory"

    def __init__(self, root: Path, manifest: Manifest, *, writable: bool, lock_fd: int | None) -> None:
        self.root = root
        self.writable = writable
        self._lock_fd = lock_fd
        self.manifest = manifest
        self.meta = MetadataDB(root, readonly=not writable)
        self._load(manifest)

    # ------------------------------------------------------------------ creation
    @classmethod
    def create(cls, root: str | Path, *, bits: int, feature_dim: int, feature_storage: str = "float16",
               pca_dim: int | None = None, backend: str = "popcount", model: dict[str, Any] | None = None,
               model_file: str | Path | None = None, overwrite: bool = False) -> IndexStore:
        """Create an empty index directory and open it for writing.

        Args:
            root: the directory (created; must not hold an index unless ``overwrite``).
            bits: code length (8..256).
            feature_dim: dimension ``d`` of the float features that ``add`` receives.
            feature_storage: ``"float16"`` (default), ``"float32"`` or ``"pca"``.
            pca_dim: stored dimension for ``"pca"`` (fitted on the first batch added).
            backend: Hamming search backend used at open (``hashret.index.list_indexes()``), or a
                spec with its options (``"faiss-ivf:nlist=256,nprobe=16"``), recorded as given; what it
                trains on the first codes (IVF centroids) is stored with them and reused at every open.
            model: identity of the model that makes the codes (``sha256``, ``config``, how to
                encode queries); recorded in the manifest.
            model_file: the checkpoint; copied into the index so it is self-contained.
            overwrite: replace an existing index at ``root``.

        Raises:
            FileExistsError: ``root`` already holds an index and ``overwrite`` is False.
            ValueError: bad bits / storage / backend / pca_dim.
        """
        root = Path(root)
        if (root / MANIFEST_FILE).exists() and not overwrite:
            raise FileExistsError(
                f"{root} already holds an index: add to it with `hashret index add`, or pass "
                "--overwrite to replace it"
            )
        create_index(backend, bits)  # validates bits and backend before anything is written
        if feature_storage == "pca":
            if pca_dim is None:
                raise ValueError("feature_storage='pca' needs pca_dim (e.g. 64)")
            check_int(pca_dim, "pca_dim", minimum=1)
            if pca_dim > feature_dim:
                raise ValueError(f"pca_dim={pca_dim} exceeds the feature dimension {feature_dim}")
        elif pca_dim is not None:
            raise ValueError("pca_dim is only used with feature_storage='pca'")
        check_int(feature_dim, "feature_dim", minimum=1)
        # a folder with anything but an index in it is refused (never written into, never emptied)
        claim_dir(root, "index", INDEX_ENTRIES, overwrite=overwrite, replace=False)
        lock_fd = _lock(root)
        try:
            if overwrite:  # the manifest goes first: a crash from here on leaves no index
                (root / MANIFEST_FILE).unlink(missing_ok=True)
                db = root / METADATA_FILE  # (a metadata.sqlite.damaged-* copy that repair kept stays)
                for path in [db, db.with_name(f"{db.name}-wal"), db.with_name(f"{db.name}-shm"),
                             *root.glob("removed-*.npy"),
                             *root.glob("pca-*.npy"), *root.glob("backend-*.npy"),
                             *root.glob("metadata-*.sums.npy"), root / MODEL_FILE]:
                    path.unlink(missing_ok=True)
                shutil.rmtree(root / SEGMENT_DIR, ignore_errors=True)
            model = json.loads(json.dumps(to_jsonable(model or {})))  # in memory as on disk
            if model_file is not None:
                model["file"] = _copy_file(Path(model_file), root, MODEL_FILE).__dict__
                model.setdefault("sha256", model["file"]["sha256"])
            manifest = Manifest(
                bits=bits, feature_dim=int(feature_dim), feature_storage=feature_storage,
                stored_dim=int(pca_dim or feature_dim), backend=backend, model=model,
                created=_now(), updated=_now(),
            )
            MetadataDB(root, readonly=False, create=True).close()
            manifest = manifest.evolve(metadata=seal_metadata(root, None, None, 0))
            write_manifest(root, manifest)
            return cls(root, manifest, writable=True, lock_fd=lock_fd)
        except BaseException:
            _unlock(lock_fd)
            raise

    @classmethod
    def open(cls, root: str | Path, *, writable: bool = False, verify: bool | None = None,
             backend: str | None = None) -> IndexStore:
        """Open an index directory.

        Args:
            root: the directory ``create`` / ``hashret index build`` wrote.
            writable: take the writer lock (one writer at a time) for ``add`` / ``remove``.
            verify: check every file's SHA-256 (reads everything); ``None`` does it when the
                files total at most 64 MiB. Sizes are always checked, so a truncated file is
                always detected.
            backend: search with another registered backend than the manifest's.

        Raises:
            FileNotFoundError: no index at ``root``.
            IndexCorruptError: a missing, truncated or (with checksums) corrupted file.
            IndexLockedError: ``writable`` while another process writes.
        """
        root = Path(root)
        lock_fd = _lock(root) if writable else None
        try:
            for attempt in range(3):  # a concurrent compaction may delete files between reads
                manifest = read_manifest(root)
                if backend is not None:
                    create_index(backend, manifest.bits)
                    kept = manifest.backend_state if backend == manifest.backend else None  # (another's)
                    manifest = manifest.evolve(backend=backend, backend_state=kept)
                try:
                    checked = _check_files(root, manifest, verify)
                    store = cls(root, manifest, writable=writable, lock_fd=lock_fd)
                    if checked:
                        try:
                            store._check_rows()
                        except BaseException:
                            store.meta.close()
                            raise
                    break
                except IndexCorruptError:
                    if attempt == 2 or read_manifest(root).generation == manifest.generation:
                        raise
            if writable:
                store._recover()
            return store
        except BaseException:
            _unlock(lock_fd)
            raise

    def close(self) -> None:
        if self.writable and self._lock_fd is not None:
            try:  # an add that failed between its rows and its commit: seal what SQLite holds
                self._purge_and_seal(removed=False)
            except (IndexCorruptError, OSError) as e:
                print(f"warning: {self.root}: {e}", file=sys.stderr)
        self.meta.close()
        _unlock(self._lock_fd)
        self._lock_fd = None
        self.writable = False

    def __enter__(self) -> IndexStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ properties
    @property
    def bits(self) -> int:
        return self.manifest.bits

    @property
    def nbytes(self) -> int:
        return self.manifest.nbytes

    @property
    def location(self) -> str:
        return str(self.root)

    @property
    def feature_dim(self) -> int:
        return self.manifest.feature_dim

    @property
    def model_record(self) -> dict[str, Any]:
        return dict(self.manifest.model)

    def model_file(self) -> Path | None:
        """The copy of the model kept in the directory, checked against its SHA-256 (``None``
        when the codes were added directly).

        Raises:
            IndexCorruptError: the copy is missing or changed.
        """
        entry = self.manifest.model.get("file")
        if not entry:
            return None
        FileEntry(**entry).check(self.root, checksum=True)
        return self.root / MODEL_FILE

    def __len__(self) -> int:
        """Live items (removed ones excluded)."""
        return self.manifest.count

    def __repr__(self) -> str:
        return (f"IndexStore({str(self.root)!r}, items={len(self)}, bits={self.bits}, "
                f"backend={self.manifest.backend!r}, generation={self.manifest.generation})")

    @property
    def ids(self) -> np.ndarray:
        """``int64[rows]`` the item id of every stored row (removed rows included)."""
        return self._ids

    def live_ids(self) -> np.ndarray:
        """``int64[count]`` the ids of the live items, increasing."""
        return self._ids[~self._removed]

    # ------------------------------------------------------------------ writing
    def add(self, codes: np.ndarray, features: np.ndarray, items: Sequence[ItemMeta] | None = None,
            *, build: dict[str, Any] | None = None) -> np.ndarray:
        """Add one batch of items in one commit; returns their new ids ``int64[m]``.

        Args:
            codes: ``uint8[m, nbytes]`` packed codes (hashret.codes).
            features: ``float[m, feature_dim]`` features of the same items.
            items: per-item metadata (default: source ``""``, label ``-1``).
            build: replaces the manifest's ``build`` progress record in the same commit
                (used by ``hashret index build`` to resume exactly where it stopped).

        Raises:
            ValueError: codes of another length, features of another dimension, NaN
                features, or a count mismatch. Nothing is written then.
        """
        self._check_writable()
        c = check_codes(codes, self.bits, "codes")
        if items is not None and len(items) != len(c):
            raise ValueError(f"{len(items)} metadata items for {len(c)} codes: give one per code")
        if len(features) != len(c):
            raise ValueError(f"{len(features)} feature rows for {len(c)} codes: give one per code")
        if not self._codec.fitted:
            self._codec.fit(features, self.manifest.stored_dim)  # the first batch fits the PCA
        f = self._codec.encode(features)  # validates dim / NaN before anything is written
        if len(c) == 0:
            return np.zeros(0, np.int64)
        m = self.manifest
        gen = m.generation + 1
        ids = np.arange(m.next_id, m.next_id + len(c), dtype=np.int64)
        changes: dict[str, Any] = {}
        if m.pca is None and self._codec.pca is not None:
            changes["pca"] = write_array(self.root, f"pca-{gen:06d}.npy", self._codec.pca)
        if m.backend_state is None and m.rows == 0:  # what the backend trains on the first codes
            state = create_index(m.backend, m.bits).fit_state(c)
            if state is not None:
                changes["backend_state"] = write_array(self.root, f"backend-{gen:06d}.npy",
                                                       np.frombuffer(state, np.uint8))
        seg = write_segment(self.root, f"seg-{gen:06d}", c, f, ids)
        self.meta.insert(ids, list(items) if items is not None else [ItemMeta("")] * len(c))
        new = m.evolve(generation=gen, next_id=int(ids[-1]) + 1, count=m.count + len(c),
                       segments=(*m.segments, seg), updated=_now(), metadata=self._seal(gen), **changes)
        if build is not None:
            new = new.evolve(build=build)
        self._commit(new)
        self.meta.checkpoint()
        if len(new.segments) > MAX_SEGMENTS:
            self.compact(full=False)
        return ids

    def remove(self, ids: Sequence[int] | np.ndarray) -> int:
        """Remove items by id in one commit; returns how many were removed.

        Raises:
            KeyError: an id that is not in the index (nothing is removed then).
        """
        self._check_writable()
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        rows = self._rows_of(ids)  # raises KeyError for unknown / removed ids
        if len(rows) == 0:
            return 0
        m = self.manifest
        gen = m.generation + 1
        removed = np.union1d(self._ids[self._removed], ids)
        entry = write_array(self.root, f"removed-{gen:06d}.npy", removed)
        self._commit(m.evolve(generation=gen, count=m.count - len(ids), removed=entry,
                              removed_count=len(removed), updated=_now()))
        self.meta.delete(ids)  # after the commit: a crash before it keeps the rows of live items
        self._commit(self.manifest.evolve(generation=gen + 1, metadata=self._seal(gen + 1)))
        self.meta.checkpoint()
        return len(ids)

    def compact(self, *, full: bool = True) -> None:
        """Rewrite segments: ``full`` merges all of them into one without the removed rows;
        otherwise only the segments after the first are merged (keeps tombstones)."""
        self._check_writable()
        m = self.manifest
        first = 0 if full else 1
        if (full and not m.removed_count and len(m.segments) <= 1) or len(m.segments) - first < 1 or (
                not full and len(m.segments) - first < 2):
            return
        gen = m.generation + 1
        segs = m.segments[first:]
        start = sum(s.rows for s in m.segments[:first])
        stop = start + sum(s.rows for s in segs)
        keep = ~self._removed[start:stop] if full else np.ones(stop - start, bool)
        codes = self.codes[start:stop][keep]
        ids = self._ids[start:stop][keep]
        feats = np.asarray(self._features[np.arange(start, stop)[keep]])
        new_segs = m.segments[:first]
        if len(ids):
            new_segs = (*new_segs, write_segment(self.root, f"seg-{gen:06d}", codes, feats, ids))
        new = m.evolve(generation=gen, segments=new_segs, updated=_now())
        if full:
            new = new.evolve(removed=None, removed_count=0)
        self._commit(new)

    def _commit(self, new: Manifest) -> None:
        """Make ``new`` the committed state, reload, and delete files no longer named."""
        old_files = {f.name for f in self.manifest.files()}
        write_manifest(self.root, new)
        self.manifest = new
        self._load(new)
        for name in old_files - {f.name for f in new.files()}:
            (self.root / name).unlink(missing_ok=True)

    def _recover(self) -> None:
        """Writer open: drop what a crashed writer left behind (never committed data), and
        seal the metadata database if it changed since the last commit (the rows of an add
        that died before its commit are deleted first) or was never sealed (format 1)."""
        names = {f.name for f in self.manifest.files()}
        for path in [*self.root.glob(f"{SEGMENT_DIR}/*"), *self.root.glob("removed-*.npy"),
                     *self.root.glob("pca-*.npy"), *self.root.glob("backend-*.npy"),
                     *self.root.glob("metadata-*.sums.npy"),
                     *self.root.glob(".*.tmp"), *self.root.glob(f"{SEGMENT_DIR}/.*.tmp")]:
            rel = str(path.relative_to(self.root))
            if rel not in names:
                path.unlink(missing_ok=True)
        self._purge_and_seal()
        self.meta.checkpoint()

    def _purge_and_seal(self, *, removed: bool = True) -> None:
        """Delete rows that no committed state names (ids ``>= next_id``: an add that died
        before its commit; with ``removed``, removed ids: a remove that died before deleting
        its rows), then commit a new seal if the database changed since the last one."""
        m = self.manifest
        self.meta.purge_from(m.next_id)
        if removed and m.removed_count:
            self.meta.delete(self._ids[self._removed])
        sealed = WalMark(*m.metadata.wal) if m.metadata is not None and m.metadata.wal else None
        if m.metadata is not None and read_wal(self.meta.path).mark() in (None, sealed):
            return
        gen = m.generation + 1
        self._commit(m.evolve(generation=gen, metadata=self._seal(gen), format_version=FORMAT_VERSION,
                              updated=_now()))

    def _seal(self, gen: int) -> MetadataSeal:
        """The seal of the metadata database as SQLite holds it now (for commit ``gen``)."""
        prev = self.manifest.metadata
        sums = None
        if prev is not None:
            if getattr(self, "_sums_of", None) != prev.sums:
                self._sums, self._sums_of = read_array(self.root, prev.sums, mmap=False), prev.sums
            sums = self._sums
        return seal_metadata(self.root, prev, sums, gen)

    def _check_writable(self) -> None:
        if not self.writable:
            raise PermissionError(
                f"{self.root} is open read-only: open it with IndexStore.open(path, writable=True)"
            )

    # ------------------------------------------------------------------ reading
    def refresh(self) -> bool:
        """Load the latest commit if another process changed the index; True if it did.

        Raises:
            IndexCorruptError: the latest commit's files are damaged (the state loaded
                before stays usable).
        """
        for attempt in range(3):  # a concurrent compaction may delete files between reads
            m = read_manifest(self.root)
            if m.generation == self.manifest.generation:
                return False
            m = m.evolve(backend=self.manifest.backend)
            try:
                _check_files(self.root, m, False)
                self._load(m)
            except IndexCorruptError:
                if attempt == 2 or read_manifest(self.root).generation == m.generation:
                    raise
                continue
            self.manifest = m
            return True
        return False

    def verify(self) -> None:
        """Check every file of the committed state against its SHA-256 (reads everything),
        the metadata database against its seal, and that every live item has its row.

        Raises:
            IndexCorruptError: the first file that is missing, truncated or corrupted.
        """
        _check_files(self.root, self.manifest, True)
        self._check_rows()

    def _check_rows(self) -> None:
        """Every live item has a metadata row, and every row below ``next_id`` is a stored id."""
        rows = self.meta.ids_below(self.manifest.next_id)
        live = self.live_ids()
        missing = live[~np.isin(live, rows, assume_unique=True)]
        stray = rows[~np.isin(rows, self._ids, assume_unique=True)]
        for what, bad in (("live items have no metadata row", missing),
                          ("metadata rows belong to no stored item", stray)):
            if len(bad):
                raise IndexCorruptError(
                    f"{self.root / METADATA_FILE}: {len(bad)} {what} (ids {', '.join(map(str, bad[:5]))}"
                    f"{', ...' if len(bad) > 5 else ''}): the database does not belong to this manifest; "
                    f"restore it from a backup, or {repair_hint(self.root)}"
                )

    def find_files(self, sha256s: Sequence[str]) -> dict[str, int]:
        """Live items added from a file with one of these hex SHA-256s: ``{sha256: id}``."""
        found = self.meta.find_files(sha256s, self.manifest.next_id)
        out = {}
        for sha, i in found.items():
            try:
                self._rows_of(np.array([i], np.int64))
            except KeyError:
                continue  # removed
            out[sha] = i
        return out

    def search(self, query_codes: np.ndarray, query_features: np.ndarray | None = None, k: int = 10, *,
               candidates: int | None = None, radius: int | None = None, rerank: bool = False,
               features_stored: bool = False, ties: bool | None = None) -> list[SearchResult]:
        """Top ``k`` items per query: Hamming only, or hierarchical (``rerank=True``).

        Args:
            query_codes: ``uint8[q, nbytes]`` packed codes of the index's length.
            query_features: ``float[q, feature_dim]`` (needed for ``rerank``); with
                ``features_stored`` they are already in the stored space (``stored_dim``),
                e.g. an indexed item's own stored features.
            k: results per query (``>= 1``).
            candidates: coarse stage pool = top-N by Hamming distance (default: ``k`` for
                Hamming only, ``max(k, 1000)`` with ``rerank``).
            radius: coarse stage pool = every item within this Hamming distance (inclusive)
                instead of ``candidates``.
            rerank: re-rank the pool by Euclidean distance on the stored features.
            ties: widen a top-N pool to every item at its N-th Hamming distance (see
                :meth:`hashret.search.HierarchicalSearcher.search`); default: with ``rerank``
                (so an indexed image finds itself even when thousands share its code).

        Returns:
            one :class:`hashret.search.SearchResult` per query whose ``indices`` are item ids.

        Raises:
            ValueError: bad codes / features, ``k <= 0``, or an empty index.
        """
        k = check_int(k, "k", minimum=1)
        if len(self) == 0:
            raise ValueError(f"the index {self.root} is empty: add items first (`hashret index add`)")
        if radius is None and candidates is None:
            candidates = max(k, 1000) if rerank else k
        qf = None
        if rerank:
            if query_features is None:
                raise ValueError("rerank=True needs the queries' float features (query_features)")
            qf = (np.asarray(query_features, dtype=np.float32) if features_stored
                  else self._codec.encode_query(query_features))
        if ties is None:
            ties = rerank and candidates is not None
        results = self._searcher.search(query_codes, qf, k, candidates=candidates, radius=radius,
                                        rerank=rerank, ties=bool(ties and candidates is not None))
        out = []
        for r in results:
            keep = r.indices != MISSING_INDEX
            out.append(SearchResult(self._ids[r.indices[keep]], r.hamming[keep], r.euclidean[keep]))
        return out

    def item_vectors(self, item_id: int) -> tuple[np.ndarray, np.ndarray]:
        """An indexed item's ``code uint8[nbytes]`` and stored ``features float32[stored_dim]``
        (search by it with ``features_stored=True``).

        Raises:
            KeyError: unknown or removed id.
        """
        row = int(self._rows_of(np.array([item_id], np.int64))[0])
        return self.codes[row].copy(), np.asarray(self._features[np.array([row])][0], np.float32)

    def get_items(self, ids: Sequence[int] | np.ndarray, *, image: bool = False) -> list[ItemMeta]:
        """Metadata of live items, in the order asked.

        Raises:
            KeyError: an unknown or removed id.
        """
        ids = np.asarray(ids, dtype=np.int64).ravel()
        self._rows_of(ids)
        found = self.meta.get(ids.tolist(), image=image)
        return [found.get(int(i), ItemMeta("")) for i in ids]

    def ids_with_image(self, ids: Sequence[int] | np.ndarray) -> set[int]:
        """Those of the live ``ids`` whose metadata keeps a copy of the image (the images are not read).

        Raises:
            KeyError: an unknown or removed id.
        """
        ids = np.asarray(ids, dtype=np.int64).ravel()
        self._rows_of(ids)
        return self.meta.with_image(ids.tolist())

    def info(self) -> dict[str, Any]:
        """A summary: items, bits, storage, backend, model, files and bytes."""
        m = self.manifest
        files = m.files()
        meta_bytes = sum((self.root / n).stat().st_size for n in
                         (METADATA_FILE, f"{METADATA_FILE}-wal") if (self.root / n).exists())
        return {
            "engine": self.engine, "location": self.location,
            "path": str(self.root), "format_version": m.format_version, "items": m.count,
            "rows": m.rows, "removed": m.removed_count, "bits": m.bits, "backend": m.backend,
            "feature_dim": m.feature_dim, "feature_storage": m.feature_storage, "stored_dim": m.stored_dim,
            "segments": len(m.segments), "generation": m.generation, "next_id": m.next_id,
            "model_sha256": m.model.get("sha256"), "model": m.model.get("config"),
            "bytes": {"codes": sum(s.codes.bytes for s in m.segments),
                      "features": sum(s.features.bytes for s in m.segments),
                      "ids": sum(s.ids.bytes for s in m.segments),
                      "metadata": meta_bytes, "all_files": sum(f.bytes for f in files) + meta_bytes},
            "build": m.build, "created": m.created, "updated": m.updated,
            "metadata_sealed": m.metadata is not None,
        }

    # ------------------------------------------------------------------ internals
    @property
    def codes(self) -> np.ndarray:
        """``uint8[rows, nbytes]`` the codes of every stored row (removed rows included)."""
        if len(self._code_parts) != 1:
            parts = self._code_parts or [np.zeros((0, self.nbytes), np.uint8)]
            self._code_parts = [np.concatenate(parts)]
        return self._code_parts[0]

    def _load(self, m: Manifest) -> None:
        """Bring the in-memory search state to ``m``: only the new segments are read when
        ``m`` extends the loaded state (an add), everything otherwise. The new state is
        built aside and swapped in at the end, so a failed load changes nothing."""
        prev: Manifest | None = getattr(self, "_loaded", None)
        incremental = (prev is not None and prev.pca == m.pca and prev.backend == m.backend
                       and prev.backend_state == m.backend_state
                       and m.segments[: len(prev.segments)] == prev.segments)
        if incremental:
            codec, backend = self._codec, self._backend
            code_parts, feature_parts = list(self._code_parts), list(self._feature_parts)
            id_parts, done = [self._ids], len(prev.segments)
        else:
            pca = read_array(self.root, m.pca, mmap=False) if m.pca else None
            codec = FeatureCodec(m.feature_storage, m.feature_dim, pca)
            backend = create_index(m.backend, m.bits)
            if m.backend_state is not None:  # trained once, on the first codes, and kept
                backend.load_state(read_array(self.root, m.backend_state, mmap=False).tobytes())
            code_parts, feature_parts, id_parts, done = [], [], [], 0
        new_codes = []
        for s in m.segments[done:]:
            c = read_array(self.root, s.codes, mmap=False)
            i = read_array(self.root, s.ids, mmap=False)
            f = read_array(self.root, s.features, mmap=True)
            if c.shape != (s.rows, m.nbytes) or i.shape != (s.rows,) or f.shape != (s.rows, m.stored_dim):
                raise IndexCorruptError(
                    f"segment {s.name} of {self.root} has arrays of the wrong shape: rebuild the index"
                )
            new_codes.append(c)
            id_parts.append(i)
            feature_parts.append(f)
        ids = np.concatenate(id_parts) if id_parts else np.zeros(0, np.int64)
        problems = []
        if len(ids) > 1 and not np.all(ids[1:] > ids[:-1]):
            problems.append("the stored ids are not increasing")
        if len(ids) and ids[-1] >= m.next_id:
            problems.append(f"next_id {m.next_id} is not above the largest stored id {ids[-1]} "
                            "(ids would be given twice)")
        if not incremental or prev.removed != m.removed:
            gone = read_array(self.root, m.removed, mmap=False) if m.removed else np.zeros(0, np.int64)
            removed = np.isin(ids, gone, assume_unique=True)
            if int(removed.sum()) != len(gone) or len(gone) != m.removed_count:
                problems.append(f"{len(gone)} removed ids recorded, {int(removed.sum())} of them stored, "
                                f"removed_count {m.removed_count}")
        else:
            removed = np.concatenate([self._removed, np.zeros(len(ids) - len(self._removed), bool)])
        if problems:
            raise IndexCorruptError(
                f"{self.root / MANIFEST_FILE} contradicts the stored data ({'; '.join(problems)}): "
                f"{repair_hint(self.root)}"
            )
        for c in new_codes:  # last: the backend is shared with the current state when incremental
            backend.add(c)
        features = SegmentedRows(feature_parts, m.stored_dim, codec.dtype)
        self._codec, self._backend = codec, backend
        self._code_parts, self._feature_parts = code_parts + new_codes, feature_parts
        self._ids, self._removed, self._features = ids, removed, features
        self._searcher = HierarchicalSearcher(FilteredIndex(backend, removed), features)
        self._loaded = m

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Rows of live item ids (``_ids`` is increasing), or KeyError naming the bad ones."""
        rows = np.searchsorted(self._ids, ids)
        rows_c = np.minimum(rows, max(len(self._ids) - 1, 0))
        if not len(self._ids):
            raise KeyError(f"no item with id {', '.join(map(str, ids[:5].tolist()))} in {self.root} (empty)")
        ok = (rows < len(self._ids)) & (self._ids[rows_c] == ids)
        ok[ok] = ~self._removed[rows_c[ok]]
        if not ok.all():
            bad = ids[~ok][:5].tolist()
            raise KeyError(f"no item with id {', '.join(map(str, bad))} in {self.root} (unknown or removed)")
        return rows


def _check_files(root: Path, manifest: Manifest, verify: bool | None) -> bool:
    """Check every file named by ``manifest`` and the metadata database against its seal:
    sizes always, checksums with ``verify`` (``None``: when everything totals at most
    :data:`VERIFY_AUTO_BYTES`). Returns whether checksums were checked."""
    files = manifest.files()
    seal_ = manifest.metadata
    if verify is None:
        verify = sum(f.bytes for f in files) + (seal_.bytes if seal_ else 0) <= VERIFY_AUTO_BYTES
    for f in files:
        f.check(root, checksum=verify)
    db = root / METADATA_FILE
    fix = (f"restore it from a backup (the labels, sources and thumbnails are only there), or "
           f"{repair_hint(root)}")
    try:
        image = Image(db, WalMark(*seal_.wal) if seal_ and seal_.wal else None)
    except FileNotFoundError:
        raise IndexCorruptError(
            f"{db} is missing: restore it from a backup (the labels, sources and thumbnails are only "
            f"there), or go on without them: `hashret index repair {root} --drop-metadata`"
        ) from None
    if seal_ is None:
        return verify
    if image.problem:
        raise IndexCorruptError(f"{image.problem}: {fix}")
    if image.size != seal_.bytes:
        raise IndexCorruptError(
            f"{db} has {image.size} bytes but the last commit sealed {seal_.bytes} (truncated or "
            f"overwritten): {fix}"
        )
    if verify:
        bad = mismatched_chunks(image, read_array(root, seal_.sums, mmap=False))
        if bad:
            raise IndexCorruptError(
                f"{db} does not match its seal: {len(bad)} of {image.chunks()} chunks of "
                f"{seal_.chunk_bytes} bytes changed since the last commit (first at byte "
                f"{bad[0] * seal_.chunk_bytes}); rows may hold silently wrong labels, sources or "
                f"thumbnails: {fix}"
            )
    return verify


def seal_metadata(root: Path, prev: MetadataSeal | None, prev_sums: np.ndarray | None,
                  gen: int) -> MetadataSeal:
    """Seal ``root``'s metadata database for commit ``gen`` (incrementally from ``prev``)."""
    db = root / METADATA_FILE
    try:
        mark, size, sums = seal(db, WalMark(*prev.wal) if prev is not None and prev.wal else None,
                                prev_sums, prev.bytes if prev is not None else None)
    except ImageChanged as e:
        raise IndexCorruptError(
            f"{db} changed since the last commit ({e}): it is damaged, so nothing was committed; "
            f"check with `hashret index info {root} --verify`, then restore it from a backup or "
            f"{repair_hint(root)}"
        ) from None
    entry = write_array(root, f"metadata-{gen:06d}.sums.npy", sums)
    return MetadataSeal(size, CHUNK_BYTES, entry, (mark.salt1, mark.salt2, mark.frames) if mark else None)


def _copy_file(src: Path, root: Path, name: str) -> FileEntry:
    if not src.is_file():
        raise FileNotFoundError(f"model file {src} does not exist: pass the run's model.safetensors")
    atomic_write(root / name, lambda tmp: shutil.copyfile(src, tmp), durable=True)
    return FileEntry.of(root, name)


def lock_writer(root: str | Path) -> int:
    """Take the writer lock of an index directory (for tools that mend it); returns the
    descriptor to give :func:`unlock_writer`.

    Raises:
        IndexLockedError: another process writes the index.
    """
    return _lock(Path(root))


def unlock_writer(fd: int) -> None:
    _unlock(fd)


def _lock(root: Path) -> int:
    """Take the writer lock of ``root`` (released by the OS if the process dies)."""
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} does not exist: create an index with `hashret index build RUN_DIR --out {root}`"
        )
    fd = os.open(root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise IndexLockedError(
            f"{root} is being written by another process (pid {holder}): wait for it to finish; "
            "readers can search meanwhile"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
