"""Hamming index backends behind one interface: a numpy reference, numba and faiss backends."""

from hashret.index.base import MISSING_DISTANCE, MISSING_INDEX, HammingIndex
from hashret.index.faiss_flat import FaissFlatIndex
from hashret.index.faiss_hash import FaissHashIndex
from hashret.index.faiss_ivf import FaissIVFIndex
from hashret.index.faiss_multihash import FaissMultiHashIndex
from hashret.index.flat import FlatIndex
from hashret.index.popcount import PopcountIndex
from hashret.index.recall import recall_at_k
from hashret.index.registry import INDEXES, create_index, list_indexes, register_index

__all__ = [
    "INDEXES", "MISSING_DISTANCE", "MISSING_INDEX", "FaissFlatIndex", "FaissHashIndex",
    "FaissIVFIndex", "FaissMultiHashIndex", "FlatIndex", "HammingIndex", "PopcountIndex", "create_index",
    "list_indexes", "recall_at_k", "register_index",
]
