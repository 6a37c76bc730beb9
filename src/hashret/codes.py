"""The one bit convention of hashret: binarize, pack, unpack, Hamming distance.

Convention (the same as faiss ``utils.cpp: real_to_binary``):

* bit ``j`` of a code is 1 where activation ``j`` is strictly above the threshold
  (0.5 for DLBHC's sigmoid latent layer, 0.0 for sign-quantized tanh codes);
* bits are packed least-significant-bit first into ``uint8[n, ceil(bits / 8)]``:
  bit ``j`` lives in byte ``j // 8`` at position ``j % 8``;
* the padding bits of the last byte (when ``bits % 8 != 0``) are always 0, so
  they never contribute to a Hamming distance.

Every other module goes through these functions; nothing else packs bits.
"""

from __future__ import annotations

import numpy as np

MIN_BITS = 8
MAX_BITS = 256


def n_bytes(bits: int) -> int:
    """Bytes per packed code: ``ceil(bits / 8)``."""
    return (bits + 7) // 8


def check_bits(bits: int) -> int:
    """Validate a code length and return it.

    Raises:
        ValueError: ``bits`` is not an integer in ``[8, 256]``.
    """
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ValueError(f"bits must be an integer, got {bits!r}")
    if not MIN_BITS <= int(bits) <= MAX_BITS:
        raise ValueError(
            f"bits={bits} is out of range: choose a code length between {MIN_BITS} and "
            f"{MAX_BITS} (12, 16, 32, 48, 64 and 128 are common)"
        )
    return int(bits)


def binarize(activations: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Threshold real activations into bits.

    Args:
        activations: float array ``[n, bits]``.
        threshold: a bit is 1 where ``activation > threshold`` (strictly).

    Returns:
        ``uint8[n, bits]`` of 0/1.
    """
    a = np.asarray(activations)
    if a.ndim != 2:
        raise ValueError(f"activations must be 2-D [n, bits], got shape {a.shape}")
    return (a > threshold).astype(np.uint8)


def pack(bits01: np.ndarray) -> np.ndarray:
    """Pack 0/1 bits ``uint8[n, bits]`` into ``uint8[n, ceil(bits/8)]``, LSB first."""
    b = np.asarray(bits01)
    if b.ndim != 2:
        raise ValueError(f"bits must be 2-D [n, bits], got shape {b.shape}")
    if b.size and (b.max() > 1 or b.min() < 0):
        raise ValueError("pack expects 0/1 values; call binarize() on activations first")
    return np.packbits(b.astype(np.uint8), axis=1, bitorder="little")


def unpack(codes: np.ndarray, bits: int) -> np.ndarray:
    """Unpack ``uint8[n, ceil(bits/8)]`` codes into 0/1 ``uint8[n, bits]``."""
    c = check_codes(codes, bits)
    return np.unpackbits(c, axis=1, count=bits, bitorder="little")


def encode(activations: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """``pack(binarize(activations, threshold))``: float ``[n, bits]`` -> ``uint8[n, nbytes]``."""
    return pack(binarize(activations, threshold))


def check_codes(codes: np.ndarray, bits: int, what: str = "codes") -> np.ndarray:
    """Check that ``codes`` are packed codes of ``bits`` bits; return them C-contiguous.

    The whole convention is checked: ``uint8``, shape ``[n, ceil(bits/8)]`` and zero padding
    bits (the top ``8 * nbytes - bits`` bits of the last byte).

    Raises:
        ValueError: wrong dtype, rank or width, or padding bits set; the message names
            ``what``, the expected shape and the fix.
    """
    c = np.asarray(codes)
    nbytes = n_bytes(bits)
    expected = f"uint8[n, {nbytes}] (packed {bits}-bit codes)"
    if c.dtype != np.uint8:
        raise ValueError(f"{what} must be {expected}, got dtype {c.dtype}: pack 0/1 bits with "
                         "hashret.codes.pack() or encode activations with hashret.codes.encode()")
    if c.ndim != 2 or c.shape[1] != nbytes:
        hint = " (one code: pass codes[None])" if c.ndim == 1 else ""
        raise ValueError(f"{what} must be {expected}, got shape {c.shape}{hint}: encode the database "
                         f"and the queries with the same code length (bits={bits})")
    pad = 8 * nbytes - bits
    if pad and len(c) and (c[:, -1] >> (8 - pad)).any():
        raise ValueError(f"{what} have non-zero padding bits: {bits}-bit codes leave the top {pad} bits "
                         "of the last byte at 0; pack codes with hashret.codes.pack()")
    return np.ascontiguousarray(c)


def hamming_distances(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """All pairwise Hamming distances between packed codes.

    Args:
        queries: ``uint8[q, nbytes]`` packed codes.
        database: ``uint8[n, nbytes]`` packed codes of the same width.

    Returns:
        ``int32[q, n]`` distances. Memory is ``q * n * 8 * ceil(nbytes / 8)`` bytes for
        the XOR intermediate: callers chunk the queries for large inputs.
    """
    q = np.asarray(queries, dtype=np.uint8)
    d = np.asarray(database, dtype=np.uint8)
    if q.ndim != 2 or d.ndim != 2 or q.shape[1] != d.shape[1]:
        raise ValueError(
            f"query codes {q.shape} and database codes {d.shape} must both be "
            "[n, nbytes] with the same nbytes (same code length)"
        )
    qw, dw = as_words(q), as_words(d)
    x = np.bitwise_xor(qw[:, None, :], dw[None, :, :])  # [q, n, words]
    counts = np.bitwise_count(x)  # uint8 [q, n, words]
    if counts.shape[2] == 1:
        return counts[:, :, 0].astype(np.int32)
    return counts.sum(axis=2, dtype=np.int32)


def as_words(codes: np.ndarray) -> np.ndarray:
    """View packed codes ``uint8[n, nbytes]`` as ``uint64[n, ceil(nbytes/8)]``.

    The codes are zero-padded to a multiple of 8 bytes (zeros add nothing to a Hamming
    distance), so one popcount covers 64 bits.
    """
    c = np.asarray(codes, dtype=np.uint8)
    n, nb = c.shape
    words = (nb + 7) // 8
    if nb != words * 8:
        padded = np.zeros((n, words * 8), dtype=np.uint8)
        padded[:, :nb] = c
        c = padded
    return np.ascontiguousarray(c).view(np.uint64)


def hamming_distances_reference(queries: np.ndarray, database: np.ndarray) -> np.ndarray:
    """Loop reference for :func:`hamming_distances` (tests only): ``int32[q, n]``."""
    out = np.zeros((len(queries), len(database)), dtype=np.int32)
    for i, a in enumerate(queries):
        for j, b in enumerate(database):
            out[i, j] = sum(bin(int(x) ^ int(y)).count("1") for x, y in zip(a, b, strict=True))
    return out
