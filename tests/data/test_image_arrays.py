import numpy as np
import pytest

from hashret.data import DatasetSplits, ImageArray


def make(n: int = 4, classes=("a", "b")) -> ImageArray:
    return ImageArray(
        images=np.arange(n * 2 * 3 * 3, dtype=np.uint8).reshape(n, 2, 3, 3),
        labels=np.arange(n, dtype=np.int64) % len(classes),
        ids=np.array([f"item/{i}" for i in range(n)]),
        classes=classes,
    )


def test_len_subset_and_classes_tuple():
    a = make(4, classes=["a", "b"])
    assert len(a) == 4 and a.classes == ("a", "b") and a.image_shape == (2, 3, 3)
    s = a.subset(np.array([3, 1]))
    assert s.ids.tolist() == ["item/3", "item/1"]
    np.testing.assert_array_equal(s.images, a.images[[3, 1]])
    assert s.labels.dtype == np.int64 and s.classes == a.classes
    m = a.subset(a.labels == 0)
    assert m.ids.tolist() == ["item/0", "item/2"]
    empty = a.subset(np.zeros(0, dtype=np.int64))
    assert len(empty) == 0 and empty.images.shape == (0, 2, 3, 3)
    assert len(a.subset(np.array([]))) == 0


def test_non_contiguous_images_are_made_contiguous():
    a = make(4)
    b = ImageArray(a.images[:, :, ::-1], a.labels, a.ids, a.classes)
    assert b.images.flags.c_contiguous


@pytest.mark.parametrize(
    "change, message",
    [
        ({"images": np.zeros((2, 2, 3, 3), dtype=np.float32)}, "uint8"),
        ({"images": np.zeros((2, 2, 3), dtype=np.uint8)}, "uint8"),
        ({"images": np.zeros((2, 2, 3, 2), dtype=np.uint8)}, "channels"),
        ({"labels": np.zeros(2, dtype=np.int32)}, "int64"),
        ({"labels": np.zeros(3, dtype=np.int64)}, "one per image"),
        ({"labels": np.array([0, 2], dtype=np.int64)}, r"\[0, 2\)"),
        ({"ids": ["x", "y"]}, "unicode"),
        ({"ids": np.array(["x"])}, "one per image"),
        ({"classes": ("a", "a")}, "distinct"),
        ({"classes": "ab"}, "sequence"),
    ],
)
def test_validation_errors(change, message):
    fields = {
        "images": np.zeros((2, 2, 3, 3), dtype=np.uint8),
        "labels": np.array([0, 1], dtype=np.int64),
        "ids": np.array(["x", "y"]),
        "classes": ("a", "b"),
    } | change
    with pytest.raises(ValueError, match=message):
        ImageArray(**fields)


def test_bad_subset_index():
    with pytest.raises(ValueError, match="mask"):
        make(4).subset(np.array([True, False]))
    with pytest.raises(ValueError, match="integer"):
        make(4).subset(np.array([0.5]))


def test_dataset_splits_checks_consistency():
    a = make(4)
    d = DatasetSplits("x", a, a.subset([0]), natural=False, source="here")
    assert d.classes == ("a", "b") and "n=4" in repr(d)
    with pytest.raises(ValueError, match="class list"):
        DatasetSplits("x", a, make(4, classes=("a", "c")), natural=False, source="")
    other = ImageArray(np.zeros((1, 5, 5, 3), np.uint8), np.zeros(1, np.int64), np.array(["z"]),
                       ("a", "b"))
    with pytest.raises(ValueError, match="resize"):
        DatasetSplits("x", a, other, natural=False, source="")
