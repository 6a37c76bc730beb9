"""The sealed image of a SQLite WAL database is exactly the file a checkpoint writes, and the
WAL reader finds the same committed frames as SQLite."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hashret.store.sqlite_image import (
    FRAME_HEADER,
    Image,
    ImageChanged,
    all_sums,
    read_wal,
    seal,
    wal_path,
)


@pytest.fixture
def db(tmp_path):
    """A WAL database with five committed transactions and no checkpoint."""
    path = tmp_path / "t.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.commit()
    rng = np.random.default_rng(0)
    for _ in range(5):
        conn.executemany("INSERT INTO t VALUES (?)", [(rng.bytes(3000),) for _ in range(30)])
        conn.commit()
    yield path, conn
    conn.close()


def test_the_image_is_what_a_checkpoint_writes(db):
    path, conn = db
    wal = read_wal(path)
    image = Image(path, wal.mark())
    assert image.size > path.stat().st_size  # the new pages are only in the WAL so far
    sums = all_sums(image)
    busy, log, done = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert (busy, log, done) == (0, wal.end, wal.end) and wal.end == len(wal.pages)  # same frames as SQLite
    assert (all_sums(Image(path, wal.mark())) == sums).all()  # mid-way: file and WAL agree
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    assert wal_path(path).stat().st_size == 0
    after = Image(path, wal.mark())  # the WAL is gone: the file alone
    assert after.size == path.stat().st_size == image.size
    assert (all_sums(after) == sums).all()


def test_a_torn_frame_ends_the_committed_frames(db):
    path, _ = db
    wal = read_wal(path)
    blob = bytearray(wal_path(path).read_bytes())
    step = FRAME_HEADER + wal.page_size
    last = blob[len(blob) - step:]
    last[FRAME_HEADER + 100] ^= 1  # same salts, wrong checksum: a write that never finished
    wal_path(path).write_bytes(bytes(blob + last))
    again = read_wal(path)
    assert again.end == wal.end and len(again.pages) == len(wal.pages)
    assert len(read_wal(path, validate=False).pages) == len(wal.pages) + 1


def test_an_incremental_seal_equals_a_full_one_and_refuses_damage(db):
    path, conn = db
    mark, size, sums = seal(path)
    rng = np.random.default_rng(1)
    conn.executemany("INSERT INTO t VALUES (?)", [(rng.bytes(500),) for _ in range(40)])
    conn.execute("DELETE FROM t WHERE rowid % 7 = 0")
    conn.commit()
    mark2, size2, sums2 = seal(path, mark, sums, size)
    assert mark2.frames > mark.frames
    assert (sums2 == all_sums(Image(path, mark2))).all()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.execute("INSERT INTO t VALUES (x'00')")
    conn.commit()
    wal = read_wal(path)
    page = wal.pages[0]  # a page this commit changes, in the file still the old one
    blob = bytearray(path.read_bytes())
    blob[(page - 1) * wal.page_size + 2000] ^= 4  # damage next to the change
    path.write_bytes(bytes(blob))
    with pytest.raises(ImageChanged, match="1 chunk"):
        seal(path, mark2, sums2, size2)  # never absorbed into the new seal
