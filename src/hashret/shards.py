"""Sharded encoding: ``n`` workers encode a collection in parallel; the shards are merged or
bulk-loaded into an index afterwards.

Shard ``i`` of ``n`` is the contiguous block ``[i * N // n, (i + 1) * N // n)`` of a
collection of ``N`` items, so shard ``i`` starts where shard ``i - 1`` stops and the
shards in order are the collection in database order: item ``j`` of the collection gets
id ``j`` whichever worker encoded it, and merged shards equal an unsharded encoding.

Layout: ``ROOT/shard-00001-of-00004/`` is an :class:`hashret.encodings.EncodedSet`
(``codes.npy`` ... ``meta.json``, written last: a folder without ``meta.json`` is an
unfinished shard) whose ``meta["shard"]`` is ``{"index", "count", "start", "stop",
"total"}``. ``hashret encode RUN --shard i/n`` writes ``RUN/encodings/<split>.shards/``
for the database and the queries; workers are independent (machines sharing a file
system, or the tasks of a batch scheduler's array job) and a finished shard is skipped
when its worker runs again.

Consumers check the set first (:func:`open_shards`): every shard ``0..n-1`` present once
and finished, all made by one model from one collection, ranges that tile ``[0, N)``;
then

* :func:`merge_shards` writes one ``EncodedSet`` (``meta.json`` last);
* :func:`load_shards_store` bulk-loads an index directory, built in ``OUT.partial`` and
  renamed to ``OUT`` when complete (resumable: the manifest records the rows done);
* :func:`load_shards_milvus` bulk-loads a Milvus collection marked ``"loading"`` until
  the last row is in (resumable: a shard whose id range is complete is skipped, a
  partly loaded one is deleted and loaded again).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashret.encodings import ARRAYS, EncodedSet, load_encoded, save_encoded
from hashret.io import read_json
from hashret.store.metadata import ItemMeta

_DIR = re.compile(r"^shard-(\d+)-of-(\d+)$")
#: Meta fields every shard of a set must agree on.
CONSISTENT = ("bits", "feature_dim", "model_sha256", "source", "split", "threshold", "tta_flip", "precision",
              "tta_translate")
#: Rows per commit / insert request of a bulk load.
LOAD_BATCH = 50_000


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based): ``Shard.parse("1/4")``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (isinstance(self.count, int) and self.count >= 1 and isinstance(self.index, int)
                and 0 <= self.index < self.count):
            raise ValueError(f"shard {self.index}/{self.count} is out of range: give i/n with 0 <= i < n, "
                             "e.g. --shard 0/4 .. --shard 3/4")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``"i/n"`` -> ``Shard(i, n)``.

        Raises:
            ValueError: not of the form ``i/n`` with ``0 <= i < n``.
        """
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
        if not m:
            raise ValueError(f"--shard must be i/n (shard i of n, counted from 0), e.g. 0/4; got {text!r}")
        return cls(int(m.group(1)), int(m.group(2)))

    def range(self, total: int) -> tuple[int, int]:
        """``(start, stop)``: the rows of this shard in a collection of ``total`` items."""
        return self.index * total // self.count, (self.index + 1) * total // self.count

    @property
    def dirname(self) -> str:
        return f"shard-{self.index:05d}-of-{self.count:05d}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shards_dir(run_dir: str | Path, name: str) -> Path:
    """Where ``hashret encode RUN --shard`` writes the shards of ``name`` (database / queries)."""
    return Path(run_dir) / "encodings" / f"{name}.shards"


def write_shard(root: str | Path, shard: Shard, total: int, enc: EncodedSet) -> Path:
    """Save ``enc`` (the rows ``shard.range(total)`` of a collection) as a finished shard."""
    start, stop = shard.range(total)
    if len(enc) != stop - start:
        raise ValueError(f"shard {shard} of {total} items has {stop - start} rows, got {len(enc)}")
    meta = enc.meta | {"shard": {"index": shard.index, "count": shard.count, "start": start, "stop": stop,
                                 "total": int(total)}}
    return save_encoded(Path(root) / shard.dirname, EncodedSet(enc.codes, enc.features, enc.labels, enc.ids,
                                                               meta))


