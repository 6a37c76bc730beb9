"""Persistent indexes made with a trained model: build from a dataset, add files, search by image.

This is the model-aware layer over a :class:`hashret.store.Collection` (an index directory or a
Milvus collection, which only know codes, features and metadata): it encodes images with the
model recorded in the collection (checked against its SHA-256), so queries and database are
always encoded by the same model, the same way (no augmentation; test-time flip and arithmetic
as the model was trained).
"""

from __future__ import annotations

import io
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hashret.data import ImageArray
from hashret.data.image import BadImageError
from hashret.data.tree import IMAGE_EXTENSIONS
from hashret.encoder import Encoder
from hashret.hits import Hit, make_hit
from hashret.io import file_sha256
from hashret.pipeline import Batch, write_batches
from hashret.run import Run
from hashret.search import SearchResult
from hashret.store import Collection, collection_exists, create_collection, open_collection
from hashret.store.metadata import ItemMeta

#: Keep a PNG copy of each image in the index when its sides are at most this (px).
THUMBNAIL_MAX_SIDE = 64


def model_identity(run: Run, image_shape: Sequence[int]) -> dict[str, Any]:
    """What the manifest records about the run's model and how it encodes (:meth:`Encoder.record`)."""
    return run.encoder.record(run.run_dir / "model.safetensors") | {
        "image_shape": [int(s) for s in image_shape], "run_dir": str(run.run_dir.resolve())}


def run_image_shape(run: Run) -> tuple[int, int, int]:
    """``(h, w, c)`` of the images the run's model was trained on."""
    return run.image_shape


def load_index_model(store: Collection, device: str = "cpu", *,
                     model_file: str | Path | None = None) -> Encoder:
    """The Encoder that made a collection's codes, its weights checked against the record.

    Args:
        store: any collection (an index directory keeps a copy of the model; a Milvus
            collection records where the model was and its SHA-256).
        device: where the model runs.
        model_file: the checkpoint to use instead of the one the collection reaches (a run's or
            a model directory's ``model.safetensors``, or that directory); it must be the model
            that made the codes.

    Raises:
        ValueError: the collection records no model (codes were added directly), the model
            cannot be found, or the file given is another model.
    """
    record = store.model_record
    if not record:
        raise ValueError(
            f"{store.location} records no model (its codes were added directly): encode query "
            "images yourself and call search() with codes"
        )
    if model_file is not None:
        path = Path(model_file)
        path = path / "model.safetensors" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"--model {model_file}: no model.safetensors there; give a run's or a "
                                    "model directory's model.safetensors")
        if record.get("sha256") and file_sha256(path) != record["sha256"]:
            raise ValueError(f"--model {model_file} is not the model that made the codes of {store.location} "
                             f"(SHA-256 {record['sha256'][:12]}...): give that model's file")
    else:
        found = store.model_file()
        if found is None:
            raise ValueError(
                f"{store.location} cannot reach the model that made its codes (SHA-256 "
                f"{str(record.get('sha256'))[:12]}..., last at {record.get('run_dir') or '?'}): pass "
                "--model PATH to that model's model.safetensors (or its run / model directory)"
            )
        path = found
    return Encoder.from_record(record, path, device=device)


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def existing_build(out: str | Path, *, backend: str | None = None, feature_storage: str | None = None,
                   pca_dim: int | None = None, token: str | None = None) -> dict[str, Any] | None:
    """The build record of the collection at ``out`` (``{collection, split, total, done,
    model_sha256}``), or None where ``out`` holds none; the options given (not None) must be the
    collection's own.

    Raises:
        ValueError: an option differs from what the collection was built with (named, with the fix).
    """
    if not collection_exists(out, token=token):
        return None
    with open_collection(out, token=token) as store:
        info = store.info()
        differ = [f"--{flag} {have} (asked: {want})" for flag, have, want in (
            ("backend", info.get("backend"), backend),
            ("features", info.get("feature_storage"), feature_storage),
            ("pca-dim", info.get("stored_dim") if info.get("feature_storage") == "pca" else None, pca_dim))
            if want is not None and want != have]
        if differ:
            raise ValueError(f"{out} is already an index built with {'; '.join(differ)}: pass --overwrite "
                             "to rebuild it with the new options, or choose another --out")
        return dict(info.get("build") or {})


