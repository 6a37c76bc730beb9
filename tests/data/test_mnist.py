import gzip

import numpy as np
import pytest

from hashret.data import download_mnist, load_dataset, read_mnist
from hashret.data.mnist import MNIST_FILES


@pytest.mark.parametrize("gz", [True, False])
def test_read_gz_and_plain(tmp_path, make_mnist, gz):
    arrays = make_mnist(tmp_path / "m", n_train=6, n_test=4, gz=gz)
    d = read_mnist(tmp_path / "m")
    assert d.name == "mnist" and d.natural is False
    assert d.train.images.shape == (6, 28, 28, 1) and d.train.images.dtype == np.uint8
    assert d.test.images.shape == (4, 28, 28, 1)
    np.testing.assert_array_equal(d.train.images[..., 0], arrays["train_images"])
    np.testing.assert_array_equal(d.test.labels, arrays["test_labels"])
    assert d.train.labels.dtype == np.int64
    assert d.classes == tuple("0123456789")
    assert d.train.ids[2] == "mnist/train/2" and d.test.ids[0] == "mnist/test/0"


def test_mixed_plain_and_gz(tmp_path, make_mnist):
    folder = tmp_path / "m"
    arrays = make_mnist(folder, gz=True)
    gz_path = folder / "t10k-images-idx3-ubyte.gz"
    (folder / "t10k-images-idx3-ubyte").write_bytes(gzip.decompress(gz_path.read_bytes()))
    gz_path.unlink()
    np.testing.assert_array_equal(read_mnist(folder).test.images[..., 0], arrays["test_images"])


def test_wrong_magic_names_the_file(tmp_path, make_mnist, build):
    folder = tmp_path / "m"
    make_mnist(folder, gz=False)
    # a label file where the image file should be
    (folder / "train-images-idx3-ubyte").write_bytes(
        build.idx_bytes(np.zeros(6, np.uint8), 2049))
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.*magic number 2049"):
        read_mnist(folder)


def test_gzip_content_without_suffix(tmp_path, make_mnist):
    folder = tmp_path / "m"
    make_mnist(folder, gz=True)
    gz_path = folder / "train-labels-idx1-ubyte.gz"
    gz_path.rename(folder / "train-labels-idx1-ubyte")
    with pytest.raises(ValueError, match=r"gzip-compressed: give it a \.gz suffix"):
        read_mnist(folder)


def test_truncated_file(tmp_path, make_mnist):
    folder = tmp_path / "m"
    make_mnist(folder, gz=False)
    path = folder / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match=r"t10k-images-idx3-ubyte is truncated"):
        read_mnist(folder)


def test_truncated_gzip(tmp_path, make_mnist):
    folder = tmp_path / "m"
    make_mnist(folder, gz=True)
    path = folder / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz .*truncated"):
        read_mnist(folder)


def test_label_count_mismatch(tmp_path, make_mnist, build):
    folder = tmp_path / "m"
    make_mnist(folder, gz=False, n_train=6)
    (folder / "train-labels-idx1-ubyte").write_bytes(build.idx_bytes(np.zeros(5, np.uint8), 2049))
    with pytest.raises(ValueError, match="label file does not match the images"):
        read_mnist(folder)


def test_missing_folder_and_files(tmp_path, make_mnist):
    with pytest.raises(FileNotFoundError, match=r"does not exist.*yann\.lecun\.com"):
        read_mnist(tmp_path / "nowhere")
    folder = tmp_path / "m"
    make_mnist(folder)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"lacks the MNIST file\(s\) t10k-labels"):
        read_mnist(folder)


def test_torchvision_layout(tmp_path, make_mnist):
    make_mnist(tmp_path / "MNIST" / "raw")
    assert len(read_mnist(tmp_path).train) == 6


