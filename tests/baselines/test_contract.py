"""Contract tests over the baseline registry: every baseline honours the HashBaseline interface."""

from __future__ import annotations

import numpy as np
import pytest

from hashret.baselines import BASELINES, HashBaseline, create_baseline, list_baselines
from hashret.codes import n_bytes, unpack

NAMES = list_baselines()
#: options that keep the slow methods fast on the small test set
SMALL_OPTIONS = {"ksh": {"n_anchors": 40, "n_labelled": 200, "n_steps": 100}}


def make(name: str, bits: int, **options) -> HashBaseline:
    return create_baseline(name, bits, **(SMALL_OPTIONS.get(name, {}) | options))


def test_registry_lists_the_five_papers_methods():
    assert NAMES == ["lsh", "sh", "itq", "itq-cca", "ksh"]
    assert {n for n in NAMES if BASELINES[n].supervised} == {"itq-cca", "ksh"}
    assert all(BASELINES[n].paper for n in NAMES)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("bits", [12, 16])
def test_codes_are_packed_with_zero_padding(name, bits, blobs):
    x, y = blobs
    codes = make(name, bits).fit(x, y).encode(x[:50])
    assert codes.dtype == np.uint8 and codes.shape == (50, n_bytes(bits))
    if bits % 8:
        assert not (codes[:, -1] >> (bits % 8)).any(), "padding bits must be 0"


@pytest.mark.parametrize("name", NAMES)
def test_encode_is_the_sign_of_project(name, blobs):
    x, y = blobs
    b = make(name, 12).fit(x, y)
    proj = b.project(x)
    assert proj.shape == (len(x), 12) and proj.dtype == np.float64 and np.isfinite(proj).all()
    np.testing.assert_array_equal(unpack(b.encode(x), 12), (proj > 0).astype(np.uint8))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_codes(name, blobs):
    x, y = blobs
    first = make(name, 16, seed=3).fit(x, y).encode(x)
    again = make(name, 16, seed=3).fit(x, y).encode(x)
    np.testing.assert_array_equal(first, again)


@pytest.mark.parametrize("name", ["lsh", "itq", "ksh"])
def test_seed_changes_the_random_choices(name, blobs):
    x, y = blobs
    a = make(name, 16, seed=0).fit(x, y).encode(x)
    b = make(name, 16, seed=1).fit(x, y).encode(x)
    assert not np.array_equal(a, b)


@pytest.mark.parametrize("name", NAMES)
def test_bits_vary_over_the_fitting_set(name, blobs):
    x, y = blobs
    bits01 = unpack(make(name, 16).fit(x, y).encode(x), 16)
    assert 0 < bits01.mean() < 1
    assert len({row.tobytes() for row in bits01}) > 1


@pytest.mark.parametrize("name", NAMES)
def test_encode_before_fit_is_an_error(name, blobs):
    with pytest.raises(RuntimeError, match="call fit"):
        make(name, 16).encode(blobs[0])


@pytest.mark.parametrize("name", NAMES)
def test_fewer_samples_than_bits(name, blobs):
    x, y = blobs
    with pytest.raises(ValueError, match="at least 32 samples"):
        make(name, 32).fit(x[:20], y[:20])


@pytest.mark.parametrize("name", NAMES)
def test_constant_column_is_an_error_unless_dropped(name, blobs):
    x, y = blobs
    with_const = np.insert(x, 3, 7.0, axis=1)  # column 3 is constant
    with pytest.raises(ValueError, match=r"constant .*columns 3\).*drop_constant=True"):
        make(name, 16).fit(with_const, y)
    dropped = make(name, 16, drop_constant=True).fit(with_const, y)
    np.testing.assert_array_equal(dropped.kept_columns_, np.delete(np.arange(21), 3))
    # the dropped column is ignored at encode time, whatever it holds there
    changed = with_const.copy()
    changed[:, 3] = -1.0
    np.testing.assert_array_equal(dropped.encode(changed), make(name, 16).fit(x, y).encode(x))


@pytest.mark.parametrize("name", NAMES)
def test_nan_is_an_error(name, blobs):
    x, y = blobs
    bad = x.copy()
    bad[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values in 1 rows .*row 5"):
        make(name, 16).fit(bad, y)
    b = make(name, 16).fit(x, y)
    with pytest.raises(ValueError, match="NaN or infinite"):
        b.encode(bad)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_width_at_encode(name, blobs):
    x, y = blobs
    b = make(name, 16).fit(x, y)
    with pytest.raises(ValueError, match=r"shape \[n, 20\]"):
        b.encode(x[:, :19])


@pytest.mark.parametrize("name", [n for n in NAMES if BASELINES[n].supervised])
def test_supervised_needs_labels(name, blobs):
    x, y = blobs
    with pytest.raises(ValueError, match="is supervised: pass the class labels"):
        make(name, 16).fit(x)
    with pytest.raises(ValueError, match=r"shape \(240,\)"):
        make(name, 16).fit(x, y[:10])
    with pytest.raises(ValueError, match="integer class ids"):
        make(name, 16).fit(x, y.astype(float))
    with pytest.raises(ValueError, match="at least two are needed"):
        make(name, 16).fit(x, np.zeros(len(x), dtype=np.int64))


@pytest.mark.parametrize("name", [n for n in NAMES if not BASELINES[n].supervised])
def test_unsupervised_ignores_labels(name, blobs):
    x, y = blobs
    np.testing.assert_array_equal(make(name, 16).fit(x, y).encode(x), make(name, 16).fit(x).encode(x))


def test_labels_need_not_be_contiguous(blobs):
    x, y = blobs
    a = make("ksh", 16).fit(x, y).encode(x)
    b = make("ksh", 16).fit(x, y * 10 + 5).encode(x)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("name", ["itq", "itq-cca"])
def test_projection_methods_need_bits_columns(name, blobs):
    x, y = blobs
    with pytest.raises(ValueError, match="only 10 .*columns: use at most 10 bits"):
        make(name, 16).fit(x[:, :10], y)


def test_bad_construction():
    with pytest.raises(ValueError, match="unknown baseline 'pq'"):
        create_baseline("pq", 16)
    with pytest.raises(ValueError, match="takes no option n_anchors"):
        create_baseline("itq", 16, n_anchors=3)
    with pytest.raises(ValueError, match="between 8 and 256"):
        create_baseline("lsh", 4)
    with pytest.raises(ValueError, match="seed"):
        create_baseline("lsh", 16, seed=-1)
    with pytest.raises(ValueError, match="2-D"):
        create_baseline("lsh", 16).fit(np.zeros(40))
