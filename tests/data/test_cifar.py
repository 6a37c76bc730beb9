import io
import os
import pickle
import tarfile

import numpy as np
import pytest

from hashret.data import download_cifar10, read_cifar10


def test_read_pickles_dir_and_parent(tmp_path, make_cifar, build):
    folder = tmp_path / "cifar-10-batches-py"
    written = make_cifar(folder, n=3)
    for where in (folder, tmp_path):
        d = read_cifar10(where)
        assert d.name == "cifar10" and d.natural is True
        assert d.classes == build.classes
        assert d.train.images.shape == (15, 32, 32, 3) and d.test.images.shape == (3, 32, 32, 3)
        assert d.train.images.flags.c_contiguous
        np.testing.assert_array_equal(d.train.images[3:6], written["data_batch_2"])
        np.testing.assert_array_equal(d.test.images, written["test_batch"])
        np.testing.assert_array_equal(d.train.labels[:3], written["data_batch_1_labels"])
        assert d.train.ids[4] == "cifar10/data_batch_2/1"
        assert d.test.ids[2] == "cifar10/test_batch/2"


def test_channel_major_layout(tmp_path, make_cifar):
    folder = tmp_path / "c"
    make_cifar(folder, n=1)
    # pixel (row 0, col 1) of the red plane is byte 1; of the green plane, byte 1024 + 1
    batch = pickle.load(open(folder / "test_batch", "rb"), encoding="bytes")
    image = read_cifar10(folder).test.images[0]
    assert image[0, 1, 0] == batch[b"data"][0, 1]
    assert image[0, 1, 1] == batch[b"data"][0, 1024 + 1]
    assert image[2, 0, 2] == batch[b"data"][0, 2048 + 2 * 32]


def test_missing_files(tmp_path, make_cifar):
    with pytest.raises(FileNotFoundError, match="cifar-10-python.tar.gz"):
        read_cifar10(tmp_path / "none")
    folder = tmp_path / "cifar-10-batches-py"
    make_cifar(folder)
    (folder / "data_batch_4").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_4"):
        read_cifar10(tmp_path)


def test_corrupt_and_hostile_pickles(tmp_path, make_cifar):
    folder = tmp_path / "c"
    make_cifar(folder)
    (folder / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="data_batch_3"):
        read_cifar10(folder)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    make_cifar(folder)
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Evil()}))
    with pytest.raises(ValueError, match="refusing to load"):
        read_cifar10(folder)


def test_wrong_data_shape(tmp_path, make_cifar):
    folder = tmp_path / "c"
    make_cifar(folder)
    with open(folder / "data_batch_1", "wb") as f:
        pickle.dump({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, f)
    with pytest.raises(ValueError, match="expected uint8"):
        read_cifar10(folder)


def _tar_gz(path, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_download_from_file_url(tmp_path, make_cifar):
    src = tmp_path / "src" / "cifar-10-batches-py"
    make_cifar(src)
    archive = tmp_path / "cifar-10-python.tar.gz"
    _tar_gz(archive, {f"cifar-10-batches-py/{p.name}": p.read_bytes() for p in src.iterdir()})
    dest = tmp_path / "dest"
    folder = download_cifar10(dest, url=archive.as_uri(), timeout=5)
    assert folder == dest / "cifar-10-batches-py"
    assert len(read_cifar10(dest).train) == 15
    assert download_cifar10(dest, url="file:///nonexistent") == folder  # already there


def test_download_offline_and_unsafe(tmp_path):
    url = (tmp_path / "missing.tar.gz").as_uri()
    with pytest.raises(RuntimeError, match=r"(?s)missing\.tar\.gz.*by hand"):
        download_cifar10(tmp_path / "d1", url=url, timeout=5)
    evil = tmp_path / "evil.tar.gz"
    _tar_gz(evil, {"../escape.txt": b"x"})
    with pytest.raises(ValueError, match="unsafe"):
        download_cifar10(tmp_path / "d2", url=evil.as_uri(), timeout=5)
    assert not (tmp_path / "escape.txt").exists()
