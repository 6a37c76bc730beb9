"""One shape for a search result, wherever it is seen: the Python API, ``search --json`` and HTTP.

A hit is a plain dict (JSON as it is) with these keys:

* ``rank``: 1 = nearest;
* ``id``: ``int``, the item's id (an index's id, or the database row of a run's encodings);
* ``hamming``: ``int``, the Hamming distance between the query's code and the item's;
* ``euclidean``: ``float`` distance between the float features when the search re-ranked, else None;
* ``label``: ``int`` class index, -1 when unknown;
* ``class_name``: ``str`` class name, None when unknown;
* ``source``: ``str``, where the image came from (a dataset reference such as ``digits/5``, a
  file, an upload).

The HTTP API adds ``url``, ``image_url`` and ``extra`` to the same keys.
"""

from __future__ import annotations

from typing import TypedDict


class Hit(TypedDict):
    """One search result (see the module docstring for each key)."""

    rank: int
    id: int
    hamming: int
    euclidean: float | None
    label: int
    class_name: str | None
    source: str


def make_hit(rank: int, item_id: int, hamming: int, euclidean: float | None, label: int,
             class_name: str | None, source: str) -> Hit:
    """A :class:`Hit` with every value as its plain Python type (numpy scalars converted; a NaN
    Euclidean distance, meaning "not re-ranked", becomes None)."""
    e = None if euclidean is None or euclidean != euclidean else float(euclidean)
    return Hit(rank=int(rank), id=int(item_id), hamming=int(hamming), euclidean=e, label=int(label),
               class_name=None if class_name is None else str(class_name), source=str(source))
