import warnings

import numpy as np
import pytest

from hashret.data import read_image_folder


def read(root, **kw):
    return read_image_folder(root, cache_dir=False, **kw)


def pixels(d, ident):
    """The image with id ``ident``, from whichever split holds it."""
    for part in (d.train, d.test):
        if ident in part.ids:
            return part.images[part.ids.tolist().index(ident)]
    raise KeyError(ident)


def test_flat_folder_seeded_stratified_split(flat_tree):
    root, files = flat_tree
    d = read(root, seed=0, test_fraction=0.25)
    assert d.name == "folder" and d.natural is True
    assert d.classes == ("cat", "dog", "emu")
    assert len(d.train) + len(d.test) == 12
    assert sorted(d.test.labels.tolist()) == [0, 1, 2]  # round(0.25 * n) = 1 of each class
    for part in (d.train, d.test):
        assert part.images.dtype == np.uint8 and part.images.shape[1:] == (4, 5, 3)
        for image, label, ident in zip(part.images, part.labels, part.ids, strict=True):
            np.testing.assert_array_equal(image, files[ident])
            assert ident.split("/")[0] == d.classes[label]
    assert list(d.train.ids) == sorted(d.train.ids)
    again = read(root, seed=0, test_fraction=0.25)
    assert again.test.ids.tolist() == d.test.ids.tolist()
    other = [read(root, seed=s, test_fraction=0.25).test.ids.tolist() for s in range(1, 6)]
    assert any(ids != d.test.ids.tolist() for ids in other)


def test_train_test_folders(tmp_path, make_tree, build):
    make_tree(tmp_path, {
        "train/b/1.png": build.solid(1), "train/b/2.png": build.solid(2),
        "train/a/1.png": build.solid(3), "train/c/1.png": build.solid(4),
        "test/a/9.png": build.solid(5), "test/b/9.png": build.solid(6),  # no test/c: fine
    })
    d = read(tmp_path)
    assert d.classes == ("a", "b", "c")
    assert d.train.ids.tolist() == ["train/a/1.png", "train/b/1.png", "train/b/2.png",
                                    "train/c/1.png"]
    assert d.train.labels.tolist() == [0, 1, 1, 2]
    assert d.test.ids.tolist() == ["test/a/9.png", "test/b/9.png"]
    np.testing.assert_array_equal(d.test.images[1], build.solid(6))


def test_zip_with_top_level_folder_matches_folder(tmp_path, make_tree, make_zip, build):
    files = {f"{s}/{c}/{i}.png": build.solid(i + 3 * len(c)) for s in ("train", "test")
             for c in ("cat", "dog") for i in range(2)}
    make_tree(tmp_path / "tree", files)
    members = {f"pets/{k}": v for k, v in files.items()}
    members["__MACOSX/pets/train/cat/._0.png"] = b"apple double junk"
    members["pets/train/cat/.hidden.png"] = b"junk"
    members["pets/README.txt"] = b"not an image"
    zipped = make_zip(tmp_path / "pets.zip", members)
    a, b = read(tmp_path / "tree"), read(zipped)
    assert b.train.ids.tolist() == a.train.ids.tolist() == [
        "train/cat/0.png", "train/cat/1.png", "train/dog/0.png", "train/dog/1.png"]
    np.testing.assert_array_equal(a.train.images, b.train.images)
    np.testing.assert_array_equal(a.test.labels, b.test.labels)
    assert "pets.zip" in b.source


def test_flat_zip_without_top_folder(tmp_path, make_zip, build):
    members = {f"{c}/{i}.PNG": build.solid(i) for c in ("x", "y") for i in range(3)}
    d = read(make_zip(tmp_path / "flat.zip", members), test_fraction=0.34)
    assert d.classes == ("x", "y") and len(d.test) == 2


def test_all_grey_keeps_one_channel(tmp_path, make_tree, build):
    make_tree(tmp_path, {f"{c}/{i}.png": build.solid(i, channels=1)
                         for c in ("a", "b") for i in range(2)})
    d = read(tmp_path, test_fraction=0.5)
    assert d.train.images.shape[1:] == (4, 5, 1) and d.natural is False
    np.testing.assert_array_equal(pixels(d, "b/1.png"), build.solid(1, channels=1))


def test_mixed_grey_and_colour_is_rgb(tmp_path, make_tree, build):
    make_tree(tmp_path, {"a/0.png": build.solid(0, channels=1), "a/1.png": build.solid(1),
                         "b/0.png": build.solid(2), "b/1.png": build.solid(3)})
    d = read(tmp_path, test_fraction=0.5)
    assert d.train.images.shape[1:] == (4, 5, 3)
    grey = pixels(d, "a/0.png")
    for c in range(3):
        np.testing.assert_array_equal(grey[..., c], build.solid(0, channels=1)[..., 0])


def test_bad_image_error_and_skip(tmp_path, make_tree, build):
    make_tree(tmp_path, {f"{c}/{i}.png": build.solid(i) for c in ("a", "b") for i in range(3)})
    (tmp_path / "a" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        read(tmp_path)
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\).*broken.jpg"):
        d = read(tmp_path, on_bad_image="skip", test_fraction=0.34)
    assert len(d.train) + len(d.test) == 6
    assert "a/broken.jpg" not in set(d.train.ids) | set(d.test.ids)


def test_mixed_sizes_need_size(tmp_path, make_tree, build):
    make_tree(tmp_path, {"a/0.png": build.solid(0), "a/1.png": build.solid(1, h=8, w=8),
                         "b/0.png": build.solid(2), "b/1.png": build.solid(3)})
    with pytest.raises(ValueError, match=r"differ in size.*--image-size"):
        read(tmp_path)
    d = read(tmp_path, size=(6, 7), test_fraction=0.5)
    assert d.train.images.shape[1:] == (6, 7, 3)
    assert read(tmp_path, size=8, test_fraction=0.5).test.images.shape[1:] == (8, 8, 3)


def test_layout_errors(tmp_path, make_tree, build):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no image files.*ROOT/<class>/<image>"):
        read(tmp_path / "empty")
    make_tree(tmp_path / "loose", {"0.png": build.solid(0), "1.png": build.solid(1)})
    with pytest.raises(ValueError, match=r"no images in class folders.*ROOT/<class>/<image>"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            read(tmp_path / "loose")
    make_tree(tmp_path / "half", {"train/a/0.png": build.solid(0)})
    with pytest.raises(ValueError, match=r"none in test/<class>/"):
        read(tmp_path / "half")
    make_tree(tmp_path / "single", {"a/0.png": build.solid(0), "b/0.png": build.solid(1)})
    with pytest.raises(ValueError, match="empty test set"):
        read(tmp_path / "single")
    (tmp_path / "file.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a .zip"):
        read(tmp_path / "file.txt")


def test_bad_options(flat_tree):
    root, _ = flat_tree
    with pytest.raises(ValueError, match="--on-bad-image"):
        read(root, on_bad_image="ignore")
    with pytest.raises(ValueError, match="test_fraction"):
        read(root, test_fraction=1.0)
    with pytest.raises(ValueError, match="size"):
        read(root, size=(3, 4, 5))


def test_misplaced_images_warn(tmp_path, make_tree, build):
    make_tree(tmp_path, {"a/0.png": build.solid(0), "a/1.png": build.solid(1),
                         "b/0.png": build.solid(2), "b/1.png": build.solid(3),
                         "stray.png": build.solid(4)})
    with pytest.warns(UserWarning, match=r"ignored 1 image file.*stray.png"):
        d = read(tmp_path, test_fraction=0.5)
    assert len(d.train) + len(d.test) == 4
