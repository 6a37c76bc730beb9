"""Evaluation protocols (which split queries which, with which metrics) and their runner."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np

from hashret.codes import check_bits, check_codes, hamming_distances
from hashret.eval.metrics import (
    average_precision_at_k,
    ball_precisions,
    check_radius,
    hits_at_k,
)
from hashret.eval.ranking import (
    check_labels,
    query_chunks,
    ranked_relevance,
    stable_argsort_distances,
)


@dataclass(frozen=True)
class Protocol:
    """How a dataset is evaluated.

    Attributes:
        name: registry key, e.g. ``"mnist"``.
        queries: split whose images are the queries (``"test"``).
        database: split whose images form the retrieval database (``"train"``).
        k: list length of mAP@k (capped at the database size when evaluated).
        radius: Hamming radius of the precision-within-radius metric.
        description: one line for reports.
    """

    name: str
    queries: str = "test"
    database: str = "train"
    k: int = 1000
    radius: int = 2
    description: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"Protocol.k must be an integer >= 1, got {self.k!r}")
        check_radius(self.radius)


_TIES = "Hamming ties broken by database order"

PROTOCOLS: dict[str, Protocol] = {
    "mnist": Protocol(
        name="mnist",
        description=(
            "DLBHC protocol: the 10,000 MNIST test images query the 60,000 training "
            f"images; mAP@1000, {_TIES}"
        ),
    ),
    "cifar10": Protocol(
        name="cifar10",
        description=(
            "DLBHC protocol: the 10,000 CIFAR-10 test images query the 50,000 training "
            f"images; mAP@1000, {_TIES}"
        ),
    ),
    "digits": Protocol(
        name="digits",
        description=(
            "sklearn digits: test split queries the training split; mAP@1000 capped at "
            f"the database size, {_TIES}"
        ),
    ),
    "cub200": Protocol(
        name="cub200",
        description=(
            "seed (DNNH) protocol: the 5,794 CUB-200-2011 test images query the 5,994 "
            f"training images; full-ranking mAP and mAP@1000, {_TIES}"
        ),
    ),
    "dogs": Protocol(
        name="dogs",
        description=(
            "seed (DNNH) protocol: the 8,580 Stanford Dogs test images query the 12,000 "
            f"training images; full-ranking mAP and mAP@1000, {_TIES}"
        ),
    ),
    "folder": Protocol(
        name="folder",
        description=(
            "image folder: test split queries the training split; mAP@1000 capped at "
            f"the database size, {_TIES}"
        ),
    ),
}


def get_protocol(name: str) -> Protocol:
    """Look up a protocol by name.

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    try:
        return PROTOCOLS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown evaluation protocol {name!r}; choose one of {sorted(PROTOCOLS)}"
        ) from None