def is_finished(folder: Path, model_sha256: str | None = None) -> bool:
    """``folder`` holds a finished shard (of that model, when given)."""
    if not (folder / "meta.json").exists():
        return False
    meta = read_json(folder / "meta.json")
    return model_sha256 is None or meta.get("model_sha256") == model_sha256


@dataclass(frozen=True)
class EncodedShard:
    """What :func:`encode_shard` did for one split: ``folder`` holds the finished shard;
    ``skipped``: it was finished before (by the same model) and left as it was."""

    folder: Path
    skipped: bool


def encode_shard(run: Any, shard: Shard, *, data: Any = None, data_dir: str | None = None,
                 cache_dir: str | Path | None = None, progress: bool = False,
                 root: str | Path | None = None) -> dict[str, EncodedShard]:
    """Encode shard ``shard`` of the run's database (training set) and queries (test set).

    Writes ``ROOT/<name>.shards/shard-i-of-n/`` for ``name`` in database, queries
    (``ROOT`` = ``RUN/encodings``). A shard already finished by the same model is left
    as it is (``skipped``), so a worker that failed can simply run again.

    Returns:
        ``{"database": EncodedShard, "queries": EncodedShard}``.
    """
    from hashret.run import SPLITS, encode_collection, load_run_dataset

    out = {}
    for name, split in SPLITS.items():
        base = Path(root) / f"{name}.shards" if root is not None else shards_dir(run.run_dir, name)
        folder = base / shard.dirname
        if is_finished(folder, run.model_sha256):
            out[name] = EncodedShard(folder, skipped=True)
            continue
        if data is None:
            data = load_run_dataset(run, data_dir, cache_dir)
        images = getattr(data, split)
        start, stop = shard.range(len(images))
        enc = encode_collection(run, images.subset(np.arange(start, stop)), split=split, source=data.source,
                                progress=progress)
        enc = EncodedSet(enc.codes, enc.features, enc.labels, enc.ids,
                         enc.meta | {"run_dir": str(Path(run.run_dir).resolve())})
        out[name] = EncodedShard(write_shard(base, shard, len(images), enc), skipped=False)
    return out


@dataclass(frozen=True)
class ShardSet:
    """A checked, complete set of shards: ``folders[i]`` holds shard ``i`` of ``count``.

    Attributes:
        root: the folder holding the shard folders.
        folders: one folder per shard, in shard order.
        metas: their ``meta.json`` contents.
        total: items in the whole collection.
    """

    root: Path
    folders: tuple[Path, ...]
    metas: tuple[dict[str, Any], ...]
    total: int

    @property
    def count(self) -> int:
        return len(self.folders)

    @property
    def meta(self) -> dict[str, Any]:
        """The first shard's meta without its shard record (what all shards share)."""
        return {k: v for k, v in self.metas[0].items() if k not in ("shard", "n")}

    def range(self, i: int) -> tuple[int, int]:
        s = self.metas[i]["shard"]
        return int(s["start"]), int(s["stop"])

    def load(self, i: int) -> EncodedSet:
        """Shard ``i`` (memory-mapped)."""
        return load_encoded(self.folders[i], mmap=True)

    def signature(self) -> dict[str, Any]:
        """What identifies this set in a bulk load's progress record."""
        m = self.meta
        return {"shards": self.count, "total": self.total, "model_sha256": m.get("model_sha256"),
                "source": m.get("source"), "split": m.get("split")}


