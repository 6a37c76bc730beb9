"""Per-item metadata of a persistent index in SQLite: source, label, class name, thumbnail.

``INDEX_DIR/metadata.sqlite`` has one row per item id. SQLite runs in WAL mode, so
readers (the search server) read while one writer adds, and every batch is one
transaction. Rows are written *before* the manifest commit that makes their ids visible;
a crash in between leaves rows with ids ``>= manifest.next_id``, which readers never ask
for and the next writer deletes (:meth:`MetadataDB.purge_from`).

The database is part of the checked state of the index: every commit seals its bytes
(:mod:`hashret.store.sqlite_image`), so the writer turns SQLite's automatic checkpoints
off and checkpoints only right after a commit. It is never created implicitly: a missing
database is an error (the labels, sources and thumbnails exist nowhere else).
Each item added from a file records the SHA-256 of the file's bytes (indexed), so adding
the same files again can skip what is already there.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

METADATA_FILE = "metadata.sqlite"
#: How long a checkpoint waits for readers to leave the WAL (then it is left for the next one).
CHECKPOINT_WAIT_MS = 200

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    label INTEGER NOT NULL DEFAULT -1,
    class TEXT,
    extra TEXT,
    image BLOB,
    file_sha256 BLOB
);
"""
_INDEX = "CREATE INDEX IF NOT EXISTS items_file_sha256 ON items (file_sha256)"


@dataclass(frozen=True)
class ItemMeta:
    """What the index knows about one item besides its code and features.

    Attributes:
        source: where the image came from: a file path, ``archive.zip::member`` or a
            dataset reference such as ``mnist/train/123``.
        label: class index, ``-1`` when unknown.
        class_name: class name, ``None`` when unknown.
        extra: any JSON-serialisable fields.
        image: the image as PNG/JPEG bytes when the index keeps a copy (thumbnail), else ``None``.
        file_sha256: hex SHA-256 of the source file's bytes when the item was added from a
            file (used to skip files already indexed), else ``None``.
    """

    source: str
    label: int = -1
    class_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    image: bytes | None = None
    file_sha256: str | None = None


def _corrupt(path: Path, e: Exception) -> Exception:
    from hashret.store.manifest import IndexCorruptError, repair_hint

    return IndexCorruptError(
        f"{path} is unreadable ({e}): the metadata database is damaged; restore it from a backup, "
        f"or {repair_hint(path.parent)}"
    )


