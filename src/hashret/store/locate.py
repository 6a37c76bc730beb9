"""Open or create a collection from its location, whatever engine keeps it.

A location is an index directory's path, or a Milvus collection's
(``milvus://HOST:PORT/NAME``, ``http://HOST:PORT``, ``FILE.db`` or ``FILE.db:NAME``;
:func:`hashret.store.milvus.parse_location`). Every command that takes a collection
(``hashret index build|add|remove|info``, ``hashret search``, ``hashret serve``) goes through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hashret.store.base import Collection
from hashret.store.milvus import is_milvus_location

#: The Hamming backend of a new index directory unless told otherwise (an exact scan).
DEFAULT_BACKEND = "popcount"


def open_collection(location: str | Path, *, writable: bool = False, token: str | None = None,
                    collection: str | None = None, verify: bool | None = None,
                    backend: str | None = None, timeout: float = 30.0) -> Collection:
    """Open an existing collection.

    Args:
        location: an index directory, or a Milvus location.
        writable: open for ``add`` / ``remove`` (an index directory takes its writer lock).
        token: credentials for a Milvus server.
        collection: the Milvus collection's name where the location gives none.
        verify: (index directory) check every file's SHA-256 at open; ``None``: when small.
        backend: (index directory) search with another Hamming backend than the recorded one.
        timeout: (Milvus) seconds to wait for the connection.

    Raises:
        FileNotFoundError / LookupError: nothing there (the message says how to make one).
        ValueError: an option that does not apply to that engine, or what the engine refuses.
    """
    if is_milvus_location(location):
        _refuse("for an index directory", verify=verify, backend=backend)
        from hashret.store.milvus import MilvusCollection

        return MilvusCollection.open(location, collection=collection, token=token, writable=writable,
                                     timeout=timeout)
    _refuse("for Milvus", token=token, collection=collection)
    from hashret.store.directory import IndexStore

    return IndexStore.open(location, writable=writable, verify=verify, backend=backend)


def collection_exists(location: str | Path, *, token: str | None = None, collection: str | None = None,
                      timeout: float = 30.0) -> bool:
    """Whether a hashret collection (complete or being loaded) exists at ``location``."""
    if is_milvus_location(location):
        from hashret.index.milvus import connect
        from hashret.store.milvus import CONNECT_TIMEOUT, parse_location, read_record

        place = parse_location(location, collection)
        client = connect(place.uri, token, timeout=min(timeout, CONNECT_TIMEOUT))
        return client.has_collection(place.name) and read_record(client, place.name) is not None
    from hashret.store.manifest import MANIFEST_FILE

    return (Path(location) / MANIFEST_FILE).exists()


def create_collection(location: str | Path, *, bits: int, feature_dim: int,
                      model: dict[str, Any] | None = None, model_file: str | Path | None = None,
                      overwrite: bool = False, token: str | None = None, collection: str | None = None,
                      feature_storage: str | None = None, pca_dim: int | None = None,
                      backend: str | None = None, layout: str | None = None,
                      timeout: float = 30.0) -> Collection:
    """Create an empty collection, open for writing.

    Args:
        location: an index directory, or a Milvus location.
        bits, feature_dim: code length and the dimension of the features ``add`` takes.
        model, model_file: the model's record and checkpoint (an index directory keeps a copy of the
            file; Milvus records where it is and its SHA-256).
        overwrite: replace what is there (an index directory only replaces its own files).
        token, collection, layout: Milvus options (:meth:`hashret.store.milvus.MilvusCollection.create`).
        feature_storage, pca_dim, backend: index directory options
            (:meth:`hashret.store.directory.IndexStore.create`; default ``"float16"`` and
            :data:`DEFAULT_BACKEND`).

    Raises:
        FileExistsError: a collection is there and not ``overwrite``.
        ValueError: an option that does not apply to that engine, or a bad value.
    """
    if is_milvus_location(location):
        _refuse("for an index directory (Milvus keeps float32 features and searches them itself)",
                pca_dim=pca_dim, backend=None if backend == "milvus" else backend,
                feature_storage=None if feature_storage == "float32" else feature_storage)
        from hashret.store.milvus import MilvusCollection

        return MilvusCollection.create(location, bits=bits, feature_dim=feature_dim, collection=collection,
                                       token=token, layout=layout, model=model, model_file=model_file,
                                       overwrite=overwrite, timeout=timeout)
    _refuse("for Milvus", token=token, collection=collection, layout=layout)
    from hashret.store.directory import IndexStore

    return IndexStore.create(location, bits=bits, feature_dim=feature_dim,
                             feature_storage=feature_storage or "float16", pca_dim=pca_dim,
                             backend=backend or DEFAULT_BACKEND, model=model, model_file=model_file,
                             overwrite=overwrite)


def _refuse(what: str, **given: object) -> None:
    """A ValueError naming the options given (not None) that only apply elsewhere."""
    bad = [k.replace("_", "-") for k, v in given.items() if v is not None]
    if bad:
        these = "this option is" if len(bad) == 1 else "these options are"
        raise ValueError(f"--{', --'.join(bad)}: {these} {what}, not for this collection")
