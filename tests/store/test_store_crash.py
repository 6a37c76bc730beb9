"""Crash safety and concurrency of the persistent index, with real processes and SIGKILL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from hashret.store.directory import IndexStore
from hashret.store.manifest import read_manifest
from hashret.store.metadata import ItemMeta, MetadataDB

BITS, DIM = 32, 8

# A writer that adds small batches (and removes / compacts now and then) until killed.
WRITER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from hashret.store.metadata import ItemMeta
    from hashret.store import directory as store_mod
    root, mode = sys.argv[1], sys.argv[2]
    armed = []  # crash only in the commits after "ready" (opening may seal or checkpoint)
    if mode != "loop":  # die by SIGKILL at a chosen point of the next commit
        import os, signal
        owner = store_mod.MetadataDB if mode == "checkpoint" else store_mod
        target = {"commit": "write_manifest", "segment": "write_segment", "rows": "seal_metadata",
                  "checkpoint": "checkpoint"}[mode]
        real = getattr(owner, target)
        def crash(*a, **k):
            if not armed:
                return real(*a, **k)
            if target == "write_segment":
                real(*a, **k)  # the segment's files are complete, the commit never happens
            os.kill(os.getpid(), signal.SIGKILL)
        setattr(owner, target, crash)  # checkpoint: the commit is done, the WAL not yet copied
    s = store_mod.IndexStore.open(root, writable=True)
    rng = np.random.default_rng(len(s))
    print("ready", flush=True)
    armed.append(True)
    for step in range(100000):
        n = int(rng.integers(1, 40))
        codes = rng.integers(0, 256, (n, 4), dtype=np.uint8)
        s.add(codes, rng.normal(size=(n, 8)).astype(np.float32),
              [ItemMeta(f"w{s.manifest.next_id + j}", 1) for j in range(n)])
        if step % 7 == 3:
            live = s.live_ids()
            s.remove(live[rng.choice(len(live), 2, replace=False)])
        if step % 11 == 5:
            s.compact()
""")


def start_writer(root: Path, mode: str) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-c", WRITER, str(root), mode], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, env=env, text=True)
    assert p.stdout.readline().strip() == "ready", p.stderr.read()
    return p


def new_index(root: Path) -> None:
    rng = np.random.default_rng(0)
    with IndexStore.create(root, bits=BITS, feature_dim=DIM, backend="numpy") as s:
        s.add(rng.integers(0, 256, (50, 4), dtype=np.uint8), rng.normal(size=(50, DIM)).astype(np.float32),
              [ItemMeta(f"w{i}", 1) for i in range(50)])


def check_consistent(root: Path) -> int:
    """The committed state is complete: checksums, counts, metadata of every live item, search."""
    with IndexStore.open(root, verify=True) as s:
        m = s.manifest
        live = s.live_ids()
        assert len(live) == m.count == m.rows - m.removed_count
        metas = s.get_items(live)
        assert [x.source for x in metas] == [f"w{i}" for i in live]
        res = s.search(s.codes[:3], k=5)
        assert all(len(r) == min(5, len(s)) for r in res)
        return m.generation


def test_kill_9_at_random_moments_never_loses_the_last_commit(tmp_path):
    root = tmp_path / "ix"
    new_index(root)
    rng = np.random.default_rng(1)
    gens = []
    for _ in range(6):
        p = start_writer(root, "loop")
        time.sleep(float(rng.uniform(0.05, 0.5)))
        p.send_signal(signal.SIGKILL)
        p.wait()
        gens.append(check_consistent(root))
    assert gens[-1] > 1, "the writer never committed anything: the test did not exercise crashes"
    with IndexStore.open(root, writable=True) as s:  # the next writer removes the crash's leftovers
        named = {f.name for f in s.manifest.files()}
        on_disk = {str(f.relative_to(root)) for f in root.rglob("*.npy")}
        assert on_disk <= named
        assert MetadataDB(root, readonly=True).count() == s.manifest.count


