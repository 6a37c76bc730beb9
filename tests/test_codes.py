import numpy as np
import pytest

from hashret.codes import (
    binarize,
    check_bits,
    encode,
    hamming_distances,
    hamming_distances_reference,
    n_bytes,
    pack,
    unpack,
)


def test_lsb_first_packing_matches_faiss_convention():
    # bit j -> byte j // 8, position j % 8: bits 0 and 9 set -> bytes [0b00000001, 0b00000010]
    bits = np.zeros((1, 12), dtype=np.uint8)
    bits[0, 0] = bits[0, 9] = 1
    assert pack(bits).tolist() == [[1, 2]]


def test_binarize_is_strictly_above_threshold():
    a = np.array([[0.5, 0.50001, 0.0, 1.0]])
    assert binarize(a).tolist() == [[0, 1, 0, 1]]
    assert binarize(np.array([[0.0, -1e-9, 1e-9]]), threshold=0.0).tolist() == [[0, 0, 1]]


@pytest.mark.parametrize("bits", [8, 12, 16, 32, 48, 64, 100, 128, 256])
def test_pack_unpack_round_trip_and_zero_padding(bits):
    rng = np.random.default_rng(bits)
    b = rng.integers(0, 2, size=(17, bits), dtype=np.uint8)
    packed = pack(b)
    assert packed.shape == (17, n_bytes(bits)) and packed.dtype == np.uint8
    np.testing.assert_array_equal(unpack(packed, bits), b)
    if bits % 8:  # padding bits of the last byte are zero
        assert (packed[:, -1] >> (bits % 8)).max() == 0


def test_hamming_matches_loop_reference():
    rng = np.random.default_rng(0)
    q = encode(rng.random((5, 48)))
    d = encode(rng.random((23, 48)))
    np.testing.assert_array_equal(hamming_distances(q, d), hamming_distances_reference(q, d))


def test_hamming_hand_values():
    a = pack(np.array([[1, 1, 1, 1, 0, 0, 0, 0]], dtype=np.uint8))
    b = pack(np.array([[1, 0, 1, 0, 1, 0, 1, 0], [1, 1, 1, 1, 0, 0, 0, 0]], dtype=np.uint8))
    assert hamming_distances(a, b).tolist() == [[4, 0]]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="between 8 and 256"):
        check_bits(4)
    with pytest.raises(ValueError, match="same code length"):
        hamming_distances(np.zeros((1, 2), np.uint8), np.zeros((1, 3), np.uint8))
    with pytest.raises(ValueError, match="0/1"):
        pack(np.array([[2, 0]]))
    with pytest.raises(ValueError, match=r"\[n, 2\]"):
        unpack(np.zeros((1, 3), np.uint8), 12)


@pytest.mark.parametrize("bits", [8, 12, 48, 64, 72, 128, 256])
def test_hamming_word_path_matches_reference_for_every_width(bits):
    rng = np.random.default_rng(bits)
    q = encode(rng.random((4, bits)))
    d = encode(rng.random((9, bits)))
    np.testing.assert_array_equal(hamming_distances(q, d), hamming_distances_reference(q, d))
