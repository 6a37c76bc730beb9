"""A backend is recorded with its options, and what it trains is stored: an IVF index directory
searches the same way after every reopen and compaction."""

import numpy as np
import pytest

from hashret.codes import pack
from hashret.index import create_index
from hashret.index.registry import index_spec, parse_index_spec
from hashret.store.directory import IndexStore
from hashret.store.manifest import read_manifest


def test_spec_round_trip():
    assert parse_index_spec("popcount") == ("popcount", {})
    assert parse_index_spec("faiss-ivf:nlist=256,nprobe=16") == ("faiss-ivf", {"nlist": 256, "nprobe": 16})
    assert index_spec("faiss-ivf", nprobe=16, nlist=256) == "faiss-ivf:nlist=256,nprobe=16"
    assert parse_index_spec(index_spec("faiss-ivf", nlist=8)) == ("faiss-ivf", {"nlist": 8})
    with pytest.raises(ValueError, match="key=value"):
        parse_index_spec("faiss-ivf:nlist")
    ivf = create_index("faiss-ivf:nlist=8,nprobe=3", 64)
    assert ivf.nlist == 8 and ivf.nprobe == 3
    with pytest.raises(ValueError, match="takes no option"):
        create_index("popcount:nlist=8", 64)


def _codes(n, seed):
    rng = np.random.default_rng(seed)
    centres = rng.integers(0, 2, (16, 64))
    bits = centres[rng.integers(0, 16, n)] ^ (rng.random((n, 64)) < 0.08)
    return pack(bits.astype(np.uint8))


def test_ivf_centroids_are_stored_and_survive_reopen_and_compaction(tmp_path):
    root = tmp_path / "ix"
    first, later = _codes(600, 0), _codes(900, 1)
    feats = lambda c: np.zeros((len(c), 4), np.float32)  # noqa: E731
    with IndexStore.create(root, bits=64, feature_dim=4, backend="faiss-ivf:nlist=16,nprobe=2") as s:
        s.add(first, feats(first))
        s.add(later, feats(later))
        before = s.search(later[:50], None, 10)
    m = read_manifest(root)
    assert m.backend == "faiss-ivf:nlist=16,nprobe=2" and m.backend_state is not None
    # the stored centroids are the ones the first add trains
    assert create_index(m.backend, 64).fit_state(first) == bytes(
        np.load(root / m.backend_state.name).tobytes())
    with IndexStore.open(root, writable=True) as s:
        s.compact()  # one segment now: without stored centroids the IVF would retrain on all codes
        after = s.search(later[:50], None, 10)
    for a, b in zip(before, after, strict=True):
        np.testing.assert_array_equal(a.indices, b.indices)
        np.testing.assert_array_equal(a.hamming, b.hamming)
    with IndexStore.open(root) as s:
        assert s.manifest.backend_state == m.backend_state
        again = s.search(later[:50], None, 10)
    np.testing.assert_array_equal(again[0].indices, before[0].indices)


def test_backends_without_state_store_none(tmp_path):
    with IndexStore.create(tmp_path / "ix", bits=64, feature_dim=4) as s:
        s.add(_codes(10, 2), np.zeros((10, 4), np.float32))
    assert read_manifest(tmp_path / "ix").backend_state is None


def test_cli_backend_spec_is_checked_before_loading(capsys):
    from hashret.cli import main

    with pytest.raises(SystemExit):
        main(["index", "build", "no-such-run", "--out", "x", "--backend", "annoy:trees=10"])
    assert "unknown backend 'annoy'" in capsys.readouterr().err