@pytest.mark.parametrize("point", ["segment", "rows", "commit"])
def test_kill_9_between_writing_and_committing(tmp_path, point):
    root = tmp_path / "ix"
    new_index(root)
    before = read_manifest(root)
    p = start_writer(root, point)
    assert p.wait() == -signal.SIGKILL
    assert read_manifest(root) == before  # the add that died is invisible
    check_consistent(root)
    leftovers = sorted((root / "segments").glob("*"))
    assert len(leftovers) > 3 * len(before.segments)  # the dead writer left files behind ...
    with IndexStore.open(root, writable=True) as s:  # ... and metadata rows: both are cleaned up
        assert len(list((root / "segments").glob("*"))) == 3 * len(before.segments)
        assert MetadataDB(root, readonly=True).count() == s.manifest.count == before.count
        s.add(np.zeros((1, 4), np.uint8), np.zeros((1, DIM), np.float32), [ItemMeta("w50", 1)])
        assert s.live_ids()[-1] == 50  # ids of the lost add are given again: they were never visible


def test_kill_9_after_the_commit_before_the_checkpoint(tmp_path):
    """The add is committed while its metadata rows are still only in SQLite's WAL: readers
    check the sealed image (file + sealed WAL frames) and see every row."""
    root = tmp_path / "ix"
    new_index(root)
    before = read_manifest(root)
    p = start_writer(root, "checkpoint")
    assert p.wait() == -signal.SIGKILL
    after = read_manifest(root)
    assert after.generation == before.generation + 1 and after.count > before.count
    assert after.metadata.wal is not None and after.metadata.wal[2] > 0  # sealed frames in the WAL
    assert (root / "metadata.sqlite-wal").stat().st_size > 0
    check_consistent(root)
    with IndexStore.open(root, writable=True) as s:  # the next writer checkpoints: still the same image
        assert s.manifest.generation == after.generation
        assert (root / "metadata.sqlite-wal").stat().st_size == 0
        s.verify()


def test_readers_search_while_a_writer_adds(tmp_path):
    root = tmp_path / "ix"
    new_index(root)
    p = start_writer(root, "loop")
    try:
        reader = IndexStore.open(root)
        seen, deadline, verified = set(), time.monotonic() + 3, 0
        while time.monotonic() < deadline:
            if len(seen) % 3 == 0:  # a full check (seal included) never raises a false alarm
                IndexStore.open(root, verify=True).close()
                verified += 1
            reader.refresh()
            seen.add(reader.manifest.generation)
            res = reader.search(reader.codes[-2:], k=10)
            live = set(reader.live_ids().tolist())
            for r in res:
                assert set(r.indices.tolist()) <= live
                assert np.all(np.diff(r.hamming) >= 0)
            assert all(m.source for m in reader.get_items(res[0].indices))
        reader.close()
    finally:
        p.kill()
        p.wait()
    assert len(seen) > 3, "the reader never saw the writer's commits"
    assert verified > 0


# `index add` of image files, killed by SIGKILL at the commit of its third batch.
ADDER = textwrap.dedent("""
    import os, signal, sys
    from hashret.store import directory as store_mod
    from hashret.indexing import add_files
    root, folder = sys.argv[1], sys.argv[2]
    real, calls = store_mod.write_manifest, []
    def crash(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(*a, **k)
    store_mod.write_manifest = crash
    add_files(store_mod.IndexStore.open(root, writable=True), [folder], batch_size=4)
""")


def test_an_add_killed_part_way_is_finished_by_running_it_again(digits_run, tmp_path):
    """No file twice: the committed batches are skipped by content, the lost one is added."""
    from PIL import Image

    from hashret.indexing import add_files, build_index
    from hashret.run import load_run_dataset, open_run

    run = open_run(digits_run)
    data = load_run_dataset(run)
    root, folder = tmp_path / "ix", tmp_path / "files"
    folder.mkdir()
    for j in range(20):
        Image.fromarray(data.train.images[j][..., 0]).save(folder / f"f{j:02d}.png")
    build_index(run, root, data.test, collection="digits", split="test").close()
    n0 = len(data.test)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run([sys.executable, "-c", ADDER, str(root), str(folder)], env=env, capture_output=True)
    assert p.returncode == -signal.SIGKILL, p.stderr.decode()[-2000:]
    with IndexStore.open(root, verify=True) as s:
        assert len(s) == n0 + 8  # two batches of 4 committed, the third lost
    with IndexStore.open(root, writable=True) as s:
        done = add_files(s, [folder], batch_size=4)
        assert (done.already, len(done.ids)) == (8, 12)
        sources = [m.source for m in s.get_items(s.live_ids()[n0:])]
    assert sorted(sources) == sorted(str(f.resolve()) for f in folder.iterdir())  # each file once
