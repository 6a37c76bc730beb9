"""Mend an index directory whose manifest or metadata database fails its checks.

What can be rebuilt from the rest of the directory is rebuilt: ``next_id``, the counts and
the removed set come from the segments (their files are checked against their SHA-256
first), the manifest checksum and the metadata seal are recomputed. What exists in one
place only cannot be: the labels, sources, thumbnails and file hashes of the items live
only in ``metadata.sqlite``, so a missing or damaged database is restored from a backup,
or -- only when asked, with ``drop_metadata`` -- replaced by empty rows (the damaged file
is kept beside it). A database that SQLite finds sound but whose bytes changed since the
last commit (a bit flip inside a row) can be accepted as it is with ``accept_metadata``.
Damaged segments, removed set or model copy are beyond repair: rebuild the index.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hashret.store.directory import lock_writer, seal_metadata, unlock_writer
from hashret.store.manifest import (
    FORMAT_VERSION,
    MANIFEST_FILE,
    IndexCorruptError,
    Manifest,
    canonical_checksum,
    read_manifest,
    write_manifest,
)
from hashret.store.metadata import METADATA_FILE, ItemMeta, MetadataDB
from hashret.store.segments import read_array, write_array
from hashret.store.sqlite_image import Image, WalMark, mismatched_chunks, wal_path

#: ``extra`` of the rows that ``drop_metadata`` puts in place of the lost ones.
DROPPED = {"metadata": "lost: dropped by hashret index repair"}


@dataclass
class RepairPlan:
    """What ``repair`` found and would change.

    Attributes:
        fixes: the changes, one line each (empty: nothing to repair).
        blockers: problems it cannot mend (with what to do instead); nothing is changed
            while there are any.
        applied: whether the fixes were written.
    """

    root: Path
    fixes: list[str] = field(default_factory=list)
    blockers: list[str] = field(default_factory=list)
    applied: bool = False
    manifest: Manifest | None = None
    next_id: int = 0
    removed: np.ndarray | None = None
    stored: np.ndarray | None = None
    metadata: str = "keep"  # keep | accept | drop


def repair_index(root: str | Path, *, confirm: Callable[[RepairPlan], bool], drop_metadata: bool = False,
                 accept_metadata: bool = False) -> RepairPlan:
    """Check ``root``, and when there is something to mend and nothing beyond repair, ask
    ``confirm(plan)`` and apply the fixes (holding the writer lock throughout).

    Raises:
        FileNotFoundError: no index at ``root``.
        IndexLockedError: another process writes the index.
    """
    root = Path(root)
    read_manifest_raw(root)  # FileNotFoundError before taking the lock
    fd = lock_writer(root)
    try:
        plan = _plan(root, drop_metadata=drop_metadata, accept_metadata=accept_metadata)
        if plan.fixes and not plan.blockers and confirm(plan):
            _apply(plan)
            plan.applied = True
        return plan
    finally:
        unlock_writer(fd)


def read_manifest_raw(root: Path) -> dict:
    path = root / MANIFEST_FILE
    read_manifest_exists = (root / MANIFEST_FILE).exists()
    if not read_manifest_exists:
        read_manifest(root)  # raises the FileNotFoundError with its fix
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise IndexCorruptError(
            f"{path} is not valid JSON ({e}): it holds the model and layout of the index and cannot be "
            "rebuilt; restore it from a backup, or rebuild the index with `hashret index build`"
        ) from e


def _plan(root: Path, *, drop_metadata: bool, accept_metadata: bool) -> RepairPlan:
    plan = RepairPlan(root)
    raw = read_manifest_raw(root)
    m = read_manifest(root, check=False)
    plan.manifest = m
    if raw.get("format_version") == FORMAT_VERSION and raw.get("checksum") != canonical_checksum(raw):
        plan.fixes.append("manifest.json does not match its checksum: re-sealed after these checks")
    for f in m.files():
        if m.metadata is not None and f == m.metadata.sums:
            continue
        try:
            f.check(root, checksum=True)
        except IndexCorruptError as e:
            plan.blockers.append(f"{e} (repair cannot rebuild it)")
    if plan.blockers:
        return plan
    ids = [read_array(root, s.ids, mmap=False) for s in m.segments]
    stored = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    if len(stored) > 1 and not np.all(stored[1:] > stored[:-1]):
        plan.blockers.append("the segments' ids are not increasing: rebuild the index "
                             "(`hashret index build`)")
        return plan
    plan.stored = stored
    plan.next_id = max(m.next_id, int(stored[-1]) + 1 if len(stored) else 0)
    if plan.next_id != m.next_id:
        plan.fixes.append(f"next_id {m.next_id} -> {plan.next_id} (above the largest stored id "
                          f"{int(stored[-1])}, so no id is given twice)")
    gone = read_array(root, m.removed, mmap=False) if m.removed else np.zeros(0, np.int64)
    plan.removed = gone[np.isin(gone, stored)]
    if len(plan.removed) != len(gone):
        plan.fixes.append(f"drop {len(gone) - len(plan.removed)} removed id(s) that no segment stores")
    count = len(stored) - len(plan.removed)
    if (m.count, m.removed_count) != (count, len(plan.removed)):
        plan.fixes.append(f"count {m.count} -> {count}, removed_count {m.removed_count} -> "
                          f"{len(plan.removed)} (from the segments and the removed set)")
    _plan_metadata(plan, drop_metadata=drop_metadata, accept_metadata=accept_metadata)
    return plan


def _plan_metadata(plan: RepairPlan, *, drop_metadata: bool, accept_metadata: bool) -> None:
    root, m = plan.root, plan.manifest
    assert m is not None and plan.stored is not None and plan.removed is not None
    db = root / METADATA_FILE
    lost = "the labels, sources and thumbnails of the items are only in it"
    live = plan.stored[~np.isin(plan.stored, plan.removed)]
    if not db.exists():
        if drop_metadata:
            plan.metadata = "drop"
            plan.fixes.append(f"{db} is missing: start a new one with empty rows for the {len(live)} live "
                              "items (their labels, sources and thumbnails are lost)")
        else:
            plan.blockers.append(f"{db} is missing ({lost}): restore it from a backup, or pass "
                                 "--drop-metadata to go on without them")
        return
    changed = _seal_problem(root, m)
    sound = _integrity(db)
    if changed or sound:
        what = "; ".join(x for x in (changed, f"SQLite finds it damaged: {sound}" if sound else "") if x)
        if drop_metadata:
            plan.metadata = "drop"
            plan.fixes.append(f"{db}: {what}. It is moved aside (kept as {db.name}.damaged-<time>) and a "
                              f"new one with empty rows for the {len(live)} live items takes its place")
            return
        if accept_metadata and not sound:
            plan.metadata = "accept"
            plan.fixes.append(f"{db}: {what}. Accepted as it is now (SQLite finds it sound, but a row may "
                              "hold a silently changed label, source or thumbnail) and sealed again")
        else:
            also = "" if sound else (", or --accept-metadata to keep it as it is (SQLite finds it sound, "
                                     "but a row may hold a silently changed value)")
            plan.blockers.append(f"{db}: {what}. Restore it from a backup ({lost}){also}, or pass "
                                 "--drop-metadata to replace it by empty rows")
            return
    elif m.metadata is None:
        plan.fixes.append(f"{db}: seal it (an index written before metadata seals existed)")
    rows = _row_ids(db, plan.next_id)
    missing = live[~np.isin(live, rows)]
    stray = rows[~np.isin(rows, plan.stored)]
    if len(missing):
        plan.fixes.append(f"{len(missing)} live item(s) have no metadata row: add empty rows for them")
    if len(stray):
        plan.fixes.append(f"delete {len(stray)} metadata row(s) of ids that no segment stores")


def _seal_problem(root: Path, m: Manifest) -> str:
    """Why the database no longer matches the manifest's seal ('' when it does)."""
    seal_ = m.metadata
    if seal_ is None:
        return ""
    try:
        seal_.sums.check(root, checksum=True)
        image = Image(root / METADATA_FILE, WalMark(*seal_.wal) if seal_.wal else None)
        if image.problem:
            return image.problem
        if image.size != seal_.bytes:
            return f"it has {image.size} bytes, the last commit sealed {seal_.bytes}"
        bad = mismatched_chunks(image, read_array(root, seal_.sums, mmap=False))
    except IndexCorruptError as e:
        return f"its seal is unusable ({e})"
    return f"{len(bad)} chunk(s) changed since the last commit" if bad else ""


