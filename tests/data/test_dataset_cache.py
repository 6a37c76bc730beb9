import numpy as np
import pytest

import hashret.data.folder as folder_module
import hashret.data.image as image_module
from hashret.data import DatasetSplits, ImageArray, cached, read_image_folder


def no_decoding(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("decoded an image although the cache should have been used")

    monkeypatch.setattr(folder_module, "decode_image", refuse)
    monkeypatch.setattr(image_module, "decode_image", refuse)


def assert_same(a: DatasetSplits, b: DatasetSplits) -> None:
    assert (a.name, a.classes, a.natural, a.source) == (b.name, b.classes, b.natural, b.source)
    for split in ("train", "test"):
        x, y = getattr(a, split), getattr(b, split)
        np.testing.assert_array_equal(x.images, y.images)
        np.testing.assert_array_equal(x.labels, y.labels)
        assert x.ids.tolist() == y.ids.tolist()
        assert x.images.dtype == y.images.dtype and x.labels.dtype == y.labels.dtype


def test_second_load_does_not_decode(flat_tree, tmp_path, monkeypatch):
    root, _ = flat_tree
    cache = tmp_path / "cache"
    first = read_image_folder(root, cache_dir=cache)
    entries = list(cache.glob("folder-*.npz"))
    assert len(entries) == 1 and not list(cache.glob("*.tmp-*"))
    no_decoding(monkeypatch)
    assert_same(first, read_image_folder(root, cache_dir=cache))
    with pytest.raises(AssertionError, match="decoded"):  # other options: another entry
        read_image_folder(root, cache_dir=cache, seed=1)


def test_zip_hit_needs_no_listing(tmp_path, make_zip, build, monkeypatch):
    members = {f"top/{s}/{c}/{i}.png": build.solid(i) for s in ("train", "test")
               for c in ("a", "b") for i in range(2)}
    zipped = make_zip(tmp_path / "d.zip", members)
    first = read_image_folder(zipped, cache_dir=tmp_path / "cache")
    no_decoding(monkeypatch)
    monkeypatch.setattr(folder_module, "scan_image_tree", lambda *a: 1 / 0)
    assert_same(first, read_image_folder(zipped, cache_dir=tmp_path / "cache", seed=5))


def test_added_file_invalidates(flat_tree, tmp_path, make_tree, build):
    root, _ = flat_tree
    cache = tmp_path / "cache"
    before = read_image_folder(root, cache_dir=cache)
    make_tree(root, {"dog/99.png": build.solid(99)})
    after = read_image_folder(root, cache_dir=cache)
    assert len(after.train) + len(after.test) == len(before.train) + len(before.test) + 1
    assert len(list(cache.glob("folder-*.npz"))) == 2


def test_corrupt_cache_is_rebuilt(flat_tree, tmp_path):
    root, _ = flat_tree
    cache = tmp_path / "cache"
    first = read_image_folder(root, cache_dir=cache)
    (entry,) = cache.glob("folder-*.npz")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])
    with pytest.warns(UserWarning, match="unreadable.*rebuilding"):
        second = read_image_folder(root, cache_dir=cache)
    assert_same(first, second)
    assert_same(first, read_image_folder(root, cache_dir=cache))  # rewritten, readable


def test_cache_disabled_and_default_dir(flat_tree, tmp_path):
    root, _ = flat_tree
    read_image_folder(root, cache_dir=False)
    default = tmp_path / "default-cache"  # HASHRET_CACHE, set by conftest
    assert not default.exists()
    read_image_folder(root)
    assert len(list(default.glob("folder-*.npz"))) == 1


def test_cached_calls_build_once(tmp_path):
    calls = []

    def build():
        calls.append(1)
        a = ImageArray(np.zeros((2, 3, 3, 1), np.uint8), np.array([0, 1]), np.array(["p", "q"]),
                       ("x", "y"))
        return DatasetSplits("toy", a, a, natural=False, source="memory")

    key = {"reader": "toy", "n": 2}
    first = cached(key, build, tmp_path)
    second = cached(key, build, tmp_path)
    assert calls == [1]
    assert_same(first, second)
    cached(key | {"n": 3}, build, tmp_path)
    cached(key, build, False)
    assert calls == [1, 1, 1]


def test_unwritable_cache_only_warns(flat_tree, tmp_path):
    root, _ = flat_tree
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not write the dataset cache"):
        d = read_image_folder(root, cache_dir=blocker / "cache")
    assert len(d.train) > 0