def open_shards(root: str | Path) -> ShardSet:
    """Check the shards in ``root`` and return them in order.

    Raises:
        FileNotFoundError: ``root`` holds no shard folder.
        ValueError: a shard missing or unfinished, a shard present twice, shards of
            different splits (another ``n``), of another model or collection, or ranges
            that do not tile the collection. The message names the shards and the fix.
    """
    root = Path(root)
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and _DIR.match(p.name)) if root.is_dir() else []
    if not dirs:
        raise FileNotFoundError(f"no shard folders (shard-i-of-n) in {root}: encode them with "
                                "`hashret encode RUN_DIR --shard i/n` (one run per shard)")
    unfinished = [p.name for p in dirs if not (p / "meta.json").exists()]
    finished = [p for p in dirs if (p / "meta.json").exists()]
    metas = [read_json(p / "meta.json") for p in finished]
    for p, m in zip(finished, metas, strict=True):
        if not isinstance(m.get("shard"), dict):
            raise ValueError(f"{p} is an encoding but not a shard (no shard record in meta.json): "
                             "remove it from the shard folder")
    counts = {int(m["shard"]["count"]) for m in metas} | {int(_DIR.match(n).group(2)) for n in unfinished}
    if len(counts) > 1:
        by = {c: [p.name for p, m in zip(finished, metas, strict=True) if m["shard"]["count"] == c]
              for c in sorted(counts)}
        raise ValueError(f"{root} mixes shards of different splits ({', '.join(f'n={c}' for c in by)}: "
                         f"{by}): keep the shards of one `--shard i/n` run and remove the others")
    n = counts.pop()
    seen: dict[int, Path] = {}
    for p, m in zip(finished, metas, strict=True):
        i = int(m["shard"]["index"])
        if i in seen:
            raise ValueError(f"shard {i}/{n} is present twice ({seen[i].name} and {p.name}): "
                             "remove one of them (the folder names must match the shards they hold)")
        seen[i] = p
    missing = [i for i in range(n) if i not in seen]
    if missing:
        hint = f"; unfinished: {', '.join(unfinished)}" if unfinished else ""
        raise ValueError(
            f"{len(missing)} of {n} shards in {root} are missing or unfinished "
            f"({', '.join(f'{i}/{n}' for i in missing[:10])}{hint}): run "
            f"`hashret encode RUN_DIR --shard i/{n}` for each (a finished shard is skipped)"
        )
    order = [seen[i] for i in range(n)]
    metas_by = {p: m for p, m in zip(finished, metas, strict=True)}
    ordered = tuple(metas_by[p] for p in order)
    first = ordered[0]
    total = int(first["shard"]["total"])
    for i, (p, m) in enumerate(zip(order, ordered, strict=True)):
        diff = [k for k in CONSISTENT if m.get(k) != first.get(k)]
        if int(m["shard"]["total"]) != total:
            diff.append("total")
        if diff:
            raise ValueError(
                f"shard {i}/{n} ({p.name}) differs from shard 0/{n} in {', '.join(diff)}: every shard must "
                "come from the same model and collection; encode the stale ones again"
            )
        want = Shard(i, n).range(total)
        got = (int(m["shard"]["start"]), int(m["shard"]["stop"]))
        if got != want or int(m.get("n", got[1] - got[0])) != got[1] - got[0]:
            raise ValueError(f"shard {i}/{n} ({p.name}) holds rows {got[0]}..{got[1]} of {total}, "
                             f"expected {want[0]}..{want[1]}: it overlaps another shard or leaves a gap; "
                             "encode it again")
    return ShardSet(root, tuple(order), ordered, total)


def merge_shards(shards: ShardSet, out: str | Path) -> EncodedSet:
    """Concatenate the shards into one :class:`EncodedSet` at ``out`` (``meta.json`` last)."""
    parts = [shards.load(i) for i in range(shards.count)]
    arrays = {name: np.concatenate([getattr(p, name) for p in parts]) for name in ARRAYS}
    meta = shards.meta | {"merged_from": {"root": str(shards.root), "shards": shards.count}}
    meta.pop("run_dir", None)
    enc = EncodedSet(meta=meta, **arrays)
    save_encoded(out, enc)
    return enc


def merge_run_shards(run_dir: str | Path) -> dict[str, EncodedSet]:
    """Merge ``RUN/encodings/<name>.shards`` into ``RUN/encodings/<name>`` for database, queries."""
    from hashret.run import SPLITS

    out = {}
    for name in SPLITS:
        sset = open_shards(shards_dir(run_dir, name))
        out[name] = merge_shards(sset, Path(run_dir) / "encodings" / name)
    return out