def build_index(run: Run, out: str | Path, images: ImageArray, *, collection: str, split: str,
                batch_size: int = 2048, feature_storage: str | None = None, pca_dim: int | None = None,
                backend: str | None = None, thumbnails: bool | None = None,
                encodings: Any = None, overwrite: bool = False, progress: bool = False,
                token: str | None = None) -> Collection:
    """Index a labelled image collection with a run's model, one commit per batch; resumable.

    If ``out`` already holds a build of the same model, collection and split that stopped
    part-way, it continues after the last committed batch (the manifest records the
    progress in the same commit as each batch). A finished build is left as it is.

    Args:
        run: the trained run (its model encodes the images; an index directory keeps a copy of
            its checkpoint, Milvus records where it is).
        out: the index directory, or a Milvus collection (``milvus://HOST:PORT/NAME``, ``FILE.db:NAME``).
        images: ``ImageArray`` of the collection (the database), in database order.
        collection: where the images came from (recorded), e.g. the dataset path.
        split: which split of the collection (recorded).
        batch_size: images per commit.
        feature_storage, pca_dim, backend: an index directory's
            (:func:`hashret.store.create_collection`; default ``"float16"`` and
            ``hashret.store.DEFAULT_BACKEND``); continuing a build, they must be the index's (or None).
        thumbnails: keep a PNG copy of each image in the metadata (default: when the images
            are at most 64 px, i.e. cheaper than keeping the source around).
        encodings: an :class:`hashret.encodings.EncodedSet` of exactly these images by this
            model (e.g. the run's saved database encodings): its codes and features are
            used instead of encoding again.
        overwrite: start again over an existing index.
        token: credentials for a Milvus server.

    Returns:
        the collection, open for writing (close it when done).

    Raises:
        ValueError: ``out`` holds an index of another model, collection or split.
    """
    h, w, c = images.images.shape[1:]
    record = {"collection": collection, "split": split, "total": len(images), "done": 0,
              "model_sha256": run.model_sha256}
    if thumbnails is None:
        thumbnails = max(h, w) <= THUMBNAIL_MAX_SIDE
    if not overwrite and collection_exists(out, token=token):
        existing_build(out, backend=backend, feature_storage=feature_storage, pca_dim=pca_dim, token=token)
        store = open_collection(out, writable=True, token=token)
        prev = store.info().get("build") or {}
        same = {k: prev.get(k) for k in ("collection", "split", "total", "model_sha256")} == {
            k: record[k] for k in ("collection", "split", "total", "model_sha256")}
        if not same:
            store.close()
            raise ValueError(
                f"{out} already holds an index of another model or collection ({prev or 'added files'}): "
                "choose another --out, or pass --overwrite to rebuild it"
            )
        record["done"] = int(prev.get("done", 0))
    else:
        store = create_collection(out, bits=run.model_config.bits, feature_dim=_feature_dim(run, encodings),
                                  feature_storage=feature_storage, pca_dim=pca_dim, backend=backend,
                                  model=model_identity(run, (h, w, c)),
                                  model_file=run.run_dir / "model.safetensors", overwrite=overwrite,
                                  token=token)
    classes = images.classes

    def batches() -> Iterator[Batch]:
        for lo in range(record["done"], len(images), batch_size):
            hi = min(lo + batch_size, len(images))
            items = [ItemMeta(str(images.ids[i]), int(images.labels[i]), classes[int(images.labels[i])],
                              image=_png(images.images[i]) if thumbnails else None) for i in range(lo, hi)]
            if encodings is not None:
                yield Batch(items, codes=np.asarray(encodings.codes[lo:hi]),
                            features=np.asarray(encodings.features[lo:hi]), build=record | {"done": hi})
            else:
                yield Batch(items, images=images.images[lo:hi], build=record | {"done": hi})

    bar = tqdm(total=len(images), initial=record["done"], desc="index", unit="img",
               disable=None if progress else True)
    try:
        write_batches(store, batches(), run.encoder, on_batch=lambda b, _: bar.update(len(b)))
    except BaseException:
        store.close()
        raise
    finally:
        bar.close()
    return store


