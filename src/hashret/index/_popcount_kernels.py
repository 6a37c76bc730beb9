"""Numba kernels of the ``"popcount"`` index: exact Hamming top-k and range search.

Layout: ``W = ceil(nbytes / 8)`` 64-bit words per code (zero padding changes no
distance); the database is a flat C-contiguous ``uint64[n * W]`` and the queries a flat
``uint64[q * W]``. ``W`` reaches the kernels as the length of the ``words`` tuple
(``(np.uint64(0),) * W``), so numba compiles one specialisation per code width with ``W``
a compile-time constant: the distance of one code is ``W`` popcounts, unrolled, and LLVM
vectorises the chunk scans (``VPOPCNTQ`` where the CPU has AVX-512 VPOPCNTDQ; numba
compiles for the host CPU and keys its on-disk cache by it).

Top-k, per block of :data:`QUERY_BLOCK` queries (exact, ties by database order, no
``n``-sized buffer, no comparison sort):

1. **Chunk minima.** The database is cut into chunks of :data:`CHUNK` consecutive codes;
   one pass computes each chunk's smallest distance to each query of the block (XOR,
   popcount and min, vectorised; the chunk stays in L1 while the block's queries use
   it) and, per query, a histogram of those minima.
2. **Bound.** A chunk whose minimum is ``<= T`` holds at least one code within ``T``, so
   the smallest ``T`` with ``k`` chunk minima ``<= T`` bounds the ``k``-th distance:
   ``t <= T`` (with fewer than ``k`` chunks, ``T`` = the code length). And the answer
   needs at most ``limit = k - #(chunk minima < T)`` codes at distance ``T``.
3. **Hits.** A second pass rescans only the chunks that can hold a result: those with
   minimum ``< T``, and those with minimum ``== T`` until ``limit`` codes at distance
   ``T`` have been seen. It counts the distances of the hits (exact below ``T``) and keeps
   the hits ``(index, distance)`` in database order.
4. **Placement.** ``t`` = the first distance where the cumulative count reaches ``k``
   (or ``T``), ``need = k - #(distance < t)``; the hits go to their rows by
   counting-sort offsets, the first ``need`` of those at distance ``t`` in database
   order. When the hits overflow their buffer (heavily tied data), a third pass
   recomputes the chunks with minimum ``<= t`` instead.

On random codes the bound is tight (``T`` is the answer's ``t`` or one more), so step 3
touches a few percent of the database (about 1,000 chunks of 16,000 for the top-1000 of
a million 64-bit codes) and step 1 is most of the time.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic, overload

#: Codes per chunk (512 bytes of 64-bit codes: eight cache lines; one 64-bit hit mask).
CHUNK = 64
#: Queries that share each pass over the database (``wanted`` is one ``uint16`` per chunk).
QUERY_BLOCK = 16
#: Hits kept per query before step 4 falls back to a third pass: ``4 k + MIN_HIT_BUFFER``.
MIN_HIT_BUFFER = 1 << 12
#: Larger than any Hamming distance (codes have at most 256 bits).
_FAR = 1 << 20


@intrinsic
def _popcount(typingctx, x):
    """Set bits of a ``uint64`` as an ``int64`` (LLVM ``ctpop``: ``POPCNT`` / ``VPOPCNTQ``)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])

    return types.int64(types.uint64), codegen


@intrinsic
def _trailing_zeros(typingctx, x):
    """Index of the lowest set bit of a non-zero ``uint64`` (LLVM ``cttz``: ``TZCNT``)."""
    if x != types.uint64:
        return None

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 1))

    return types.int64(types.uint64), codegen


def _load_query(queries, row, words):
    """Query ``row`` of flat ``uint64[q * W]`` as a ``W``-tuple of words (``W = len(words)``)."""
    raise NotImplementedError("numba only")


def _distance(db, i, query):
    """Hamming distance (``int64``) of code ``i`` of flat ``uint64[n * W]`` to a ``W``-tuple."""
    raise NotImplementedError("numba only")