def test_download_from_file_mirror(tmp_path, make_mnist):
    mirror = tmp_path / "mirror"
    arrays = make_mnist(mirror, gz=True)
    dest = tmp_path / "dest"
    dead = (tmp_path / "dead").as_uri() + "/"  # first mirror fails, second works
    out = download_mnist(dest, mirrors=[dead, mirror.as_uri() + "/"], timeout=5)
    assert out == dest
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        n + ".gz" for pair in MNIST_FILES.values() for n in pair)
    np.testing.assert_array_equal(read_mnist(dest).train.images[..., 0], arrays["train_images"])


def test_download_rejects_corrupt_and_reports_offline(tmp_path, make_mnist):
    mirror = tmp_path / "mirror"
    make_mnist(mirror, gz=True)
    bad = mirror / "train-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\x00\x00\x08\x01junk"))
    with pytest.raises(RuntimeError) as info:
        download_mnist(tmp_path / "dest", mirrors=[mirror.as_uri() + "/"], timeout=5)
    msg = str(info.value)
    assert "train-labels-idx1-ubyte.gz" in msg and mirror.as_uri() in msg and "by hand" in msg
    assert not list((tmp_path / "dest").glob("*.tmp-*"))


@pytest.mark.data
def test_real_mnist(real_data_root):
    folder = real_data_root / "mnist"
    if not (folder / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found in {folder} (set HASHRET_DATA)")
    d = read_mnist(folder)
    assert len(d.train) == 60000 and len(d.test) == 10000
    assert d.train.images.shape == (60000, 28, 28, 1)
    assert int(d.train.labels[0]) == 5
    assert np.bincount(d.test.labels).tolist()[:2] == [980, 1135]


FASHION = ("T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Boot")


def test_class_names_from_classes_txt_and_from_the_caller(tmp_path, make_mnist):
    folder = tmp_path / "fashion"
    make_mnist(folder, n_train=10, n_test=4)  # labels 0..9
    (folder / "classes.txt").write_text("\n".join(FASHION) + "\n\n")  # blank lines at the end are fine
    d = read_mnist(folder)
    assert d.classes == FASHION and d.test.classes == FASHION
    assert d.classes[d.train.labels[3]] == "Dress"
    given = tuple("abcdefghij")
    assert load_dataset("mnist", folder, class_names=list(given)).classes == given  # the caller's win


def test_wrong_class_names_are_clear_errors(tmp_path, make_mnist):
    folder = tmp_path / "m"
    make_mnist(folder, n_train=10, n_test=4)
    (folder / "classes.txt").write_text("\n".join(FASHION[:9]))
    with pytest.raises(ValueError, match=r"classes\.txt gives 9 class names but the labels run 0\.\.9: "
                                         "give 10 names, one per label in label order"):
        read_mnist(folder)
    with pytest.raises(ValueError, match=r"--class-names gives 11 class names but the labels run 0\.\.9"):
        read_mnist(folder, [*FASHION, "Hat"])
    with pytest.raises(ValueError, match="--class-names: class name 'Bag' is given twice"):
        read_mnist(folder, [*FASHION[:9], "Bag"])
    (folder / "classes.txt").write_text("\n".join(FASHION[:4]) + "\n\n" + "\n".join(FASHION[5:]))
    with pytest.raises(ValueError, match="classes.txt: the name of class 4 is empty"):
        read_mnist(folder)
    with pytest.raises(ValueError, match="--class-names names the labels of IDX files"):
        load_dataset("digits", class_names=FASHION)


def test_labels_past_9_need_names(tmp_path, make_mnist, build):
    folder = tmp_path / "letters"
    make_mnist(folder, n_train=12, n_test=4, gz=False)
    labels = np.arange(12, dtype=np.uint8)  # 12 classes, as in an IDX dataset of letters
    (folder / "train-labels-idx1-ubyte").write_bytes(build.idx_bytes(labels, 2049))
    with pytest.raises(ValueError, match=r"holds label 11; MNIST labels are 0-9 .*classes\.txt"):
        read_mnist(folder)
    (folder / "classes.txt").write_text("\n".join("abcdefghijkl"))
    d = read_mnist(folder)
    assert d.classes == tuple("abcdefghijkl") and d.classes[d.train.labels[11]] == "l"