def open_or_create_index(run: Run, out: str | Path, *, feature_storage: str | None = None,
                         pca_dim: int | None = None, backend: str | None = None,
                         overwrite: bool = False, token: str | None = None) -> Collection:
    """An index of ``run``'s model at ``out``, open for writing: created empty (the checkpoint copied
    in) or, where ``out`` already holds an index of this very model, that index, so that adding a
    folder again finishes an interrupted add (:func:`add_files` skips files already indexed).

    Raises:
        ValueError: ``out`` holds an index of another model, or one built with other options.
    """
    if not overwrite and collection_exists(out, token=token):
        existing_build(out, backend=backend, feature_storage=feature_storage, pca_dim=pca_dim, token=token)
        store = open_collection(out, writable=True, token=token)
        if store.model_record.get("sha256") != run.model_sha256:
            store.close()
            raise ValueError(f"{out} already holds an index of another model: choose another --out, "
                             "or pass --overwrite to rebuild it with this one")
        return store
    h, w, c = run.image_shape
    return create_collection(out, bits=run.model_config.bits, feature_dim=int(run.model.feature_dim),
                             feature_storage=feature_storage, pca_dim=pca_dim, backend=backend,
                             model=model_identity(run, (h, w, c)),
                             model_file=run.run_dir / "model.safetensors", overwrite=overwrite, token=token)


def _feature_dim(run: Run, encodings: Any) -> int:
    if encodings is not None:
        return int(encodings.features.shape[1])
    return int(run.model.feature_dim)


def image_files(paths: Iterable[str | Path]) -> list[Path]:
    """Image files among ``paths`` (directories are searched recursively, sorted).

    Raises:
        FileNotFoundError: a path that does not exist, or no image found at all.
    """
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p} does not exist: give image files or folders of images")
    if not out:
        raise FileNotFoundError("no image files found in the given paths (jpg, png, ...)")
    return out


@dataclass
class AddedFiles:
    """What :func:`add_files` did.

    Attributes:
        ids: ``int64[m]`` the ids given to the added images, in file order.
        already: files left out because their bytes are already in the index (added from a
            file with the same SHA-256, or earlier in the same call).
        unreadable: files left out because they are not readable images (``on_bad_image="skip"``).
    """

    ids: np.ndarray
    already: int = 0
    unreadable: int = 0


def add_files(store: Collection, paths: Iterable[str | Path], *, label: str | None = None,
              on_bad_image: str = "error", batch_size: int = 512, thumbnails: bool | None = None,
              model: Encoder | None = None, allow_duplicates: bool = False,
              progress: bool = False) -> AddedFiles:
    """Encode image files with the index's model and add them (one commit per batch).

    Each item records the SHA-256 of its file's bytes, and a file whose bytes are already
    in the index is left out, so an add that stopped part-way (Ctrl-C, ``kill -9``) is
    finished by running it again.

    Args:
        store: an index open for writing.
        paths: image files or folders.
        label: class name of every added image (its label index when the model knows the
            class, else ``-1``); ``None`` leaves them unlabelled.
        on_bad_image: ``"error"`` stops at an unreadable image before anything of its batch
            is written (earlier batches stay committed); ``"skip"`` warns and goes on.
        allow_duplicates: add files whose bytes are already in the index again.
    """
    files = image_files(paths)
    model = model or load_index_model(store)
    label_idx = model.classes.index(label) if label in model.classes else -1
    h, w, _ = model.image_shape
    if thumbnails is None:
        thumbnails = max(h, w) <= THUMBNAIL_MAX_SIDE
    out = AddedFiles(np.zeros(0, np.int64))
    seen: set[str] = set()

    def batches() -> Iterator[Batch]:  # read after the previous batch's commit: find_files sees it
        for lo in tqdm(range(0, len(files), batch_size), desc="add", disable=None if progress else True):
            batch = files[lo : lo + batch_size]
            hashes = [file_sha256(f) for f in batch]
            present = set() if allow_duplicates else set(store.find_files(hashes))
            imgs, items = [], []
            for f, sha in zip(batch, hashes, strict=True):
                if not allow_duplicates and (sha in present or sha in seen):
                    out.already += 1
                    continue
                try:
                    img = model.read(f)
                except BadImageError as e:
                    if on_bad_image != "skip":
                        raise ValueError(f"{e}; pass --on-bad-image skip to leave it out") from e
                    print(f"warning: skipping {f}: {e}", file=sys.stderr)
                    out.unreadable += 1
                    continue
                seen.add(sha)
                imgs.append(img)
                thumb = _png(img) if thumbnails else None
                items.append(ItemMeta(str(f.resolve()), label_idx, label, image=thumb, file_sha256=sha))
            if imgs:
                yield Batch(items, images=np.stack(imgs))

    out.ids = write_batches(store, batches(), model)
    if out.unreadable:
        print(f"skipped {out.unreadable} unreadable image(s)", file=sys.stderr)
    return out


