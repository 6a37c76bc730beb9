"""The manifest of a persistent index: what the directory holds, and its commit point.

``INDEX_DIR/manifest.json`` names every file that belongs to the committed state of the
index (with its size and SHA-256), the code length, the feature layout, the model that
made the codes and the next id to assign. Every other file in the directory is written
*before* the manifest that names it and never changed afterwards, so replacing the
manifest atomically (:func:`hashret.io.atomic_write`: temporary file, fsync, rename,
fsync of the directory) is the single commit point of an ``add``, ``remove`` or
``compact``. A crash at any moment leaves the previous manifest, and the files it names,
intact.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from hashret.codes import check_bits, n_bytes

FORMAT = "hashret-index"
FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
FEATURE_STORAGE = ("float32", "float16", "pca")


class IndexCorruptError(ValueError):
    """A file of the index is missing, truncated or does not match its checksum."""


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
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise IndexCorruptError(
                f"{path} is missing: the index is damaged; restore the directory from a backup "
                "or rebuild it with `hashret index build`"
            ) from None
        if size != self.bytes:
            raise IndexCorruptError(
                f"{path} has {size} bytes but the manifest recorded {self.bytes} (truncated or "
                "overwritten): restore it from a backup or rebuild the index"
            )
        if checksum and file_sha256(path) != self.sha256:
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
class Manifest:
    """The committed state of an index directory (``manifest.json``).

    Attributes:
        bits: code length; codes are ``uint8[n, ceil(bits/8)]`` (hashret.codes).
        feature_dim: float feature dimension as given to ``add`` (before any PCA).
        feature_storage: ``"float32"``, ``"float16"`` or ``"pca"`` (PCA-reduced float16).
        stored_dim: the dimension of the stored features (``pca_dim`` for PCA).
        backend: the Hamming index backend searched at open (``hashret.index`` registry).
        model: identity of the model that made the codes: ``{"sha256", "config", "file"}``
            (``file`` is the copy inside the index, or ``None`` for codes given directly).
        generation: incremented by every commit.
        next_id: the id the next added item gets (ids are never reused).
        count: live items (rows of all segments minus removed ones).
        segments: the row batches, in row order.
        removed: the file of removed ids (``int64``, sorted) or ``None``.
        pca: the file holding the PCA mean and components, or ``None``.
        build: resumable ``index build`` progress (``None`` once finished or never used).
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
    build: dict[str, Any] | None = None
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
        out += [f for f in (self.removed, self.pca) if f is not None]
        if self.model.get("file"):
            out.append(FileEntry(**self.model["file"]))
        return out

    def evolve(self, **changes: Any) -> Manifest:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["segments"] = [asdict(s) for s in self.segments]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: Path) -> Manifest:
        if d.get("format") != FORMAT:
            raise IndexCorruptError(f"{where} is not a hashret index manifest (format {d.get('format')!r})")
        if d.get("format_version") != FORMAT_VERSION:
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
            for key in ("removed", "pca"):
                d[key] = FileEntry(**d[key]) if d.get(key) else None
            return cls(**d)
        except (KeyError, TypeError) as e:
            raise IndexCorruptError(f"{where} is damaged ({e}): restore it or rebuild the index") from e


def read_manifest(root: str | Path) -> Manifest:
    """Read ``root/manifest.json``.

    Raises:
        FileNotFoundError: ``root`` is not an index directory.
        IndexCorruptError: the manifest is unreadable or of another format version.
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
    return Manifest.from_dict(d, path)


def write_manifest(root: Path, manifest: Manifest) -> None:
    """Commit ``manifest``: write a temporary file, fsync it, rename it over the old one,
    fsync the directory (after this returns, the new state survives a power cut)."""
    path = root / MANIFEST_FILE
    tmp = root / f".{MANIFEST_FILE}.{os.getpid()}.tmp"
    data = (json.dumps(manifest.to_dict(), indent=1) + "\n").encode()
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(root)


def fsync_dir(path: Path) -> None:
    """Make a rename or file creation in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """Hex SHA-256 of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