def _integrity(db: Path) -> str:
    """SQLite's complaint about ``db`` ('' when ``PRAGMA integrity_check`` says ok)."""
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            found = [r[0] for r in conn.execute("PRAGMA integrity_check(5)")]
            cols = {r[1] for r in conn.execute("PRAGMA table_info(items)")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as e:
        return str(e)
    if found != ["ok"]:
        return "; ".join(found)
    return "" if {"id", "source", "label"} <= cols else "no items table"


def _row_ids(db: Path, below: int) -> np.ndarray:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return np.fromiter((r[0] for r in conn.execute("SELECT id FROM items WHERE id < ?", (below,))),
                           np.int64)
    finally:
        conn.close()


def _apply(plan: RepairPlan) -> None:
    root, m = plan.root, plan.manifest
    assert m is not None and plan.stored is not None and plan.removed is not None
    db = root / METADATA_FILE
    if plan.metadata == "drop":
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for path in (db, wal_path(db), db.with_name(db.name + "-shm")):
            if path.exists():
                os.replace(path, path.with_name(f"{path.name}.damaged-{stamp}"))
    meta = MetadataDB(root, readonly=False, create=plan.metadata == "drop")
    try:
        live = plan.stored[~np.isin(plan.stored, plan.removed)]
        meta.purge_from(plan.next_id)
        rows = meta.ids_below(plan.next_id)
        meta.delete(rows[~np.isin(rows, plan.stored)].tolist())
        meta.delete(plan.removed.tolist())
        missing = live[~np.isin(live, rows)] if plan.metadata != "drop" else live
        for lo in range(0, len(missing), 10000):
            part = missing[lo : lo + 10000]
            meta.insert(part.tolist(), [ItemMeta("", extra=dict(DROPPED))] * len(part))
        meta.checkpoint()
    finally:
        meta.close()
    gen = m.generation + 1
    removed = write_array(root, f"removed-{gen:06d}.npy", plan.removed) if len(plan.removed) else None
    new = m.evolve(generation=gen, next_id=plan.next_id, count=len(live), removed=removed,
                   removed_count=len(plan.removed), metadata=seal_metadata(root, None, None, gen),
                   format_version=FORMAT_VERSION, updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    write_manifest(root, new)
    for f in set(m.files()) - set(new.files()):
        (root / f.name).unlink(missing_ok=True)