@overload(_load_query, inline="always")
def _load_query_impl(queries, row, words):
    w = words.count
    if w == 1:
        return lambda queries, row, words: (queries[row],)
    if w == 2:
        return lambda queries, row, words: (queries[2 * row], queries[2 * row + 1])
    if w == 3:
        return lambda queries, row, words: (queries[3 * row], queries[3 * row + 1], queries[3 * row + 2])
    if w == 4:
        return lambda queries, row, words: (
            queries[4 * row], queries[4 * row + 1], queries[4 * row + 2], queries[4 * row + 3]
        )
    return None


@overload(_distance, inline="always")
def _distance_impl(db, i, query):
    w = query.count
    if w == 1:
        return lambda db, i, query: _popcount(db[i] ^ query[0])
    if w == 2:
        return lambda db, i, query: _popcount(db[2 * i] ^ query[0]) + _popcount(db[2 * i + 1] ^ query[1])
    if w == 3:
        return lambda db, i, query: (
            _popcount(db[3 * i] ^ query[0]) + _popcount(db[3 * i + 1] ^ query[1])
            + _popcount(db[3 * i + 2] ^ query[2])
        )
    if w == 4:
        return lambda db, i, query: (
            _popcount(db[4 * i] ^ query[0]) + _popcount(db[4 * i + 1] ^ query[1])
            + _popcount(db[4 * i + 2] ^ query[2]) + _popcount(db[4 * i + 3] ^ query[3])
        )
    return None


@njit(cache=True, fastmath=False, inline="always")
def _chunk_min(db, start, stop, query):
    """Smallest distance among codes ``start .. stop-1`` (at most :data:`CHUNK`; vectorised when full)."""
    m = _FAR
    if stop - start == CHUNK:
        for i in range(CHUNK):  # a constant trip count: unrolled into XOR, VPOPCNTQ, VPMINSQ
            m = min(m, _distance(db, start + i, query))
    else:
        for i in range(start, stop):
            m = min(m, _distance(db, i, query))
    return m


@njit(cache=True, fastmath=False, inline="always")
def _chunk_hits(db, start, stop, query, bound):
    """Bit ``i`` set where code ``start + i`` is within ``bound`` (codes ``start .. stop-1``)."""
    mask = np.uint64(0)
    if stop - start == CHUNK:
        for i in range(CHUNK):
            mask |= np.uint64(_distance(db, start + i, query) <= bound) << np.uint64(i)
    else:
        for i in range(stop - start):
            mask |= np.uint64(_distance(db, start + i, query) <= bound) << np.uint64(i)
    return mask


@njit(cache=True, fastmath=False, inline="always")
def _chunk_minima(db, n, queries, words, q0, nb, cmin, chist):
    """Step 1 for queries ``q0 .. q0+nb-1``: ``cmin[j, c]`` = chunk ``c``'s minimum distance
    (clamped to 255: that only makes step 3 rescan a chunk it could skip) and
    ``chist[j, m] += 1`` for the true minimum ``m``."""
    for c in range(cmin.shape[1]):
        start = c * CHUNK
        stop = min(start + CHUNK, n)
        for j in range(nb):  # the chunk stays in L1 for the block's queries
            query = _load_query(queries, q0 + j, words)
            m = _chunk_min(db, start, stop, query)
            cmin[j, c] = min(m, 255)
            chist[j, m] += 1


@njit(cache=True, fastmath=False, inline="always")
def _bound(chist, k, dim):
    """Step 2: ``(T, limit)``: the smallest ``T`` with ``k`` chunk minima ``<= T`` (``dim`` if
    there are fewer chunks), and ``limit = k - #(chunk minima < T)``, an upper bound on the
    number of codes at distance ``T`` the answer needs (each such chunk holds a code closer
    than ``T``)."""
    below = 0
    for v in range(dim + 1):
        if below + chist[v] >= k:
            return v, k - below
        below += chist[v]
    return dim, k - below + chist[dim]


@njit(cache=True, fastmath=False, inline="always")
def _wanted_chunks(cmin, bounds, nb, wanted):
    """``wanted[c]``: bit ``j`` set where chunk ``c`` may hold a hit of the block's query ``j``.

    Step 3 then tests each chunk once for the whole block instead of once per query.
    """
    wanted[:] = 0
    for j in range(nb):
        bound = min(bounds[j], 255)  # the minima are clamped to 255
        bit = np.uint16(1 << j)
        for c in range(wanted.shape[0]):
            if cmin[j, c] <= bound:
                wanted[c] |= bit


