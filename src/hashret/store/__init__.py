"""Searchable collections of images: the :class:`Collection` contract and its engines.

An engine is one module here: :mod:`hashret.store.directory` (an index directory: segments,
SQLite metadata, a checksummed manifest) and :mod:`hashret.store.milvus` (a Milvus
collection, embedded or on a server). :func:`open_collection` opens either from a location.
"""

from hashret.store.base import Collection
from hashret.store.directory import IndexLockedError, IndexStore
from hashret.store.locate import DEFAULT_BACKEND, collection_exists, create_collection, open_collection
from hashret.store.manifest import IndexCorruptError
from hashret.store.metadata import ItemMeta
from hashret.store.milvus import MilvusCollection, is_milvus_location

__all__ = ["DEFAULT_BACKEND", "Collection", "IndexCorruptError", "IndexLockedError", "IndexStore", "ItemMeta",
           "MilvusCollection", "collection_exists", "create_collection", "is_milvus_location",
           "open_collection"]
