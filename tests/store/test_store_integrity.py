"""Every byte of an index is checked: the metadata database's seal, the manifest's checksum and
invariants, and `hashret index repair`. Each corruption is done for real on a small index."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest

from hashret.cli import main
from hashret.store.directory import IndexStore
from hashret.store.manifest import IndexCorruptError, canonical_checksum, read_manifest
from hashret.store.metadata import METADATA_FILE, ItemMeta
from hashret.store.repair import DROPPED, repair_index

BITS, DIM = 32, 8
N = 600


def _items(lo: int, hi: int, rng: np.random.Generator) -> list[ItemMeta]:
    return [ItemMeta(f"img{i}.png", i % 10, f"c{i % 10}", {"k": i}, image=rng.bytes(120),
                     file_sha256=f"{i:064x}") for i in range(lo, hi)]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    """An index of 600 items in 3 adds (thumbnails, file hashes), 5 removed: ~200 KB of SQLite."""
    root = tmp_path_factory.mktemp("pristine") / "ix"
    rng = np.random.default_rng(0)
    with IndexStore.create(root, bits=BITS, feature_dim=DIM, backend="numpy") as s:
        for lo in range(0, N, 200):
            s.add(rng.integers(0, 256, (200, 4), dtype=np.uint8),
                  rng.normal(size=(200, DIM)).astype(np.float32), _items(lo, lo + 200, rng))
        s.remove([1, 2, 3, 500, 599])
    return root


@pytest.fixture
def ix(pristine, tmp_path):
    root = tmp_path / "ix"
    shutil.copytree(pristine, root)
    return root


def _info_verify(root, capsys) -> tuple[int, str]:
    capsys.readouterr()
    rc = main(["index", "info", str(root), "--verify"])
    out = capsys.readouterr()
    return rc, out.out + out.err


def test_a_healthy_index_verifies_and_its_metadata_is_sealed(ix, capsys):
    m = read_manifest(ix)
    assert m.metadata is not None and m.format_version == 2
    assert m.metadata.bytes == (ix / METADATA_FILE).stat().st_size  # checkpointed after the commit
    with IndexStore.open(ix, verify=True) as s:
        s.verify()
        assert len(s) == N - 5
        assert s.get_items([4])[0].source == "img4.png"
    rc, out = _info_verify(ix, capsys)
    assert rc == 0 and "metadata.sqlite its seal" in out


def test_corrupt_header_is_detected(ix, capsys):
    db = ix / METADATA_FILE
    blob = bytearray(db.read_bytes())
    blob[:16] = b"garbage header!!"
    db.write_bytes(bytes(blob))
    with pytest.raises(IndexCorruptError, match="does not match its seal.*first at byte 0"):
        IndexStore.open(ix, verify=True)
    rc, out = _info_verify(ix, capsys)
    assert rc == 2 and "metadata.sqlite does not match its seal" in out and "hashret index repair" in out


def test_database_truncated_to_half_is_detected_even_without_checksums(ix, capsys):
    db = ix / METADATA_FILE
    blob = db.read_bytes()
    db.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(IndexCorruptError, match="bytes but the last commit sealed"):
        IndexStore.open(ix, verify=False)  # sizes are always checked
    rc, out = _info_verify(ix, capsys)
    assert rc == 2 and "truncated" in out


def test_twenty_random_bit_flips_are_all_detected(pristine, tmp_path):
    """One bit flipped anywhere in the file, 20 seeds: each is detected (whether or not SQLite
    itself would notice: most flips silently change a row's value)."""
    size = (pristine / METADATA_FILE).stat().st_size
    detected, silent = 0, 0
    for seed in range(20):
        root = tmp_path / f"ix{seed}"
        shutil.copytree(pristine, root)
        rng = np.random.default_rng(seed)
        pos, bit = int(rng.integers(0, size)), int(rng.integers(0, 8))
        db = root / METADATA_FILE
        blob = bytearray(db.read_bytes())
        blob[pos] ^= 1 << bit
        db.write_bytes(bytes(blob))
        with pytest.raises(IndexCorruptError, match="does not match its seal") as err:
            IndexStore.open(root, verify=True)
        detected += 1
        assert f"first at byte {pos // 65536 * 65536}" in str(err.value)
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
            silent += conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            conn.close()
        except sqlite3.DatabaseError:
            pass
    assert detected == 20
    assert silent > 0  # SQLite alone would have missed some of them


def test_a_deleted_database_is_an_error_and_never_recreated(ix, capsys):
    (ix / METADATA_FILE).unlink()
    for writable in (False, True):
        with pytest.raises(IndexCorruptError, match="is missing.*--drop-metadata"):
            IndexStore.open(ix, writable=writable, verify=False)
    assert not (ix / METADATA_FILE).exists()
    rc, out = _info_verify(ix, capsys)
    assert rc == 2 and "metadata.sqlite is missing" in out
    capsys.readouterr()
    assert main(["index", "remove", str(ix), "4"]) == 2  # a writer refuses too
    assert not (ix / METADATA_FILE).exists()


def _edit_manifest(root, reseal: bool, **changes) -> None:
    path = root / "manifest.json"
    d = json.loads(path.read_text())
    d.update(changes)
    if reseal:
        d["checksum"] = canonical_checksum(d)
    path.write_text(json.dumps(d, indent=1))


def test_an_edited_manifest_is_refused(ix, capsys):
    _edit_manifest(ix, reseal=False, next_id=500)
    with pytest.raises(IndexCorruptError, match="does not match its own checksum.*hashret index repair"):
        IndexStore.open(ix)
    rc, out = _info_verify(ix, capsys)
    assert rc == 2 and "checksum" in out
    _edit_manifest(ix, reseal=True, next_id=500)  # checksum recomputed: the invariants still catch it
    with pytest.raises(IndexCorruptError, match="next_id 500 is below the 600 stored rows.*repair"):
        IndexStore.open(ix, writable=True)
    _edit_manifest(ix, reseal=True, next_id=600)
    with IndexStore.open(ix, writable=True) as s:
        s.compact()  # 595 rows left, the largest id 598: next_id 597 passes the row count ...
    _edit_manifest(ix, reseal=True, next_id=597)
    with pytest.raises(IndexCorruptError, match="next_id 597 is not above the largest stored id 598.*repair"):
        IndexStore.open(ix)  # ... but not the ids
    _edit_manifest(ix, reseal=True, next_id=600)
    IndexStore.open(ix, verify=True).close()
    _edit_manifest(ix, reseal=True, count=7)
    with pytest.raises(IndexCorruptError, match="count 7 != 595 rows - 0 removed"):
        IndexStore.open(ix)


def test_metadata_of_another_manifest_is_detected(ix, tmp_path):
    """The rows must be those of the stored ids: a database with rows deleted is caught."""
    db = ix / METADATA_FILE
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM items WHERE id IN (10, 11)")
    conn.commit()
    conn.close()
    with pytest.raises(IndexCorruptError, match="seal|no metadata row"):
        IndexStore.open(ix, verify=True)


def test_repair_restores_next_id_after_the_operator_confirms(ix, capsys):
    _edit_manifest(ix, reseal=True, next_id=500)
    asked = []
    plan = repair_index(ix, confirm=lambda p: asked.append(p.fixes) or False)
    assert not plan.applied and any("next_id 500 -> 600" in f for f in asked[0])
    with pytest.raises(IndexCorruptError):
        IndexStore.open(ix)  # declined: nothing changed
    capsys.readouterr()
    assert main(["index", "repair", str(ix), "--yes"]) == 0
    assert "next_id 500 -> 600" in capsys.readouterr().out
    with IndexStore.open(ix, writable=True, verify=True) as s:
        s.verify()
        assert s.get_items([4])[0].label == 4  # metadata untouched
        new = s.add(np.zeros((1, 4), np.uint8), np.zeros((1, DIM), np.float32))
        assert new.tolist() == [600]  # no id given twice
    assert main(["index", "repair", str(ix), "--yes"]) == 0
    assert "nothing to repair" in capsys.readouterr().out


def test_repair_refuses_to_empty_a_damaged_database_unless_told(ix, capsys):
    db = ix / METADATA_FILE
    blob = bytearray(db.read_bytes())
    blob[:16] = b"garbage header!!"
    db.write_bytes(bytes(blob))
    capsys.readouterr()
    assert main(["index", "repair", str(ix), "--yes"]) == 2
    err = capsys.readouterr().err
    assert "Restore it from a backup" in err and "--drop-metadata" in err
    assert "--accept-metadata to keep" not in err  # SQLite cannot read it: accepting is not offered
    assert db.read_bytes()[:16] == b"garbage header!!"  # untouched
    assert main(["index", "repair", str(ix), "--yes", "--drop-metadata"]) == 0
    assert list(ix.glob("metadata.sqlite.damaged-*"))  # kept beside the new one
    with IndexStore.open(ix, verify=True) as s:
        s.verify()
        meta = s.get_items([0, 4])
        assert [m.source for m in meta] == ["", ""] and meta[0].extra == DROPPED
        assert len(s.search(s.codes[:2], k=3)[0]) == 3  # codes and features are intact


def test_repair_accepts_a_sound_but_changed_database_only_when_asked(ix, capsys):
    db = ix / METADATA_FILE
    conn = sqlite3.connect(db)
    conn.execute("UPDATE items SET label = 7 WHERE id = 4")  # a silent change, as a bit flip makes
    conn.commit()
    conn.close()
    assert main(["index", "repair", str(ix), "--yes"]) == 2
    assert "--accept-metadata" in capsys.readouterr().err
    assert main(["index", "repair", str(ix), "--yes", "--accept-metadata"]) == 0
    with IndexStore.open(ix, verify=True) as s:
        assert s.get_items([4])[0].label == 7


def test_repair_says_what_it_cannot_rebuild(ix, capsys):
    seg = read_manifest(ix).segments[0]
    path = ix / seg.codes.name
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1
    path.write_bytes(bytes(blob))
    assert main(["index", "repair", str(ix), "--yes"]) == 2
    assert "cannot rebuild it" in capsys.readouterr().err


def test_a_format_1_index_is_read_and_sealed_by_its_next_writer(ix):
    """Indexes written before the seal: no checksum, no metadata record."""
    path = ix / "manifest.json"
    d = json.loads(path.read_text())
    for key in ("checksum", "metadata"):
        d.pop(key)
    d["format_version"] = 1
    path.write_text(json.dumps(d))
    with IndexStore.open(ix, verify=True) as s:
        assert s.manifest.metadata is None and len(s) == N - 5
    with IndexStore.open(ix, writable=True) as s:
        assert s.manifest.metadata is not None and s.manifest.format_version == 2
    with IndexStore.open(ix, verify=True) as s:
        s.verify()


def test_file_hashes_find_live_items_only(ix):
    with IndexStore.open(ix, writable=True) as s:
        found = s.find_files([f"{4:064x}", f"{2:064x}", "ab" * 32])
        assert found == {f"{4:064x}": 4}  # 2 was removed, the third was never added
        s.remove([4])
        assert s.find_files([f"{4:064x}"]) == {}


def test_a_reader_in_a_transaction_delays_the_checkpoint_not_the_seal(ix):
    """A reader that holds SQLite's WAL open keeps the checkpoint from emptying it: the next
    commits seal on top of the same WAL, and the index verifies throughout."""
    reader = sqlite3.connect(f"file:{ix / METADATA_FILE}?mode=ro", uri=True, isolation_level=None)
    rng = np.random.default_rng(5)
    with IndexStore.open(ix, writable=True) as s:
        s.add(*_batch(rng, 3), _items(600, 603, rng))  # WAL emptied: the reader is not in it yet
        reader.execute("BEGIN")
        assert reader.execute("SELECT COUNT(*) FROM items").fetchone()[0] == N - 5 + 3
        for lo in (603, 606):
            s.add(*_batch(rng, 3), _items(lo, lo + 3, rng))
            assert (ix / "metadata.sqlite-wal").stat().st_size > 0  # the checkpoint could not restart it
            IndexStore.open(ix, verify=True).close()
        reader.execute("COMMIT")
        s.add(*_batch(rng, 3), _items(609, 612, rng))
        assert (ix / "metadata.sqlite-wal").stat().st_size == 0
    reader.close()
    with IndexStore.open(ix, verify=True) as s:
        s.verify()
        assert [m.source for m in s.get_items([604, 611])] == ["img604.png", "img611.png"]


def _batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.integers(0, 256, (n, 4), dtype=np.uint8), rng.normal(size=(n, DIM)).astype(np.float32)