def evaluate_codes(
    query_codes: np.ndarray,
    query_labels: np.ndarray,
    db_codes: np.ndarray,
    db_labels: np.ndarray,
    *,
    bits: int,
    protocol: Protocol,
    pk_max: int = 1000,
    chunk_size: int | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Evaluate packed codes under a protocol: mAP@k, full mAP, P@k curve, P@radius.

    Every query ranks the whole database by Hamming distance, ties broken by database
    order (smaller index first). Queries are processed in chunks, so memory stays
    bounded (no ``[q, n]`` index matrix is ever held); chunks run on ``workers``
    threads (numpy releases the GIL); the result does not depend, to the last bit, on
    ``chunk_size`` or ``workers``.

    Args:
        query_codes: ``uint8[q, ceil(bits/8)]`` packed query codes.
        query_labels: ``[q]`` class ids or ``[q, L]`` 0/1 multi-label matrix.
        db_codes: ``uint8[n, ceil(bits/8)]`` packed database codes.
        db_labels: ``[n]`` class ids or ``[n, L]`` 0/1 multi-label matrix.
        bits: code length.
        protocol: e.g. ``get_protocol("mnist")``.
        pk_max: the P@k curve covers ``k = 1 .. min(pk_max, n)``.
        chunk_size: queries processed at once (``None``: automatic, about 32 MiB per
            intermediate array).
        workers: threads (``None``: ``min(4, os.cpu_count())``); memory grows with it.

    Returns:
        A JSON-ready dict with keys

        * ``"map@{k}"`` (``k = min(protocol.k, n)``, e.g. ``"map@1000"``): DLBHC mAP@k,
          each AP normalized by the relevant items found in the top ``k``, queries with
          none scoring 0 (:func:`~hashret.eval.metrics.average_precision_at_k`);
        * ``"map"``: full-ranking mAP (standard definition);
        * ``"precision@k"``: list of mean P@k for ``k = 1 .. min(pk_max, n)``;
        * ``"precision@radius{r}"`` (``r = protocol.radius``): mean precision of the
          Hamming ball, empty balls scoring 0;
        * ``"n_queries"``, ``"n_database"``, ``"bits"``, ``"protocol"`` (the protocol's
          fields as a dict: name, description, splits, k, radius).
    """
    bits = check_bits(bits)
    qc = check_codes(query_codes, bits)
    dc = check_codes(db_codes, bits)
    n_q, n = qc.shape[0], dc.shape[0]
    if n_q == 0 or n == 0:
        raise ValueError(
            f"need at least one query and one database item, got {n_q} queries and {n} items"
        )
    if isinstance(pk_max, bool) or not isinstance(pk_max, (int, np.integer)) or pk_max < 1:
        raise ValueError(f"pk_max must be an integer >= 1, got {pk_max!r}")
    if workers is None:
        workers = min(4, os.cpu_count() or 1)
    elif isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}")
    ql, dl = check_labels(query_labels, db_labels, n_q, n)
    k = min(protocol.k, n)
    ks = np.arange(1, min(int(pk_max), n) + 1, dtype=np.int64)

    def run(sl: slice) -> _ChunkResult:
        return _evaluate_chunk(qc[sl], ql[sl], dc, dl, k=k, ks=ks, radius=protocol.radius)

    chunks = list(query_chunks(n_q, n, dc.shape[1], chunk_size))
    if workers == 1 or len(chunks) == 1:
        parts = [run(sl) for sl in chunks]
    else:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(run, chunks))  # results in chunk order
    # per-query values are summed once, in query order: chunking changes no bit
    ap_k = np.concatenate([p.ap_k for p in parts])
    ap = np.concatenate([p.ap for p in parts])
    in_radius = np.concatenate([p.radius for p in parts])
    hits = np.sum([p.hits for p in parts], axis=0)  # exact integers

    return {
        "protocol": asdict(protocol),
        "bits": bits,
        "n_queries": int(n_q),
        "n_database": int(n),
        f"map@{k}": float(ap_k.mean()),
        "map": float(ap.mean()),
        "precision@k": (hits / (n_q * ks.astype(np.float64))).tolist(),
        f"precision@radius{protocol.radius}": float(in_radius.mean()),
    }


class _ChunkResult(NamedTuple):
    ap_k: np.ndarray  # float64[c] AP@k per query
    ap: np.ndarray  # float64[c] full-ranking AP per query
    hits: np.ndarray  # int64[len(ks)] relevant items in the top k, summed over queries
    radius: np.ndarray  # float64[c] precision within the radius per query


def _evaluate_chunk(
    qc: np.ndarray,
    ql: np.ndarray,
    dc: np.ndarray,
    dl: np.ndarray,
    *,
    k: int,
    ks: np.ndarray,
    radius: int,
) -> _ChunkResult:
    d = hamming_distances(qc, dc)  # [c, n] int32
    order = stable_argsort_distances(d)  # [c, n] int64, ties by database order
    rel = ranked_relevance(ql, dl, order)  # [c, n] bool, ranked
    # the ball d <= radius is exactly the first `size` ranked items of each row
    size = (d <= radius).sum(axis=1)  # [c]
    within = np.arange(d.shape[1])[None, :] < size[:, None]  # [c, n], aligned with rel
    return _ChunkResult(
        ap_k=average_precision_at_k(rel[:, :k]),
        ap=average_precision_at_k(rel),
        hits=hits_at_k(rel, ks),
        radius=ball_precisions(rel, within),
    )