@njit(cache=True, fastmath=False, inline="always")
def _collect_hits(db, n, queries, words, q0, wanted, cmin, bounds, limits, hist, hit_idx, hit_dist, nhits,
                  at_bound):
    """Step 3 for the block's queries ``q0 + j``, one pass in database order.

    Query ``j`` rescans the chunks with minimum ``< T = bounds[j]``, and those with
    minimum ``== T`` while fewer than ``limits[j]`` codes at distance ``T`` have been seen
    (``at_bound[j]`` counts them). ``hist[j]`` gets the histogram of its hits (exact below
    ``T``), ``hit_idx[j] / hit_dist[j]`` the hits in database order (as many as fit),
    ``nhits[j]`` their number. (No row views inside the loop: each would cost an atomic
    reference count.)
    """
    cap = hit_idx.shape[1]
    for c in range(wanted.shape[0]):
        todo = np.uint64(wanted[c])
        if todo == 0:
            continue
        start = c * CHUNK
        stop = min(start + CHUNK, n)
        while todo:
            j = _trailing_zeros(todo)
            todo &= todo - np.uint64(1)
            bound = bounds[j]
            if cmin[j, c] < bound or at_bound[j] < limits[j]:
                query = _load_query(queries, q0 + j, words)
                mask = _chunk_hits(db, start, stop, query, bound)
                h = nhits[j]
                while mask:
                    i = start + _trailing_zeros(mask)
                    mask &= mask - np.uint64(1)
                    d = _distance(db, i, query)
                    hist[j, d] += 1
                    at_bound[j] += d == bound
                    if h < cap:
                        hit_idx[j, h] = i
                        hit_dist[j, h] = d
                    h += 1
                nhits[j] = h


@njit(cache=True, fastmath=False, inline="always")
def _place(db, n, query, k, bound, cmin, hist, hit_idx, hit_dist, nhits, out_dist, out_idx):
    """Step 4 for one query: fill ``out_dist[:k]`` / ``out_idx[:k]`` sorted by (distance, index).

    ``hist`` is exact below ``bound``; at ``bound`` it may be short (step 3 stops looking
    once enough codes are seen), so when the counts below ``bound`` do not reach ``k``,
    ``t = bound``.
    """
    t = bound
    below = 0  # codes at distance < t
    for v in range(bound + 1):
        if below + hist[v] >= k:
            t = v
            break
        below += hist[v]
    need = k - below  # codes at distance t to keep: the first ones in database order
    pos = 0
    for v in range(t):
        h = hist[v]
        hist[v] = pos  # the next free slot of distance v
        pos += h
    hist[t] = below
    placed = 0
    if nhits <= hit_idx.shape[0]:
        for x in range(nhits):
            d = hit_dist[x]
            if d < t or (d == t and need > 0):
                need -= d == t
                p = hist[d]
                hist[d] = p + 1
                out_dist[p] = d
                out_idx[p] = hit_idx[x]
                placed += 1
                if placed == k:
                    return
        return
    for c in range(cmin.shape[0]):  # too many hits to keep: recompute the chunks that can hold them
        if cmin[c] <= t:
            start = c * CHUNK
            mask = _chunk_hits(db, start, min(start + CHUNK, n), query, t)
            while mask:  # every hit is at distance <= t
                i = start + _trailing_zeros(mask)
                mask &= mask - np.uint64(1)
                d = _distance(db, i, query)
                if d < t or need > 0:
                    need -= d == t
                    p = hist[d]
                    hist[d] = p + 1
                    out_dist[p] = d
                    out_idx[p] = i
                    placed += 1
            if placed == k:
                return


