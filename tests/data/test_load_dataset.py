import numpy as np
import pytest

from hashret.data import DATASETS, load_dataset


def test_names():
    assert DATASETS == ("digits", "mnist", "cifar10", "folder", "cub200", "dogs")
    with pytest.raises(ValueError, match="digits, mnist, cifar10, folder, cub200, dogs"):
        load_dataset("imagenet", "somewhere")


def test_digits_ignores_data_dir():
    d = load_dataset("digits", "/does/not/matter", seed=0, test_fraction=0.2)
    assert d.name == "digits" and len(d.test) == 359


def test_missing_data_dir(tmp_path):
    for name in ("mnist", "cifar10", "folder"):
        with pytest.raises(FileNotFoundError, match="--data-dir"):
            load_dataset(name)
        with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'gone'}.*does not exist"):
            load_dataset(name, tmp_path / "gone")


def test_mnist(tmp_path, make_mnist):
    make_mnist(tmp_path)
    d = load_dataset("mnist", str(tmp_path))
    assert d.name == "mnist" and len(d.train) == 6
    with pytest.raises(ValueError, match="28x28"):
        load_dataset("mnist", tmp_path, size=32)


def test_cifar10_pickles(tmp_path, make_cifar):
    make_cifar(tmp_path / "cifar-10-batches-py")
    d = load_dataset("cifar10", tmp_path)
    assert d.name == "cifar10" and len(d.train) == 15 and d.natural


def test_cifar10_image_zip_and_folder(tmp_path, make_zip, make_tree, build):
    files = {f"{s}/{c}/{i:04d}.png": build.solid(i, h=32, w=32)
             for s in ("train", "test") for c in ("cat", "airplane") for i in range(2)}
    zipped = make_zip(tmp_path / "cifar10-jpeg.zip", {f"cifar10-jpeg/{k}": v
                                                      for k, v in files.items()})
    d = load_dataset("cifar10", zipped, cache_dir=tmp_path / "cache")
    assert d.name == "cifar10" and d.natural and d.classes == ("airplane", "cat")
    assert d.train.images.shape == (4, 32, 32, 3) and d.train.ids[0] == "train/airplane/0000.png"
    # the cached copy also comes back named cifar10, while "folder" keeps its own name
    assert load_dataset("cifar10", zipped, cache_dir=tmp_path / "cache").name == "cifar10"
    assert load_dataset("folder", zipped, cache_dir=tmp_path / "cache").name == "folder"
    make_tree(tmp_path / "extracted" / "cifar10-jpeg", files)
    e = load_dataset("cifar10", tmp_path / "extracted", cache_dir=False)
    np.testing.assert_array_equal(e.test.images, d.test.images)
    with pytest.raises(FileNotFoundError, match="pass that file's path"):
        load_dataset("cifar10", tmp_path)  # holds the zip, but is not a dataset itself
    (tmp_path / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="extract it"):
        load_dataset("cifar10", tmp_path / "cifar-10-python.tar.gz")


def test_folder_options(flat_tree):
    root, _ = flat_tree
    d = load_dataset("folder", root, size=6, seed=1, test_fraction=0.5, cache_dir=False)
    assert d.train.images.shape[1:] == (6, 6, 3)
    assert sorted(np.bincount(d.test.labels).tolist()) == [2, 2, 2]
    with pytest.raises(ValueError, match="--on-bad-image must be error or skip"):
        load_dataset("folder", root, on_bad_image="maybe")


def test_a_new_dataset_is_a_reader_and_one_registration(tmp_path):
    """The registry vocabulary: register_dataset / list_datasets / load_dataset, duplicates refused."""
    import numpy as np

    from hashret.data import DatasetSpec, ImageArray, list_datasets, register_dataset
    from hashret.data.arrays import DatasetSplits
    from hashret.data.registry import _DATASETS

    def read(path, options):
        imgs = np.full((4, 2, 2, 1), options.seed, np.uint8)
        part = ImageArray(imgs, np.array([0, 1, 0, 1]), np.array([f"{path.name}/{i}" for i in range(4)]),
                          ("a", "b"))
        return DatasetSplits("toy", part, part, natural=False, source=str(path))

    spec = register_dataset(DatasetSpec("toy", read, "a folder"))
    try:
        assert "toy" in list_datasets()
        splits = load_dataset("toy", tmp_path, seed=7)
        assert splits.train.images[0, 0, 0, 0] == 7 and splits.train.ids[0] == f"{tmp_path.name}/0"
        with pytest.raises(ValueError, match="registered already"):
            register_dataset(spec)
        with pytest.raises(FileNotFoundError, match="needs --data-dir: a folder"):
            load_dataset("toy")
    finally:
        _DATASETS.pop("toy")
    with pytest.raises(ValueError, match="unknown dataset 'toy': choose one of digits, mnist"):
        load_dataset("toy", tmp_path)