def add_image_files(store: Collection, paths: Iterable[str | Path], *, label: str | None = None,
                    on_bad_image: str = "error", batch_size: int = 512, thumbnails: bool | None = None,
                    model: Encoder | None = None, allow_duplicates: bool = False,
                    progress: bool = False) -> np.ndarray:
    """:func:`add_files`, returning only the new ids ``int64[m]`` (files already in the index
    are left out unless ``allow_duplicates``)."""
    return add_files(store, paths, label=label, on_bad_image=on_bad_image, batch_size=batch_size,
                     thumbnails=thumbnails, model=model, allow_duplicates=allow_duplicates,
                     progress=progress).ids


def search_by_images(store: Collection, model: Encoder, images: np.ndarray, *, k: int = 10,
                     rerank: bool = False, candidates: int | None = None,
                     radius: int | None = None) -> list[SearchResult]:
    """Encode ``uint8[q, h, w, c]`` query images with the index's model and search."""
    enc = model.encode(images)
    return store.search(enc.codes, enc.features, k, candidates=candidates, radius=radius, rerank=rerank)


def describe_results(store: Collection, result: SearchResult) -> list[Hit]:
    """One query's result as :class:`hashret.hits.Hit` dicts."""
    metas = store.get_items(result.indices)
    return [make_hit(r + 1, i, h, e, m.label, m.class_name, m.source)
            for r, (i, h, e, m) in enumerate(zip(result.indices, result.hamming, result.euclidean, metas,
                                                 strict=True))]


#: Thumbnails made by :func:`add_images` have their longer side at most this (px).
THUMBNAIL_SIDE = 128


def thumbnail_png(image: np.ndarray, max_side: int = THUMBNAIL_SIDE) -> bytes:
    """PNG bytes of a ``uint8[h, w, c]`` image, shrunk (aspect kept) so its longer side is at
    most ``max_side``; smaller images are kept as they are."""
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return _png(image)
    from PIL import Image

    img = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def add_images(store: Collection, model: Encoder, images: np.ndarray | Sequence[np.ndarray],
               sources: Sequence[str], *, label: str | None = None,
               extra: Sequence[dict[str, Any]] | None = None,
               thumbnail_side: int | None = THUMBNAIL_SIDE) -> np.ndarray:
    """Encode decoded images with the index's model and add them in ONE commit.

    Every added item keeps a PNG thumbnail of its model input (longer side at most
    ``thumbnail_side``; ``None`` keeps none), so an index that serves images only ever
    serves its own stored copies. Either all images are added or (on any error) none.

    Args:
        store: an index open for writing.
        model: the index's model (:func:`load_index_model`).
        images: ``uint8[n, h, w, c]`` at the index's image shape (``model.read`` gives one).
        sources: one description per image (a file name, an upload name); stored as text.
        label: class name of every image (label index when the model knows the class).
        extra: optional JSON-serialisable fields per image.

    Returns:
        ``int64[n]`` the new ids, in order.

    Raises:
        ValueError: images of another shape or dtype, or counts that do not match.
    """
    imgs = np.stack(list(images)) if not isinstance(images, np.ndarray) else images
    if imgs.ndim != 4 or imgs.dtype != np.uint8 or tuple(imgs.shape[1:]) != tuple(model.image_shape):
        raise ValueError(f"images must be uint8 [n, {', '.join(map(str, model.image_shape))}] (the "
                         f"index's image shape; decode with model.read), got {imgs.dtype} {imgs.shape}")
    if len(sources) != len(imgs) or (extra is not None and len(extra) != len(imgs)):
        raise ValueError(f"{len(imgs)} images but {len(sources)} sources"
                         + (f" and {len(extra)} extra records" if extra is not None else "")
                         + ": give one per image")
    if len(imgs) == 0:
        return np.zeros(0, np.int64)
    label_idx = model.classes.index(label) if label in model.classes else -1
    items = [
        ItemMeta(str(src), label_idx, label, dict(extra[i]) if extra is not None else {},
                 image=thumbnail_png(imgs[i], thumbnail_side) if thumbnail_side else None)
        for i, src in enumerate(sources)
    ]
    return write_batches(store, [Batch(items, images=imgs)], model)
