"""Stanford Dogs reader on a tiny tree in its layout (written by the test), .mat and .txt lists."""

import numpy as np
import pytest

from hashret.data import load_dataset, read_dogs

TRAIN = ["n02085620-Chihuahua/n02085620_1.png", "n02085620-Chihuahua/n02085620_2.png",
         "n02085782-Japanese_spaniel/n02085782_1.png"]
TEST = ["n02085782-Japanese_spaniel/n02085782_2.png", "n02085620-Chihuahua/n02085620_3.png"]


def _write_mat(path, paths):
    """The official lists' format: a MATLAB cell array file_list [n, 1] of strings, labels 1-based."""
    from scipy.io import savemat

    cells = np.empty((len(paths), 1), dtype=object)
    for i, p in enumerate(paths):
        cells[i, 0] = np.array([p])
    classes = sorted({p.split("/")[0] for p in TRAIN + TEST})
    labels = np.array([[classes.index(p.split("/")[0]) + 1] for p in paths])
    savemat(str(path), {"file_list": cells, "annotation_list": cells, "labels": labels})


@pytest.fixture
def dogs(tmp_path, make_tree, build):
    root = tmp_path / "dogs"
    make_tree(root / "Images", {p: build.solid(i) for i, p in enumerate(TRAIN + TEST)})
    _write_mat(root / "train_list.mat", TRAIN)
    _write_mat(root / "test_list.mat", TEST)
    return root


def test_official_split_from_the_mat_lists(dogs, build):
    data = read_dogs(dogs, size=(4, 5), cache_dir=False)
    assert data.name == "dogs" and data.train.classes == ("n02085620-Chihuahua",
                                                          "n02085782-Japanese_spaniel")
    assert list(data.train.ids) == TRAIN and list(data.test.ids) == TEST
    np.testing.assert_array_equal(data.train.labels, [0, 0, 1])
    np.testing.assert_array_equal(data.test.labels, [1, 0])
    np.testing.assert_array_equal(data.test.images[1], build.solid(4))


def test_text_lists_in_a_lists_folder(dogs):
    for split, paths in (("train", TRAIN), ("test", TEST)):
        (dogs / f"{split}_list.mat").unlink()
        (dogs / "lists").mkdir(exist_ok=True)
        (dogs / "lists" / f"{split}_list.txt").write_text("".join(f"Images/{p} 1\n" for p in paths))
    data = load_dataset("dogs", dogs, size=4, cache_dir=False)
    assert list(data.train.ids) == TRAIN and data.train.images.shape == (3, 4, 4, 3)


def test_missing_split_file_names_the_fix(dogs):
    (dogs / "test_list.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"test_list\.mat is missing.*lists\.tar"):
        read_dogs(dogs, cache_dir=False)


def test_not_a_dogs_folder_and_overlapping_lists(dogs, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no Images/"):
        read_dogs(tmp_path, cache_dir=False)
    _write_mat(dogs / "test_list.mat", TEST + TRAIN[:1])
    with pytest.raises(ValueError, match="in both"):
        read_dogs(dogs, cache_dir=False)