def _items(enc: EncodedSet, lo: int, hi: int) -> list[ItemMeta]:
    classes = enc.meta.get("classes") or []
    return [ItemMeta(str(enc.ids[j]), int(enc.labels[j]),
                     classes[int(enc.labels[j])] if 0 <= int(enc.labels[j]) < len(classes) else None)
            for j in range(lo, hi)]


def _rows(shards: ShardSet, start: int, batch: int):  # -> Iterator[(global_lo, global_hi, enc, lo, hi)]
    """Batches of at most ``batch`` rows from global row ``start`` on, never across shards."""
    for i in range(shards.count):
        a, b = shards.range(i)
        if b <= start:
            continue
        enc = shards.load(i)
        for lo in range(max(start, a), b, batch):
            hi = min(lo + batch, b)
            yield lo, hi, enc, lo - a, hi - a


def load_shards_store(shards: ShardSet, out: str | Path, *, backend: str = "faiss-flat",
                      feature_storage: str = "float16", pca_dim: int | None = None, overwrite: bool = False,
                      batch: int = LOAD_BATCH, on_batch: Callable[[int, int], None] | None = None) -> Path:
    """Bulk-load shards into an index directory; resumable; ``out`` appears only when complete.

    The index is built in ``OUT.partial`` (one commit per batch; the manifest's ``build``
    record holds the rows done), then renamed to ``OUT``. Running again after a failure
    continues after the last committed batch. Item ``j`` of the collection gets id ``j``.
    When the shards record their run directory and it still holds the model, the model
    is copied into the index (so ``hashret search INDEX --image`` works).

    Args:
        shards: from :func:`open_shards`.
        out: the index directory to create.
        backend, feature_storage, pca_dim: see :meth:`hashret.store.directory.IndexStore.create`.
        overwrite: replace an existing index at ``out``.
        batch: rows per commit.
        on_batch: called with ``(rows done, total)`` after each commit (progress).

    Raises:
        FileExistsError: ``out`` holds an index and not ``overwrite``.
        ValueError: ``OUT.partial`` holds a load of other shards.
    """
    from hashret.store.directory import IndexStore
    from hashret.store.manifest import MANIFEST_FILE

    out = Path(out)
    staging = out.with_name(out.name + ".partial")
    if (out / MANIFEST_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds an index: choose another --out, or pass --overwrite")
    record = {"shards": shards.signature(), "done": 0}
    if (staging / MANIFEST_FILE).exists():
        store = IndexStore.open(staging, writable=True)
        prev = store.manifest.build or {}
        if prev.get("shards") != record["shards"]:
            store.close()
            raise ValueError(f"{staging} holds an unfinished load of other shards ({prev.get('shards')}): "
                             f"remove {staging} to start this load")
        record["done"] = int(prev.get("done", 0))
    else:
        model, model_file = _model_of(shards)
        store = IndexStore.create(staging, bits=int(shards.meta["bits"]),
                                  feature_dim=int(shards.meta["feature_dim"]),
                                  feature_storage=feature_storage, pca_dim=pca_dim, backend=backend,
                                  model=model, model_file=model_file, overwrite=True)
    from hashret.pipeline import Batch, write_batches

    batches = (Batch(_items(enc, a, b), codes=np.asarray(enc.codes[a:b]),
                     features=np.asarray(enc.features[a:b]), build=record | {"done": hi})
               for _lo, hi, enc, a, b in _rows(shards, record["done"], batch))
    try:
        write_batches(store, batches, on_batch=None if on_batch is None else
                      lambda b, _: on_batch(int(b.build["done"]), shards.total))  # type: ignore[index]
        if len(store) != shards.total:
            raise ValueError(f"{staging} holds {len(store)} items after the load, expected {shards.total}: "
                             f"remove {staging} and load again")
    finally:
        store.close()
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(staging, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staging, out)
    return out


def _model_of(shards: ShardSet) -> tuple[dict[str, Any], Path | None]:
    """The manifest's model record (and the checkpoint to copy) for an index of ``shards``."""
    from hashret.io import file_sha256
    from hashret.training.checkpoint import MODEL_FILE

    meta = shards.meta
    run_dir = Path(meta["run_dir"]) if meta.get("run_dir") else None
    if run_dir is not None and (run_dir / MODEL_FILE).exists() and (
            file_sha256(run_dir / MODEL_FILE) == meta.get("model_sha256")):
        from hashret.indexing import model_identity, run_image_shape
        from hashret.run import open_run

        run = open_run(run_dir, device="cpu")
        return model_identity(run, run_image_shape(run)), run_dir / MODEL_FILE
    return {"sha256": meta.get("model_sha256")}, None


def load_shards_milvus(shards: ShardSet, location: str, *, collection: str | None = None,
                       token: str | None = None, overwrite: bool = False, batch: int = LOAD_BATCH,
                       on_batch: Callable[[int, int], None] | None = None) -> Any:
    """Bulk-load shards into a Milvus collection; resumable; searchable only when complete.

    The collection is marked ``"loading"`` in hashret's registry until every row is in
    (:meth:`hashret.store.milvus.MilvusCollection.open` refuses it meanwhile). Item ``j``
    gets id ``j``. Running again after a failure skips the shards whose id range is
    complete and loads a partly loaded shard again (its rows are deleted first). The model
    is recorded as for an index directory (its file's place and SHA-256).

    Args:
        shards: from :func:`open_shards`.
        location: ``milvus://HOST:PORT/NAME``, ``http://HOST:PORT`` or ``FILE.db[:NAME]``
            (:func:`hashret.store.milvus.parse_location`); ``collection`` names it otherwise.

    Returns:
        the :class:`~hashret.store.milvus.MilvusCollection`, ready for search.

    Raises:
        FileExistsError: the collection is already loaded and not ``overwrite``.
        ValueError: the collection holds a load of other shards, or another code length.
    """
    from hashret.index.milvus import connect
    from hashret.store.milvus import MilvusCollection, drop_collection, parse_location, read_record

    place = parse_location(location, collection)
    bits, dim = int(shards.meta["bits"]), int(shards.meta["feature_dim"])
    signature = shards.signature()
    client = connect(place.uri, token)
    record = read_record(client, place.name) if client.has_collection(place.name) else None
    if record is None and client.has_collection(place.name):
        raise FileExistsError(f"{place} is a collection hashret did not make: choose another name (hashret "
                              "never drops a collection it did not make, --overwrite or not)")
    if overwrite:
        drop_collection(client, place.name)
    elif record is not None and record.get("state") != "loading":
        raise FileExistsError(f"Milvus collection {place} is already loaded: choose another collection, or "
                              "pass --overwrite to replace it")
    elif record is not None and record.get("build") != signature:
        raise ValueError(f"Milvus collection {place} holds an unfinished load of other shards "
                         f"({record.get('build')}): pass --overwrite to start again")
    model, model_file = _model_of(shards)
    coll = MilvusCollection.open_for_loading(str(place), bits=bits, feature_dim=dim, token=token, model=model,
                                             model_file=model_file)
    coll.set_build(signature)
    for i in range(shards.count):
        a, b = shards.range(i)
        have = coll.count_id_range(a, b)
        if have == b - a:
            continue  # loaded before a failure
        if have:
            coll.delete_id_range(a, b)  # a shard cut short: load it again
        enc = shards.load(i)
        for lo in range(0, b - a, batch):
            hi = min(lo + batch, b - a)
            coll.insert_rows(np.arange(a + lo, a + hi, dtype=np.int64), np.asarray(enc.codes[lo:hi]),
                             np.asarray(enc.features[lo:hi], dtype=np.float32), _items(enc, lo, hi))
            if on_batch:
                on_batch(a + hi, shards.total)
    if len(coll) != shards.total:
        raise ValueError(f"Milvus collection {place} holds {len(coll)} items after the load, "
                         f"expected {shards.total}: pass --overwrite to load again")
    coll.mark_ready()
    return coll
