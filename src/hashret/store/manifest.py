"""The manifest of a persistent index: what the directory holds, and its commit point.

``INDEX_DIR/manifest.json`` names every file that belongs to the committed state of the
index (with its size and SHA-256), the code length, the feature layout, the model that
made the codes and the next id to assign. Every other file in the directory is written
*before* the manifest that names it and never changed afterwards, so replacing the
manifest atomically (:func:`hashret.io.atomic_write`: temporary file, fsync, rename,
fsync of the directory) is the single commit point of an ``add``, ``remove`` or
``compact``. A crash at any moment leaves the previous manifest, and the files it names,
intact.

The manifest carries its own SHA-256 (``checksum``, over the canonical JSON of the rest)
and is checked against invariants at every read (counts agree, ``next_id`` leaves room for
every row); the store checks those that need the data (ids, removed set, metadata rows)
when it loads. A manifest failing either is refused, naming ``hashret index repair``.
Format version 1 (no checksum, metadata not sealed) is still read; the next writer
upgrades it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hashret.codes import check_bits, n_bytes
from hashret.io import atomic_write, file_sha256

FORMAT = "hashret-index"
FORMAT_VERSION = 2
#: Versions this hashret reads (1: written before the manifest checksum and metadata seal).
READABLE_VERSIONS = (1, 2)
MANIFEST_FILE = "manifest.json"
FEATURE_STORAGE = ("float32", "float16", "pca")


class IndexCorruptError(ValueError):
    """A file of the index is missing, truncated or does not match its checksum."""


def repair_hint(root: Path) -> str:
    return f"run `hashret index repair {root}` (it says what it can rebuild and asks first)"


@dataclass(frozen=True)
class FileEntry:
    """One immutable file of the index: its name (relative to the index dir), size, SHA-256."""

    name: str
    bytes: int
    sha256: str

    @classmethod
    def of(cls, root: Path, name: str) -> FileEntry:
        """Describe ``root / name`` as it is on disk now (reads the whole file)."""
        path = root / name
        return cls(name, path.stat().st_size, file_sha256(path))

    def check(self, root: Path, *, checksum: bool) -> None:
        """Raise :class:`IndexCorruptError` when the file is missing, resized or (with
        ``checksum``) its content differs from the recorded SHA-256."""
        path = root / self.name
        missing = IndexCorruptError(f"{path} is missing: the index is damaged; restore the directory from a "
                                    "backup or rebuild it with `hashret index build`")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise missing from None
        if size != self.bytes:
            raise IndexCorruptError(
                f"{path} has {size} bytes but the manifest recorded {self.bytes} (truncated or "
                "overwritten): restore it from a backup or rebuild the index"
            )
        try:  # (a compaction may delete it between the two reads: the opener retries on a new manifest)
            digest = file_sha256(path) if checksum else self.sha256
        except FileNotFoundError:
            raise missing from None
        if digest != self.sha256:
            raise IndexCorruptError(
                f"{path} does not match its SHA-256 in the manifest (corrupted): restore it from "
                "a backup or rebuild the index"
            )


@dataclass(frozen=True)
class Segment:
    """A batch of rows added together: ``rows`` codes, features and ids in three files."""

    name: str
    rows: int
    codes: FileEntry
    features: FileEntry
    ids: FileEntry

    def files(self) -> tuple[FileEntry, ...]:
        return (self.codes, self.features, self.ids)


@dataclass(frozen=True)
class MetadataSeal:
    """What the metadata database (``metadata.sqlite``) was at the commit: see
    :mod:`hashret.store.sqlite_image`.

    Attributes:
        bytes: size of the database image.
        chunk_bytes: bytes per checksummed chunk.
        sums: the file holding ``uint8[chunks, 32]``, the SHA-256 of every chunk.
        wal: ``[salt1, salt2, frames]``, the WAL position of the image, or ``None``
            (the image is the main file alone).
    """

    bytes: int
    chunk_bytes: int
    sums: FileEntry
    wal: tuple[int, int, int] | None = None


@dataclass(frozen=True)
class Manifest:
    """The committed state of an index directory (``manifest.json``).

    Attributes:
        bits: code length; codes are ``uint8[n, ceil(bits/8)]`` (hashret.codes).
        feature_dim: float feature dimension as given to ``add`` (before any PCA).
        feature_storage: ``"float32"``, ``"float16"`` or ``"pca"`` (PCA-reduced float16).
        stored_dim: the dimension of the stored features (``pca_dim`` for PCA).
        backend: the Hamming index backend searched at open, as a spec with its options
            (``"popcount"``, ``"faiss-ivf:nlist=256,nprobe=16"``; ``hashret.index`` registry).
        backend_state: the file of what the backend trained on the first codes (an IVF's
            centroids; :meth:`HammingIndex.fit_state`), or ``None``.
        model: identity of the model that made the codes: ``{"sha256", "config", "file"}``
            (``file`` is the copy inside the index, or ``None`` for codes given directly).
        generation: incremented by every commit.
        next_id: the id the next added item gets (ids are never reused).
        count: live items (rows of all segments minus removed ones).
        segments: the row batches, in row order.
        removed: the file of removed ids (``int64``, sorted) or ``None``.
        pca: the file holding the PCA mean and components, or ``None``.
        build: resumable ``index build`` progress (``None`` once finished or never used).
        metadata: the seal of ``metadata.sqlite`` (``None`` in format version 1).
    """

    bits: int
    feature_dim: int
    feature_storage: str = "float16"
    stored_dim: int = 0
    backend: str = "popcount"
    model: dict[str, Any] = field(default_factory=dict)
    generation: int = 0
    next_id: int = 0
    count: int = 0
    segments: tuple[Segment, ...] = ()
    removed: FileEntry | None = None
    removed_count: int = 0
    pca: FileEntry | None = None
    backend_state: FileEntry | None = None
    build: dict[str, Any] | None = None
    metadata: MetadataSeal | None = None
    created: str = ""
    updated: str = ""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        check_bits(self.bits)
        if self.feature_storage not in FEATURE_STORAGE:
            raise ValueError(
                f"feature_storage must be one of {', '.join(FEATURE_STORAGE)}, got {self.feature_storage!r}"
            )

    @property
    def nbytes(self) -> int:
        return n_bytes(self.bits)

    @property
    def rows(self) -> int:
        """Rows stored in the segments (live and removed)."""
        return sum(s.rows for s in self.segments)

    def files(self) -> list[FileEntry]:
        """Every file the committed state needs."""
        out = [f for s in self.segments for f in s.files()]
        out += [f for f in (self.removed, self.pca, self.backend_state) if f is not None]
        if self.metadata is not None:
            out.append(self.metadata.sums)
        if self.model.get("file"):
            out.append(FileEntry(**self.model["file"]))
        return out

    def evolve(self, **changes: Any) -> Manifest:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["segments"] = [asdict(s) for s in self.segments]
        if self.metadata is not None and self.metadata.wal is not None:
            d["metadata"]["wal"] = list(self.metadata.wal)
        return d

    def invariant_problems(self) -> list[str]:
        """What in the manifest contradicts itself (empty when consistent)."""
        out = []
        rows = self.rows
        if any(s.rows <= 0 for s in self.segments):
            out.append("a segment with no rows")
        if not 0 <= self.removed_count <= rows:
            out.append(f"removed_count {self.removed_count} outside 0..{rows} stored rows")
        if self.count != rows - self.removed_count:
            out.append(f"count {self.count} != {rows} rows - {self.removed_count} removed")
        if self.next_id < rows:
            out.append(f"next_id {self.next_id} is below the {rows} stored rows (ids would be reused)")
        if (self.removed is None) != (self.removed_count == 0):
            out.append("removed_count and the removed file disagree")
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: Path) -> Manifest:
        if d.get("format") != FORMAT:
            raise IndexCorruptError(f"{where} is not a hashret index manifest (format {d.get('format')!r})")
        if d.get("format_version") not in READABLE_VERSIONS:
            raise IndexCorruptError(
                f"{where} has index format version {d.get('format_version')}, this hashret reads "
                f"version {FORMAT_VERSION}: rebuild the index with this version (`hashret index build`)"
            )
        try:
            d = dict(d)
            d["segments"] = tuple(
                Segment(s["name"], s["rows"], *(FileEntry(**s[k]) for k in ("codes", "features", "ids")))
                for s in d["segments"]
            )
            for key in ("removed", "pca", "backend_state"):
                d[key] = FileEntry(**d[key]) if d.get(key) else None
            if d.get("metadata"):
                md = dict(d["metadata"])
                md["sums"] = FileEntry(**md["sums"])
                md["wal"] = tuple(int(x) for x in md["wal"]) if md.get("wal") else None
                d["metadata"] = MetadataSeal(**md)
            return cls(**d)
        except (KeyError, TypeError) as e:
            raise IndexCorruptError(f"{where} is damaged ({e}): restore it or rebuild the index") from e


def canonical_checksum(d: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON (sorted keys, no spaces) of ``d`` without ``checksum``."""
    body = {k: v for k, v in d.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def read_manifest(root: str | Path, *, check: bool = True) -> Manifest:
    """Read ``root/manifest.json``.

    Args:
        check: refuse a manifest whose checksum or invariants fail (``False``: only
            ``hashret index repair`` reads it so).

    Raises:
        FileNotFoundError: ``root`` is not an index directory.
        IndexCorruptError: the manifest is unreadable, of another format version, does not
            match its checksum, or contradicts itself.
    """
    root = Path(root)
    path = root / MANIFEST_FILE
    if not root.is_dir():
        raise FileNotFoundError(
            f"{root} does not exist: create an index with `hashret index build RUN_DIR --out {root}`"
        )
    if not path.exists():
        raise FileNotFoundError(
            f"{root} is not a hashret index (no {MANIFEST_FILE}): build one with "
            f"`hashret index build RUN_DIR --out {root}`"
        )
    try:
        d = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise IndexCorruptError(f"{path} is not valid JSON ({e}): the manifest is corrupt") from e
    if not isinstance(d, dict):
        raise IndexCorruptError(f"{path} is not a hashret index manifest (not a JSON object)")
    needs = d.get("format_version") == FORMAT_VERSION or "checksum" in d  # v1 had none
    if check and needs and d.get("checksum") != canonical_checksum(d):
        raise IndexCorruptError(
            f"{path} does not match its own checksum (edited or damaged): {repair_hint(root)}, "
            "or restore the index from a backup"
        )
    m = Manifest.from_dict({k: v for k, v in d.items() if k != "checksum"}, path)
    if check and (problems := m.invariant_problems()):
        raise IndexCorruptError(f"{path} contradicts itself ({'; '.join(problems)}): {repair_hint(root)}")
    return m


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Commit ``manifest``: write a temporary file, fsync it, rename it over the old one,
    fsync the directory (after this returns, the new state survives a power cut)."""
    d = manifest.to_dict()
    d["checksum"] = canonical_checksum(d)
    data = (json.dumps(d, indent=1) + "\n").encode()
    atomic_write(root / MANIFEST_FILE, lambda tmp: tmp.write_bytes(data), durable=True)


