"""CUB-200-2011 reader on a tiny tree in its layout (written by the test)."""

import numpy as np
import pytest

from hashret.data import load_dataset, read_cub200

# id -> (path below images/, class id, is_train)
ITEMS = {
    1: ("001.Black_footed_Albatross/a1.png", 1, 1),
    2: ("001.Black_footed_Albatross/a2.png", 1, 0),
    3: ("001.Black_footed_Albatross/a3.png", 1, 1),
    4: ("002.Laysan_Albatross/b1.png", 2, 1),
    5: ("002.Laysan_Albatross/b2.png", 2, 0),
    6: ("003.Sooty_Albatross/c1.png", 3, 0),
    7: ("003.Sooty_Albatross/c2.png", 3, 1),
}


@pytest.fixture
def cub(tmp_path, make_tree, build):
    root = tmp_path / "CUB_200_2011"
    make_tree(root / "images", {p: build.solid(i) for i, (p, _, _) in ITEMS.items()})
    (root / "images.txt").write_text("".join(f"{i} {p}\n" for i, (p, _, _) in ITEMS.items()))
    (root / "image_class_labels.txt").write_text("".join(f"{i} {c}\n" for i, (_, c, _) in ITEMS.items()))
    (root / "train_test_split.txt").write_text("".join(f"{i} {t}\n" for i, (_, _, t) in ITEMS.items()))
    (root / "classes.txt").write_text("1 001.Black_footed_Albatross\n2 002.Laysan_Albatross\n"
                                      "3 003.Sooty_Albatross\n")
    return root


def test_official_split_labels_and_pixels(cub, tmp_path, build):
    data = read_cub200(tmp_path, size=(4, 5), cache_dir=False)  # the parent folder works too
    assert data.name == "cub200" and data.natural
    assert data.train.classes[0] == "001.Black_footed_Albatross" and len(data.train.classes) == 3
    train_ids = [i for i, (_, _, t) in ITEMS.items() if t]
    test_ids = [i for i, (_, _, t) in ITEMS.items() if not t]
    assert list(data.train.ids) == [ITEMS[i][0] for i in train_ids]
    assert list(data.test.ids) == [ITEMS[i][0] for i in test_ids]
    np.testing.assert_array_equal(data.train.labels, [ITEMS[i][1] - 1 for i in train_ids])
    np.testing.assert_array_equal(data.test.labels, [ITEMS[i][1] - 1 for i in test_ids])
    np.testing.assert_array_equal(data.test.images[0], build.solid(2))


def test_photos_of_any_size_are_resized_and_cached(cub, tmp_path, make_tree, build):
    make_tree(cub / "images", {ITEMS[4][0]: build.solid(4, h=9, w=7)})
    cache = tmp_path / "cache"
    data = load_dataset("cub200", cub, size=6, cache_dir=cache)
    assert data.train.images.shape == (4, 6, 6, 3)
    assert len(list(cache.glob("cub200-*.npz"))) == 1
    again = load_dataset("cub200", cub, size=6, cache_dir=cache)
    np.testing.assert_array_equal(again.train.images, data.train.images)


def test_missing_split_file_names_the_fix(cub):
    (cub / "train_test_split.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"train_test_split\.txt is missing.*CUB_200_2011\.tgz"):
        read_cub200(cub, cache_dir=False)


def test_not_a_cub_folder_and_missing_images(cub, tmp_path):
    with pytest.raises(FileNotFoundError, match="no images.txt"):
        read_cub200(tmp_path / "elsewhere", cache_dir=False)
    (cub / "images" / ITEMS[5][0]).unlink()
    with pytest.raises(ValueError, match="b2.png"):
        read_cub200(cub, size=4, cache_dir=False)
    with pytest.warns(UserWarning, match="skipped 1"):
        data = read_cub200(cub, size=4, on_bad_image="skip", cache_dir=False)
    assert len(data.test) == 2
