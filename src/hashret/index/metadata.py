"""Per-item metadata of a persistent index in SQLite: source, label, class name, thumbnail.

``INDEX_DIR/metadata.sqlite`` has one row per item id. SQLite runs in WAL mode, so
readers (the search server) read while one writer adds, and every batch is one
transaction. Rows are written *before* the manifest commit that makes their ids visible;
a crash in between leaves rows with ids ``>= manifest.next_id``, which readers never ask
for and the next writer deletes (:meth:`MetadataDB.purge_from`).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

METADATA_FILE = "metadata.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    id INTEGER PRIMARY KEY,
    source TEXT NOT NULL,
    label INTEGER NOT NULL DEFAULT -1,
    class TEXT,
    extra TEXT,
    image BLOB
);
"""


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
    """

    source: str
    label: int = -1
    class_name: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    image: bytes | None = None


class MetadataDB:
    """The SQLite metadata of one index directory.

    Args:
        root: the index directory.
        readonly: open without write access (readers).
    """

    def __init__(self, root: Path, *, readonly: bool) -> None:
        self.path = Path(root) / METADATA_FILE
        self.readonly = readonly
        if readonly:
            if not self.path.exists():
                from hashret.index.manifest import IndexCorruptError

                raise IndexCorruptError(
                    f"{self.path} is missing: the index is damaged; rebuild it with `hashret index build`"
                )
            self.conn = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, check_same_thread=False)
        else:
            self.conn = sqlite3.connect(self.path, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")
            self.conn.executescript(_SCHEMA)
            self.conn.commit()

    def close(self) -> None:
        self.conn.close()

    def insert(self, ids: Sequence[int], items: Sequence[ItemMeta]) -> None:
        """Insert the rows of one batch in one transaction (replacing stale rows of the same ids)."""
        assert len(ids) == len(items)
        rows = [
            (int(i), m.source, int(m.label), m.class_name,
             json.dumps(m.extra) if m.extra else None, m.image)
            for i, m in zip(ids, items, strict=True)
        ]
        with self.conn:
            self.conn.executemany(
                "INSERT OR REPLACE INTO items (id, source, label, class, extra, image) VALUES (?,?,?,?,?,?)",
                rows,
            )

    def get(self, ids: Iterable[int], *, image: bool = False) -> dict[int, ItemMeta]:
        """Metadata of the given ids (ids without a row are absent from the result)."""
        ids = [int(i) for i in ids]
        out: dict[int, ItemMeta] = {}
        cols = "id, source, label, class, extra" + (", image" if image else "")
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for row in self.conn.execute(f"SELECT {cols} FROM items WHERE id IN ({marks})", chunk):
                out[row[0]] = ItemMeta(row[1], row[2], row[3], json.loads(row[4]) if row[4] else {},
                                       row[5] if image else None)
        return out

    def with_image(self, ids: Iterable[int]) -> set[int]:
        """Those of ``ids`` whose row keeps a copy of the image (without reading the images)."""
        ids = [int(i) for i in ids]
        out: set[int] = set()
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(f"SELECT id FROM items WHERE id IN ({marks}) AND image IS NOT NULL", chunk)
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