class MetadataDB:
    """The SQLite metadata of one index directory.

    Args:
        root: the index directory.
        readonly: open without write access (readers).
        create: create the database when it does not exist (only a new index does).

    Raises:
        IndexCorruptError: the database is missing (and not ``create``) or unreadable.
    """

    def __init__(self, root: Path, *, readonly: bool, create: bool = False) -> None:
        self.path = Path(root) / METADATA_FILE
        self.readonly = readonly
        if not create and not self.path.exists():
            from hashret.store.manifest import IndexCorruptError

            raise IndexCorruptError(
                f"{self.path} is missing: restore it from a backup (the labels, sources and thumbnails "
                f"are only there), or go on without them: `hashret index repair {self.path.parent} "
                "--drop-metadata`"
            )
        mode = "ro" if readonly else ("rwc" if create else "rw")
        try:
            self.conn = sqlite3.connect(f"file:{self.path}?mode={mode}", uri=True, check_same_thread=False)
            if not readonly:
                self.conn.execute("PRAGMA journal_mode=WAL")
                self.conn.execute("PRAGMA synchronous=FULL")
                self.conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints only after a seal
                self.conn.executescript(_SCHEMA)
                cols = {r[1] for r in self.conn.execute("PRAGMA table_info(items)")}
                if "file_sha256" not in cols:  # an index written before file hashes existed
                    self.conn.execute("ALTER TABLE items ADD COLUMN file_sha256 BLOB")
                self.conn.execute(_INDEX)
                self.conn.commit()
        except sqlite3.DatabaseError as e:
            raise _corrupt(self.path, e) from e

    def close(self) -> None:
        self.conn.close()

    def insert(self, ids: Sequence[int], items: Sequence[ItemMeta]) -> None:
        """Insert the rows of one batch in one transaction (replacing stale rows of the same ids)."""
        assert len(ids) == len(items)
        rows = [
            (int(i), m.source, int(m.label), m.class_name,
             json.dumps(m.extra) if m.extra else None, m.image,
             bytes.fromhex(m.file_sha256) if m.file_sha256 else None)
            for i, m in zip(ids, items, strict=True)
        ]
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO items (id, source, label, class, extra, image, file_sha256) "
                "VALUES (?,?,?,?,?,?,?)",
                rows,
            )

    def get(self, ids: Iterable[int], *, image: bool = False) -> dict[int, ItemMeta]:
        """Metadata of the given ids (ids without a row are absent from the result)."""
        ids = [int(i) for i in ids]
        out: dict[int, ItemMeta] = {}
        cols = "id, source, label, class, extra" + (", image" if image else "")
        try:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for row in self.conn.execute(f"SELECT {cols} FROM items WHERE id IN ({marks})", chunk):
                    out[row[0]] = ItemMeta(row[1], row[2], row[3], json.loads(row[4]) if row[4] else {},
                                           row[5] if image else None)
        except (sqlite3.DatabaseError, ValueError) as e:  # ValueError: a damaged JSON field
            raise _corrupt(self.path, e) from e
        return out

    def find_files(self, sha256s: Iterable[str], below: int) -> dict[str, int]:
        """Ids (``< below``) of items added from a file with one of these hex SHA-256s."""
        keys = [bytes.fromhex(h) for h in sha256s]
        out: dict[str, int] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for sha, i in self.conn.execute(
                    f"SELECT file_sha256, MIN(id) FROM items WHERE file_sha256 IN ({marks}) AND id < ? "
                    "GROUP BY file_sha256", [*chunk, int(below)]):
                out[sha.hex()] = int(i)
        return out

    def ids_below(self, next_id: int) -> np.ndarray:
        """``int64[r]`` the ids of the rows with ``id < next_id``, increasing."""
        try:
            rows = self.conn.execute("SELECT id FROM items WHERE id < ? ORDER BY id", (int(next_id),))
            return np.fromiter((r[0] for r in rows), np.int64)
        except sqlite3.DatabaseError as e:
            raise _corrupt(self.path, e) from e

    def integrity_problems(self) -> list[str]:
        """``PRAGMA integrity_check``'s findings (empty when SQLite finds the file sound)."""
        try:
            found = [r[0] for r in self.conn.execute("PRAGMA integrity_check(20)")]
        except sqlite3.DatabaseError as e:
            return [str(e)]
        return [] if found == ["ok"] else found

    def checkpoint(self) -> bool:
        """Copy the WAL into the main file and empty it; False when readers kept it from
        finishing (it is retried after the next commit)."""
        self.conn.execute(f"PRAGMA busy_timeout = {CHECKPOINT_WAIT_MS}")  # a commit never waits long
        try:
            return not self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        finally:
            self.conn.execute("PRAGMA busy_timeout = 5000")

    def with_image(self, ids: Iterable[int]) -> set[int]:
        """Those of ``ids`` whose row keeps a copy of the image (without reading the images)."""
        ids = [int(i) for i in ids]
        out: set[int] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(
                f"SELECT id FROM items WHERE id IN ({marks}) AND image IS NOT NULL", chunk)
            out.update(int(r[0]) for r in rows)
        return out

    def delete(self, ids: Iterable[int]) -> None:
        """Delete the rows of ``ids`` (one transaction)."""
        with self.conn:
            self.conn.executemany("DELETE FROM items WHERE id = ?", [(int(i),) for i in ids])

    def purge_from(self, next_id: int) -> int:
        """Delete rows of ids ``>= next_id`` (left by an add that crashed before its commit)."""
        with self.conn:
            cur = self.conn.execute("DELETE FROM items WHERE id >= ?", (int(next_id),))
        return cur.rowcount

    def count(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def sources(self) -> set[str]:
        """Every stored source (used to skip files already indexed)."""
        return {row[0] for row in self.conn.execute("SELECT source FROM items")}