@njit(parallel=True, cache=True, fastmath=False)
def top_k(db, n, queries, words, k, dim, out_dist, out_idx):
    """Exact top-k of every query, sorted by (distance, index).

    Blocks of :data:`QUERY_BLOCK` queries run in parallel (call it under
    ``numba.parallel_chunksize(1)`` to hand the blocks out one at a time: on a shared
    machine a static split waits for the slowest thread).

    Args:
        db: ``uint64[n * W]`` database words.
        n: number of codes.
        queries: ``uint64[q * W]`` query words.
        words: ``W``-tuple of ``uint64`` (only its length is used).
        k: ``1 <= k <= n``.
        dim: bits compared, ``64 * W`` or fewer (an upper bound on every distance).
        out_dist: ``int32[q, k]`` output distances.
        out_idx: ``int64[q, k]`` output indices.
    """
    nq = out_dist.shape[0]
    nchunks = (n + CHUNK - 1) // CHUNK
    cap = min(n, 4 * k + MIN_HIT_BUFFER)
    for blk in prange((nq + QUERY_BLOCK - 1) // QUERY_BLOCK):
        q0 = blk * QUERY_BLOCK
        nb = min(QUERY_BLOCK, nq - q0)
        cmin = np.empty((QUERY_BLOCK, nchunks), np.uint8)
        chist = np.zeros((QUERY_BLOCK, dim + 1), np.int64)
        _chunk_minima(db, n, queries, words, q0, nb, cmin, chist)
        bounds = np.zeros(QUERY_BLOCK, np.int64)
        limits = np.zeros(QUERY_BLOCK, np.int64)
        for j in range(nb):
            bounds[j], limits[j] = _bound(chist[j], k, dim)
        wanted = np.empty(nchunks, np.uint16)
        _wanted_chunks(cmin, bounds, nb, wanted)
        hist = np.zeros((QUERY_BLOCK, dim + 1), np.int64)
        hit_idx = np.empty((QUERY_BLOCK, cap), np.int64)
        hit_dist = np.empty((QUERY_BLOCK, cap), np.int16)
        nhits = np.zeros(QUERY_BLOCK, np.int64)
        at_bound = np.zeros(QUERY_BLOCK, np.int64)
        _collect_hits(db, n, queries, words, q0, wanted, cmin, bounds, limits, hist, hit_idx, hit_dist, nhits,
                      at_bound)
        for j in range(nb):
            query = _load_query(queries, q0 + j, words)
            _place(db, n, query, k, bounds[j], cmin[j], hist[j], hit_idx[j], hit_dist[j], nhits[j],
                   out_dist[q0 + j], out_idx[q0 + j])


@njit(parallel=True, cache=True, fastmath=False)
def range_count(db, n, queries, words, radii, hist):
    """Histogram of the distances ``<= radii[r]`` of every query: ``hist[r, d] += 1``.

    Args:
        radii: ``int64[q]``, each ``<= dim``.
        hist: ``int64[q, dim + 1]`` zeros, filled in place.
    """
    for r in prange(radii.shape[0]):
        query = _load_query(queries, r, words)
        radius = radii[r]
        h = hist[r]
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            if _chunk_min(db, start, stop, query) <= radius:
                mask = _chunk_hits(db, start, stop, query, radius)
                while mask:
                    h[_distance(db, start + _trailing_zeros(mask), query)] += 1
                    mask &= mask - np.uint64(1)


@njit(parallel=True, cache=True, fastmath=False)
def range_fill(db, n, queries, words, radii, hist, lims, out_dist, out_idx):
    """Place the hits of every query by counting sort: sorted by (distance, index).

    Args:
        hist: ``int64[q, dim + 1]`` from :func:`range_count` (overwritten).
        lims: ``int64[q + 1]``: query ``r``'s hits go to ``out[lims[r]:lims[r+1]]``.
        out_dist: ``int32[lims[-1]]``, out_idx: ``int64[lims[-1]]``.
    """
    for r in prange(radii.shape[0]):
        query = _load_query(queries, r, words)
        radius = radii[r]
        h = hist[r]
        pos = lims[r]
        for v in range(radius + 1):
            c = h[v]
            h[v] = pos
            pos += c
        for start in range(0, n, CHUNK):
            stop = min(start + CHUNK, n)
            if _chunk_min(db, start, stop, query) <= radius:
                mask = _chunk_hits(db, start, stop, query, radius)
                while mask:
                    i = start + _trailing_zeros(mask)
                    mask &= mask - np.uint64(1)
                    d = _distance(db, i, query)
                    p = h[d]
                    h[d] = p + 1
                    out_dist[p] = d
                    out_idx[p] = i
