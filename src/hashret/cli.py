"""``hashret`` command line: a dispatch table over the library API, nothing more."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sqlite3
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hashret import __version__
from hashret.threads import apply_threads


def _train(a: argparse.Namespace) -> int:
    from hashret.training import TrainConfig, train
    from hashret.training.methods import get_training_method

    fields = {f for f in TrainConfig.__dataclass_fields__ if hasattr(a, f)}
    cfg = TrainConfig(**{f: getattr(a, f) for f in fields})
    _check_train_options(a)
    try:
        res = train(cfg, a.out, resume=a.resume, overwrite=a.overwrite, cache_dir=a.cache_dir,
                    progress=not a.quiet)
    except KeyboardInterrupt:
        if _is_main_rank():
            _say_interrupted_training(Path(a.out), a.argv, a.resume)
        return 130
    if not _is_main_rank():  # under torchrun: one summary, from the rank that wrote the run
        return 0
    stat = _STAT_NAMES.get(get_training_method(res.model_config.method).select_by, "score")
    print(f"trained {res.model_config.method} ({res.model_config.backbone}, "
          f"{res.model_config.bits} bits) in {res.train_seconds:.1f}s; selected epoch {res.best_epoch} of "
          f"{len(res.history)} by validation {stat} -> {res.run_dir}")
    if res.still_improving is not None:
        print(f"note: validation {stat} was still rising at the last epoch "
              f"(+{res.still_improving:.4f} per epoch): more --epochs would likely help "
              f"(this run: --epochs {res.train_config.epochs})", file=sys.stderr)
    return 0


def _is_main_rank() -> bool:
    """Rank 0 of a ``torchrun`` job, or a single process."""
    from hashret.training.distributed import world

    return world().main


def _unused(option: str, why: str) -> None:
    """One line on stderr: an option given that this command, as asked, does not use."""
    print(f"warning: {option} {'were' if ',' in option else 'was'} not used: {why}", file=sys.stderr)


def _check_train_options(a: argparse.Namespace) -> None:
    """What can be checked before any data or model loads, so a typo does not cost a data load;
    and the options given that the chosen dataset or method does not use."""
    from hashret.device import resolve_device
    from hashret.models import list_backbones

    main_rank = _is_main_rank()  # under torchrun: one warning, not one per rank
    if main_rank and a.dataset == "digits" and a.data_dir is not None:
        _unused("--data-dir", "the digits dataset is bundled with scikit-learn")
    if main_rank and a.method != "triplet":
        given = [f for f, v in (("--margin", a.margin), ("--classes-per-batch", a.classes_per_batch),
                                ("--images-per-class", a.images_per_class)) if v is not None]
        given += ["--mining"] * (a.mining != "all") + ["--quant-weight"] * (a.quant_weight != 0)
        if given:
            _unused(", ".join(given), f"{'they apply' if len(given) > 1 else 'it applies'} to "
                                      f"--method triplet only (this run: --method {a.method})")
    if a.backbone is not None and a.backbone not in list_backbones():
        raise ValueError(f"unknown --backbone {a.backbone!r}: choose one of {', '.join(list_backbones())}")
    resolve_device(a.device)  # --device cuda without a GPU fails here, not after loading the data
    if a.pretrained not in (None, "torchvision") and not Path(a.pretrained).expanduser().is_file():
        raise FileNotFoundError(f"--pretrained {a.pretrained} does not exist: pass torchvision's weight file "
                                "for the backbone, or --pretrained without a path to download it")


#: the validation statistics a method selects its epoch by, in words
_STAT_NAMES = {"val_acc": "accuracy", "val_map": "mAP"}


def _say_interrupted_training(out: Path, argv: list[str], resumed: bool) -> None:
    """One line after Ctrl-C: what the run directory holds and the command that continues it."""
    import shlex

    from hashret.io import read_json

    argv = [w for w in argv if w not in ("--overwrite", "--resume")]
    again = shlex.join(["hashret", *argv, "--resume"])
    try:
        done = len(read_json(out / "history.json")["epochs"])
    except (OSError, ValueError, KeyError):
        done = 0
    if done:
        print(f"\ninterrupted: {done} epoch(s) are saved in {out}; continue with: {again}", file=sys.stderr)
    else:
        print(f"\ninterrupted before the first epoch ended: nothing to resume in {out}; start again with: "
              f"{shlex.join(['hashret', *argv, *(['--overwrite'] if not resumed else [])])}", file=sys.stderr)


def _encode(a: argparse.Namespace) -> int:
    from hashret.run import encode_run, open_run

    if a.merge_shards:
        from hashret.shards import merge_run_shards

        given = [o for o, v in (("--shard", a.shard), ("--data-dir", a.data_dir)) if v is not None]
        if given:
            _unused(", ".join(given), "--merge-shards joins the finished shards; it encodes nothing")

        for name, enc in merge_run_shards(a.run_dir).items():
            print(f"{name}: merged {enc.meta['merged_from']['shards']} shards, {len(enc)} items "
                  f"-> {Path(a.run_dir) / 'encodings' / name}")
        return 0
    if a.shard:
        from hashret.shards import Shard, encode_shard

        shard = Shard.parse(a.shard)  # before the model loads: a typo fails at once
        done = encode_shard(open_run(a.run_dir), shard, data_dir=a.data_dir, cache_dir=a.cache_dir,
                            progress=not a.quiet)
        for name, d in done.items():
            print(f"shard {shard} of {name}: already complete, skipped ({d.folder})" if d.skipped
                  else f"shard {shard} of {name}: encoded -> {d.folder}")
        return 0
    run = open_run(a.run_dir)
    out = encode_run(run, data_dir=a.data_dir, cache_dir=a.cache_dir, progress=not a.quiet)
    for name, enc in out.items():
        print(f"{name}: {len(enc)} items -> {run.encodings_dir(name)}")
    return 0


def _evaluate(a: argparse.Namespace) -> int:
    from hashret.eval import format_table
    from hashret.run import PLOT_FILE, REPORT_FILE, encode_run, encodings_state, evaluate_run, open_run

    run = open_run(a.run_dir)
    state = encodings_state(run)
    if state != "current":
        why = ("no encodings yet" if state == "missing" else
               "the encodings are of an earlier model (the run was trained again)")
        print(f"{why}: encoding the database and queries first", file=sys.stderr)
        encode_run(run, data_dir=a.data_dir, cache_dir=a.cache_dir, progress=not a.quiet)
    elif a.data_dir is not None:
        _unused("--data-dir", f"{a.run_dir} already has encodings, evaluated as they are; to encode that "
                              f"data first run `hashret encode {a.run_dir} --data-dir {a.data_dir}`")
    results = evaluate_run(run, k=a.k)
    if a.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results))
        print(f"report: {run.run_dir / REPORT_FILE}\nplot:   {run.run_dir / PLOT_FILE}")
    return 0


def _search(a: argparse.Namespace) -> int:
    from hashret.store import is_milvus_location

    if (Path(a.run_dir) / "manifest.json").exists() or is_milvus_location(a.run_dir):
        return _search_index(a)
    if a.rerank or a.candidates is not None or a.radius is not None:
        raise ValueError("--rerank, --candidates and --radius need an index directory "
                         "(`hashret index build RUN_DIR --out INDEX_DIR`), not a run directory")
    if a.model is not None or a.token is not None:
        _unused("--model/--token", "they apply to a collection (an index directory or Milvus), not a run")
    from hashret.run import open_run, read_query_image, search_images

    run = open_run(a.run_dir)
    notes: list[str] = []
    hits = search_images(run, read_query_image(run, a.image, notes), k=a.k)[0]
    if _print_search_json(a, notes, hits):
        return 0
    print(f"top {len(hits)} for {a.image} ({run.model_config.bits}-bit codes, Hamming):")
    print(f"{'rank':>4}  {'hamming':>7}  {'class':<12} source")
    for h in hits:
        print(f"{h['rank']:>4}  {h['hamming']:>7}  {h['class_name']:<12} {h['source']}")
    return 0


def _print_search_json(a: argparse.Namespace, notes: list[str], hits: list[dict]) -> bool:
    """Tell what was changed to fit the query image (stderr); with --json print the answer."""
    for note in notes:
        print(f"note: {a.image}: {note} to fit the model's input", file=sys.stderr)
    if a.json:
        print(json.dumps({"image": a.image, "notes": notes, "results": hits}, indent=2))
    return bool(a.json)


def _search_index(a: argparse.Namespace) -> int:
    from hashret.index.popcount import search_kernels_cached
    from hashret.indexing import describe_results, load_index_model, search_by_images
    from hashret.store import open_collection

    if not search_kernels_cached():
        print("compiling the search kernels (first search after installing only; about a minute)...",
              file=sys.stderr)
    with open_collection(a.run_dir, token=_token(a)) as store:
        model = load_index_model(store, model_file=a.model)
        notes: list[str] = []
        result = search_by_images(store, model, model.read(a.image, notes)[None], k=a.k, rerank=a.rerank,
                                  candidates=a.candidates, radius=a.radius)[0]
        hits = describe_results(store, result)
    if _print_search_json(a, notes, hits):
        return 0
    how = "Hamming, then Euclidean re-rank" if a.rerank else "Hamming"
    print(f"top {len(hits)} for {a.image} in {a.run_dir} ({store.bits}-bit codes, {how}):")
    print(f"{'rank':>4}  {'id':>8}  {'hamming':>7}  {'euclid':>8}  {'class':<12} source")
    for h in hits:
        e = "" if h["euclidean"] is None else f"{h['euclidean']:.3f}"
        name = "-" if h["class_name"] is None else str(h["class_name"])  # unlabelled images
        print(f"{h['rank']:>4}  {h['id']:>8}  {h['hamming']:>7}  {e:>8}  {name:<12} {h['source']}")
    return 0


def _index_build(a: argparse.Namespace) -> int:
    from hashret.indexing import build_index, existing_build, run_image_shape
    from hashret.run import load_run_dataset, open_run

    _check_features(a)
    if a.images or a.index_command == "create":
        return _index_build_images(a)
    run = open_run(a.run_dir)
    if run.model_config.num_classes == 0:  # hashret models fit / get: no dataset of its own
        raise ValueError(f"{a.run_dir} is a model fitted without labels: name the images to index, "
                         f"`hashret index build {a.run_dir} --images FOLDER --out {a.out}`")
    prev = None if a.overwrite else existing_build(a.out, backend=a.backend, feature_storage=a.features,
                                                   pca_dim=a.pca_dim, token=_token(a))
    complete = bool(prev) and prev.get("done") == prev.get("total")
    if complete and a.data_dir is None and prev.get("split") == a.split \
            and prev.get("model_sha256") == run.model_sha256:
        print(f"{a.out} is already built: {prev['done']} items of the {a.split} split by this model; nothing "
              "to do (--overwrite rebuilds it; `hashret index add` adds images)")
        return 0
    data = load_run_dataset(run, a.data_dir, a.cache_dir)
    splits = {"train": [data.train], "test": [data.test], "all": [data.train, data.test]}[a.split]
    images = splits[0] if len(splits) == 1 else _concat(splits)
    if images.images.shape[1:] != run_image_shape(run):
        raise ValueError(f"the dataset's images are {images.images.shape[1:]}, the model was trained on "
                         f"{run_image_shape(run)}: pass the training --data-dir")
    encodings = _reusable_encodings(run, a.split, data.source, len(images))
    store = build_index(run, a.out, images, collection=data.source, split=a.split,
                        batch_size=a.batch_size, feature_storage=a.features, pca_dim=a.pca_dim,
                        backend=a.backend, thumbnails=a.thumbnails, encodings=encodings,
                        overwrite=a.overwrite, progress=not a.quiet, token=_token(a))
    with store:
        info = store.info()
    print(f"indexed {info['items']} items ({info['bits']} bits, features {info['feature_storage']}, "
          f"backend {info['backend']}) -> {a.out}")
    return 0


def _index_build_images(a: argparse.Namespace) -> int:
    """index build MODEL_DIR --images PATHS / index create: an index of image files, unlabelled; running
    it again adds only the files not yet in the index (an interrupted build resumes)."""
    from hashret.indexing import add_files, open_or_create_index
    from hashret.run import open_run

    run = open_run(a.run_dir)
    with open_or_create_index(run, a.out, feature_storage=a.features, pca_dim=a.pca_dim, backend=a.backend,
                              overwrite=a.overwrite, token=_token(a)) as store:
        if a.images:
            done = add_files(store, a.images, on_bad_image=a.on_bad_image, batch_size=a.batch_size,
                             thumbnails=True if a.thumbnails is None else a.thumbnails,  # for serve's page
                             model=run.encoder, progress=not a.quiet)
            print(f"added {len(done.ids)} images ({done.already} already in the index, {done.unreadable} "
                  f"unreadable skipped)", file=sys.stderr)
        info = store.info()
    print(f"indexed {info['items']} items ({info['bits']} bits, features {info['feature_storage']}, "
          f"backend {info['backend']}) -> {a.out}")
    return 0


def _check_features(a: argparse.Namespace) -> None:
    """--features pca needs --pca-dim, which means nothing otherwise (checked before any loading)."""
    if a.features == "pca" and a.pca_dim is None:
        raise ValueError("--features pca needs --pca-dim N, the stored dimension (e.g. 64)")
    if a.features not in ("pca", None) and a.pca_dim is not None:  # None: as the existing index (build)
        _unused("--pca-dim", f"it applies to --features pca only (this index: --features {a.features})")


def _concat(parts):  # noqa: ANN001, ANN202 - ImageArray list -> ImageArray
    import numpy as np

    from hashret.data import ImageArray

    return ImageArray(np.concatenate([p.images for p in parts]), np.concatenate([p.labels for p in parts]),
                      np.concatenate([p.ids for p in parts]), parts[0].classes)


def _reusable_encodings(run, split: str, source: str, n: int):  # noqa: ANN001, ANN202
    """The run's saved database encodings when they are exactly this collection's."""
    from hashret.encodings import load_encoded

    folder = run.encodings_dir("database")
    if split != "train" or not (folder / "meta.json").exists():
        return None
    enc = load_encoded(folder, mmap=True)
    meta = enc.meta
    if meta.get("model_sha256") == run.model_sha256 and meta.get("source") == source and len(enc) == n:
        print(f"reusing the run's database encodings ({folder})", file=sys.stderr)
        return enc
    return None


def _index_load_shards(a: argparse.Namespace) -> int:
    from hashret.shards import load_shards_milvus, load_shards_store, open_shards

    if (a.out is None) == (a.milvus is None):
        raise ValueError("give --out INDEX_DIR (an index directory) or --milvus URI (a Milvus database)")
    _check_features(a)
    if a.milvus is not None:
        given = [o for o, v in (("--backend", a.backend), ("--pca-dim", a.pca_dim)) if v is not None]
        given += ["--features"] * (a.features != "float16")
        if given:
            _unused(", ".join(given), "Milvus stores float32 features and searches them itself (these "
                                      "options are for an index directory, --out)")
        from hashret.store.milvus import parse_location

        where = parse_location(a.milvus, a.collection)  # milvus://HOST:PORT/NAME, FILE.db[:NAME], ...
    else:
        given = ["--token"] * (a.token is not None) + ["--collection"] * (a.collection is not None)
        if given:
            _unused(", ".join(given), "Milvus options: they apply with --milvus, not --out")
    shards = open_shards(a.shards_dir)
    if a.milvus is not None:
        coll = load_shards_milvus(shards, str(where), token=a.token, overwrite=a.overwrite)
        layout = f", features in the {coll.layout!r} layout" if coll.layout else ""
        print(f"loaded {shards.count} shards, {len(coll)} items -> Milvus {coll.location}{layout}")
        return 0
    out = load_shards_store(shards, a.out, backend=a.backend or "faiss-flat", feature_storage=a.features,
                            pca_dim=a.pca_dim, overwrite=a.overwrite)
    print(f"loaded {shards.count} shards, {shards.total} items -> {out}")
    return 0


def _token(a: argparse.Namespace) -> str | None:
    """Milvus credentials: --token, else $MILVUS_TOKEN (None: none)."""
    return getattr(a, "token", None) or os.environ.get("MILVUS_TOKEN") or None


def _index_dir_only(a: argparse.Namespace, what: str) -> None:
    """Refuse a Milvus location for a command that only an index directory has."""
    from hashret.store import is_milvus_location

    if is_milvus_location(a.index_dir):
        raise ValueError(f"{a.index_dir} is a Milvus collection: `hashret index {a.index_command}` {what}")


def _index_add(a: argparse.Namespace) -> int:
    from hashret.indexing import add_files, load_index_model
    from hashret.store import open_collection

    with open_collection(a.index_dir, writable=True, token=_token(a)) as store:
        model = load_index_model(store, model_file=a.model)
        done = add_files(store, a.paths, label=a.label, on_bad_image=a.on_bad_image,
                         allow_duplicates=a.allow_duplicates, progress=not a.quiet, model=model)
        ids = done.ids
        print(f"added {len(ids)} images (ids {ids[0] if len(ids) else '-'}..{ids[-1] if len(ids) else '-'}); "
              f"skipped {done.already} already in the index; the index holds {len(store)} items")
    return 0


def _index_repair(a: argparse.Namespace) -> int:
    from hashret.store.repair import repair_index

    _index_dir_only(a, "mends an index directory's files; a Milvus collection is checked with `hashret index "
                       "info LOCATION --verify` and reloaded with `hashret index build ... --overwrite`")

    def confirm(plan) -> bool:  # noqa: ANN001 - a RepairPlan
        print("repair will:\n" + "\n".join(f"  - {f}" for f in plan.fixes))
        if a.yes:
            return True
        return input("proceed? [y/N] ").strip().lower() in ("y", "yes")

    plan = repair_index(a.index_dir, confirm=confirm, drop_metadata=a.drop_metadata,
                        accept_metadata=a.accept_metadata)
    if plan.blockers:
        print("cannot repair:\n" + "\n".join(f"  - {b}" for b in plan.blockers), file=sys.stderr)
        return 2
    if not plan.fixes:
        print(f"{a.index_dir}: nothing to repair (manifest, ids and metadata agree)")
    elif plan.applied:
        print(f"repaired {a.index_dir}; check it with `hashret index info {a.index_dir} --verify`")
    else:
        print("nothing changed")
        return 1
    return 0


def _index_remove(a: argparse.Namespace) -> int:
    from hashret.store import open_collection

    with open_collection(a.index_dir, writable=True, token=_token(a)) as store:
        n = store.remove(a.ids)
        print(f"removed {n} items; the index holds {len(store)} items")
    return 0


def _index_compact(a: argparse.Namespace) -> int:
    from hashret.store.directory import IndexStore

    _index_dir_only(a, "merges an index directory's segments; Milvus compacts its collections itself")

    with IndexStore.open(a.index_dir, writable=True) as store:
        store.compact()
        print(f"compacted: {len(store.manifest.segments)} segment(s), {len(store)} items")
    return 0


def _index_info(a: argparse.Namespace) -> int:
    from hashret.store import is_milvus_location, open_collection

    milvus = is_milvus_location(a.index_dir)
    options = {} if milvus else {"verify": a.verify or None}
    with open_collection(a.index_dir, token=_token(a), **options) as store:
        if a.verify and milvus:
            store.verify()
        info = store.info()
    if a.verify:
        info["verified"] = ("the record agrees with the collection: ready, every field its layout needs, "
                            "no id beyond the recorded next id" if milvus else
                            "every file matches its SHA-256, metadata.sqlite its seal; the manifest's "
                            "checksum and invariants hold")
    if a.json:
        print(json.dumps(info, indent=2))
        return 0
    for key in ("location", "engine", "items", "removed", "bits", "backend", "feature_dim",
                "feature_storage", "layout", "stored_dim", "segments", "generation", "next_id", "state",
                "model_sha256", "created", "updated", "verified"):
        if key in info:
            print(f"{key:>16}: {info[key]}")
    b = info.get("bytes")
    if b:
        print(f"{'bytes':>16}: " + ", ".join(f"{k} {v:,}" for k, v in b.items()))
    if b and info["items"]:
        print(f"{'bytes/item':>16}: {b['all_files'] / info['items']:.1f} (codes "
              f"{b['codes'] / info['rows']:.1f}, features {b['features'] / info['rows']:.1f})")
    if info.get("build"):
        print(f"{'build':>16}: {info['build']}")
    return 0


def _serve(a: argparse.Namespace) -> int:
    from hashret.serve import AccessPolicy, ServeLimits, SourceView, load_key, serve
    from hashret.serve.security import with_hosts

    access = AccessPolicy(write_key=load_key(a.write_key_file, "HASHRET_WRITE_KEY"),
                          read_key=load_key(a.read_key_file, "HASHRET_READ_KEY"),
                          allowed_hosts=with_hosts(a.allowed_host, a.host))
    given = {
        "max_upload_bytes": a.max_upload_mb and int(a.max_upload_mb * (1 << 20)),
        "max_pixels": a.max_megapixels and int(a.max_megapixels * 1e6),
        "max_decoded_bytes": a.max_decode_mb and int(a.max_decode_mb * (1 << 20)),
        "decode_workers": a.decode_workers, "decode_queue": a.decode_queue, "rate": a.rate_limit,
        "burst": a.rate_burst, "header_timeout": a.header_timeout, "body_timeout": a.body_timeout,
        "keep_alive": a.keep_alive, "max_connections": a.max_connections,
        "max_client_connections": a.max_client_connections, "max_batch": a.max_batch,
        "batch_window": None if a.batch_window_ms is None else a.batch_window_ms / 1000,
        "encode_queue": a.encode_queue}
    limits = ServeLimits(**{k: v for k, v in given.items() if v is not None})
    root = str(Path(a.source_root).resolve()) if a.source_root else None
    serve(a.index_dir, host=a.host, port=a.port, access=access, limits=limits, read_only=a.read_only,
          sources=SourceView(root, a.show_paths), log_level=a.log_level, runtime=a.runtime,
          onnx_file=a.onnx, workers=a.workers, token=_token(a), model_file=a.model)
    return 0


def _export_onnx(a: argparse.Namespace) -> int:
    import dataclasses

    import numpy as np

    from hashret.indexing import load_index_model
    from hashret.onnx_encoder import OnnxEncoder, code_agreement, export_onnx
    from hashret.run import open_run
    from hashret.store.directory import IndexStore

    src = Path(a.source)
    if (src / "manifest.json").is_file():
        with IndexStore.open(src) as store:
            encoder, sha = load_index_model(store), store.manifest.model.get("sha256")
    elif (src / "config.json").is_file():
        run = open_run(src, device="cpu")
        encoder, sha = run.encoder, run.model_sha256
    else:
        raise FileNotFoundError(f"{src} is neither an index (`hashret index build`) nor a training run "
                                "(`hashret train`)")
    out = Path(a.out) if a.out else src.parent / f"{src.name}.onnx"
    export_onnx(encoder, out, model_sha256=sha)
    images = np.random.default_rng(0).integers(0, 256, (16, *encoder.image_shape), dtype=np.uint8)
    check = code_agreement(OnnxEncoder(out).encode(images),
                           dataclasses.replace(encoder, precision="fp32").encode(images), encoder.bits)
    h, w, c = encoder.image_shape
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): pixels uint8[batch, {h}, {w}, {c}] -> features "
          f"float32[batch, {encoder.feature_dim}], latent float32[batch, {encoder.bits}]"
          f"{', flip-averaged' if encoder.tta_flip else ''}; on 16 random images {check['codes_differing']} "
          f"codes differ from torch fp32's, features by at most {check['max_feature_diff']:.1e}")
    if encoder.precision != "fp32":
        print(f"note: this model encodes in {encoder.precision} with torch (its training arithmetic) and the "
              "ONNX graph in fp32, so a code may differ from the torch one in a bit near the threshold; "
              "`hashret serve --runtime onnx --onnx FILE` uses it anyway, --runtime auto does not")
    return 0


def _download(a: argparse.Namespace) -> int:
    from hashret.data import download_cifar10, download_mnist

    fetch = {"mnist": download_mnist, "cifar10": download_cifar10}[a.dataset]
    path = fetch(a.out)
    print(f"{a.dataset} is in {path}: pass --data-dir {path} to `hashret train`")
    return 0


def _demo(a: argparse.Namespace) -> int:
    from hashret.demo import run_demo

    run_demo(Path(a.out), bits=a.bits, epochs=a.epochs, seed=a.seed, overwrite=a.overwrite,
             progress=not a.quiet)
    return 0


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where the dataset lives (default: as in training)")
    p.add_argument("--cache-dir", help="decoded-image cache (default $HASHRET_CACHE or "
                                       "~/.cache/hashret)")
    _add_threads_arg(p)


def _add_threads_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--threads", type=int, help="torch CPU threads (default: the cores the load average "
                                               "leaves free, at least 1; 0 = every core)")



class _Names:
    """A registry's names as an argparse ``choices``, read when argparse first needs them (a value to
    check, a help text to format), so building the parser imports no registry (nor torch) and the
    choices are never restated here."""

    def __init__(self, module: str, attr: str) -> None:
        self.module, self.attr = module, attr

    def _names(self) -> list[str]:
        import importlib

        names = getattr(importlib.import_module(self.module), self.attr)
        return list(names() if callable(names) else names)

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):  # noqa: ANN204 - an iterator of str
        return iter(self._names())

    def __len__(self) -> int:
        return len(self._names())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashret", description=(
        "Deep binary hash codes for fast image retrieval (DLBHC): train, encode, search, "
        "evaluate."))
    parser.add_argument("--version", action="version", version=f"hashret {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a hashing model on a labelled image collection")
    from hashret.data.registry import DATASETS  # light: numpy and Pillow, no torch

    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--data-dir", help="dataset location (MNIST IDX folder, CIFAR-10 pickles, "
                                      "image folder / .zip, CUB_200_2011 folder, Stanford Dogs "
                                      "folder; not needed for digits)")
    p.add_argument("--class-names", type=lambda text: tuple(text.split(",")), metavar="A,B,...",
                   help="names of an IDX (MNIST-format) dataset's labels 0, 1, ... in order (default: "
                        "classes.txt beside the IDX files, one name per line; else the digits)")
    p.add_argument("--method", default="dlbhc",
                   choices=_Names("hashret.training.methods", "TRAINING_METHODS"),
                   help="dlbhc: sigmoid latent layer + softmax loss; triplet: tanh codes + "
                        "triplet ranking loss (DNNH) on class-balanced batches")
    p.add_argument("--bits", type=int, default=48, help="code length, 8..256 (default 48)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--backbone", choices=_Names("hashret.models.backbones", "list_backbones"),
                   metavar="NAME", help="the backbone (hashret.models.list_backbones(): %(choices)s; "
                                        "default: per dataset)")
    p.add_argument("--pretrained", nargs="?", const="torchvision", metavar="PATH",
                   help="start the backbone from ImageNet weights: a torchvision weight file, or "
                        "no value to download torchvision's through torch.hub")
    p.add_argument("--freeze-backbone", action="store_true",
                   help="train only the hash head on backbone features computed once (fast on CPU)")
    p.add_argument("--margin", type=float,
                   help="triplet margin in bits of Hamming distance (default bits/4)")
    p.add_argument("--mining", default="all", choices=_Names("hashret.losses.triplet", "MINING"),
                   help="triplets used: all valid in-batch ones, or the semi-hard ones")
    p.add_argument("--quant-weight", type=float, default=0.0,
                   help="triplet method: weight of the penalty pulling tanh codes to +/-1")
    p.add_argument("--classes-per-batch", type=int, help="triplet method: P classes per batch")
    p.add_argument("--images-per-class", type=int, help="triplet method: K images per class")
    p.add_argument("--epochs", type=int, help="epochs to train (default: the dataset's, "
                                              "hashret.training.DATASET_DEFAULTS; with --patience the most)")
    p.add_argument("--patience", type=int, help="stop when validation has not improved for this many "
                                                "epochs (default: train every epoch)")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipe", default="sgd", choices=_Names("hashret.training.recipes", "RECIPES"),
                   help="optimisation recipe (hashret.training.recipes; airbench: the CIFAR-10 "
                        "speed-record parametrisation; airbench94: that and the rest of "
                        "airbench94.py's defaults: 10 epochs, convnet-airbench94, alternating "
                        "flips, --tta-translate 1; batch 512)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training set held out for model selection")
    p.add_argument("--image-size", type=int, help="resize folder images to this size on reading")
    p.add_argument("--input-size", type=int, help="model input side in px (default: image size)")
    _add_threads_arg(p)
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--precision", default="auto", choices=_Names("hashret.device", "PRECISIONS"),
                   help="training arithmetic: auto = bf16 autocast where the hardware has it")
    p.add_argument("--on-bad-image", choices=["error", "skip"], default="error")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="horizontal-flip augmentation (default: on for natural images)")
    p.add_argument("--tta-flip", action=argparse.BooleanOptionalAction, default=None,
                   help="encode as the mean of image and mirror (default: with --flip)")
    p.add_argument("--alternate-flip", action=argparse.BooleanOptionalAction, default=None,
                   help="mirror each training image every other epoch instead of at random "
                        "(default: the recipe's; airbench94 on)")
    p.add_argument("--tta-translate", type=int, metavar="PX",
                   help="also encode as the mean over the image shifted PX pixels up-left and "
                        "down-right, database and queries alike (default: the recipe's for "
                        "natural images, airbench94 1; 0 off); 3x the encoding time of --tta-flip")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="train over an existing run")
    p.add_argument("--cache-dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("encode", help="encode the database (train) and queries (test)")
    p.add_argument("run_dir")
    p.add_argument("--shard", metavar="I/N", help="encode only shard I of N (from 0) of each split into "
                   "RUN/encodings/<split>.shards/ (one task of an array job); a finished shard is skipped")
    p.add_argument("--merge-shards", action="store_true",
                   help="join the finished shards into RUN/encodings/{database,queries}")
    _add_data_args(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_encode)

    p = sub.add_parser("evaluate", help="mAP@k, mAP, P@k and P@radius2 under the protocol")
    p.add_argument("run_dir")
    p.add_argument("--k", type=int, default=1000, help="mAP@k cut-off (default 1000)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_data_args(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("search", help="the database images nearest to an image file")
    p.add_argument("run_dir", metavar="RUN_OR_COLLECTION",
                   help="a run directory (its encoded database), an index directory, or a Milvus collection "
                        "(milvus://HOST:PORT/NAME or FILE.db:NAME)")
    p.add_argument("--image", required=True, help="query image file")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--rerank", action="store_true",
                   help="hierarchical search: re-rank Hamming candidates by Euclidean feature distance")
    p.add_argument("--candidates", type=int, help="coarse stage: top-N by Hamming distance "
                                                  "(default k, or max(k, 1000) with --rerank)")
    p.add_argument("--radius", type=int, help="coarse stage: every item within this Hamming distance")
    p.add_argument("--json", action="store_true")
    _add_collection_args(p, model=True)
    _add_threads_arg(p)
    p.set_defaults(func=_search)

    _add_index_parser(sub)
    from hashret.cli_models import add_models_parser  # models fit | list | get

    add_models_parser(sub)

    p = sub.add_parser("serve", help="HTTP API and web page for query-by-image over an index",
                       description="Read-only unless given a write key; binds 127.0.0.1 and answers only "
                                   "the loopback host names unless told otherwise.")
    p.add_argument("index_dir", metavar="COLLECTION", help=_COLLECTION_HELP)
    _add_collection_args(p, model=True)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this "
                                                      "machine only); also allowed as a Host name")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--write-key-file", metavar="PATH",
                   help="file holding the key POST /items needs (else $HASHRET_WRITE_KEY; neither: "
                        "the server is read-only)")
    p.add_argument("--read-key-file", metavar="PATH",
                   help="file holding the key searches and item reads need (else $HASHRET_READ_KEY; "
                        "neither: reads are open)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a further Host name clients may use (repeatable; .example.com: its subdomains "
                        "too; '*': any, e.g. behind a proxy that checks); loopback names always")
    p.add_argument("--read-only", action="store_true",
                   help="never write, even with a write key (the index's writer lock stays free for "
                        "`hashret index add`, whose commits are picked up)")
    p.add_argument("--source-root", metavar="DIR",
                   help="show items' file sources relative to this folder (default: file names only)")
    p.add_argument("--show-paths", action="store_true", help="show items' sources as stored (server paths)")
    # limits: None = ServeLimits' default (hashret.serve.limits), not restated here
    p.add_argument("--max-upload-mb", type=float, default=None,
                   help="largest request body (413 above)")
    p.add_argument("--max-megapixels", type=float, default=None,
                   help="largest image decoded, from its header (413 above)")
    p.add_argument("--max-decode-mb", type=float, default=None,
                   help="largest memory one image's decode may take (413 above, before decoding)")
    p.add_argument("--decode-workers", type=int, default=None,
                   help="uploads decoded at once")
    p.add_argument("--decode-queue", type=int, default=None,
                   help="uploads waiting for a worker; beyond, 503 with Retry-After")
    p.add_argument("--rate-limit", type=float, default=None,
                   help="requests per second per client address (0: off, e.g. behind a proxy that limits)")
    p.add_argument("--rate-burst", type=int, default=None, help="requests a client may send at once")
    p.add_argument("--header-timeout", type=float, default=None,
                   help="seconds a connection has to send a request's head (then 408, closed)")
    p.add_argument("--body-timeout", type=float, default=None,
                   help="seconds a request has to send its whole body (then 408, closed)")
    p.add_argument("--keep-alive", type=float, default=None, help="seconds an idle connection stays")
    p.add_argument("--max-connections", type=int, default=None,
                   help="open connections; beyond, 503 and closed")
    p.add_argument("--max-client-connections", type=int, default=None,
                   help="open connections from one client address (raise it behind a proxy)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="uvicorn's log level (warning: no line per request)")
    p.add_argument("--runtime", default="auto", choices=["auto", "torch", "onnx"],
                   help="what encodes queries: ONNX Runtime (hashret[onnx]; fp32) or the index's torch "
                        "model; auto: ONNX Runtime when installed and the index was encoded in fp32")
    p.add_argument("--onnx", metavar="FILE", help="the index's model exported by `hashret export-onnx` "
                                                  "(default with onnx: exported at start)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes answering on the one port, each with its own model (more than one: "
                        "read-only)")
    p.add_argument("--max-batch", type=int, default=None,
                   help="most concurrent uploads encoded in one forward pass (1: one at a time)")
    p.add_argument("--batch-window-ms", type=float, default=None,
                   help="milliseconds an upload waits for others to join its batch")
    p.add_argument("--encode-queue", type=int, default=None,
                   help="decoded uploads waiting for the model; beyond, 503 with Retry-After")
    p.set_defaults(func=_serve)

    p = sub.add_parser("export-onnx", help="write an index's or run's model as an ONNX graph (uint8 pixels "
                                           "-> features, latent) for ONNX Runtime",
                       description="Needs hashret[onnx]. The graph does the /255, resize, normalisation and "
                                   "flip averaging of torch encoding, in fp32.")
    p.add_argument("source", metavar="INDEX_OR_RUN_DIR")
    p.add_argument("--out", metavar="FILE", help="the .onnx file (default: DIR.onnx beside DIR)")
    p.set_defaults(func=_export_onnx)

    p = sub.add_parser("download", help="fetch MNIST or CIFAR-10 (python version) from the web")
    p.add_argument("dataset", choices=["mnist", "cifar10"])
    p.add_argument("--out", required=True, help="folder to put the files in")
    p.set_defaults(func=_download)

    p = sub.add_parser("demo", help="train, encode, index, evaluate and search on the bundled "
                                    "8x8 digits (no download)")
    p.add_argument("--out", default="runs/demo",
                   help="a new or empty folder, or an earlier demo's (default runs/demo)")
    p.add_argument("--overwrite", action="store_true",
                   help="write into a folder that holds other files (only the demo's own file names "
                        "are replaced; nothing else is deleted)")
    p.add_argument("--bits", type=int, default=32)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    _add_threads_arg(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_demo)
    return parser


def _backend_spec(spec: str) -> str:
    """``--backend``: a registered backend, optionally with options (``faiss-ivf:nlist=256,nprobe=16``),
    checked before anything loads."""
    from hashret.index import list_indexes
    from hashret.index.registry import parse_index_spec

    try:
        name, _ = parse_index_spec(spec)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    if name not in list_indexes():
        raise argparse.ArgumentTypeError(f"unknown backend {name!r}: choose one of "
                                         f"{', '.join(list_indexes())}")
    return spec


#: what a collection argument may be
_COLLECTION_HELP = "an index directory, or a Milvus collection: milvus://HOST:PORT/NAME or FILE.db:NAME"


def _add_collection_args(p: argparse.ArgumentParser, *, model: bool = False) -> None:
    """--token (Milvus credentials) and, for commands that encode images, --model."""
    p.add_argument("--token", help="Milvus credentials, user:password or an API key (else $MILVUS_TOKEN)")
    if model:
        p.add_argument("--model", metavar="PATH",
                       help="the model that made the codes (its model.safetensors, or its run / model "
                            "directory) where the collection cannot reach it, e.g. a Milvus collection made "
                            "on another machine; checked against the recorded SHA-256")


def _add_index_parser(sub) -> None:  # noqa: ANN001 - argparse's private subparsers type
    idx = sub.add_parser("index", help="persistent index: build, add, remove, compact, info, repair")
    isub = idx.add_subparsers(dest="index_command", required=True)
    p = isub.add_parser("build", help="encode a run's dataset or image files into a collection (resumable)")
    p.add_argument("run_dir")
    p.add_argument("--out", required=True, metavar="COLLECTION", help=f"where to write: {_COLLECTION_HELP}")
    _add_collection_args(p)
    p.add_argument("--split", default="train", choices=["train", "test", "all"],
                   help="which part of the run's dataset to index (default train: the database)")
    p.add_argument("--backend", default=None, type=_backend_spec, metavar="NAME[:OPTION=VALUE,...]",
                   help="Hamming search backend (hashret.index.list_indexes())")
    p.add_argument("--features", choices=["float16", "float32", "pca"],
                   help="how the re-rank features are stored (default float16)")
    p.add_argument("--pca-dim", type=int, help="stored dimension with --features pca")
    p.add_argument("--batch-size", type=int, default=2048, help="images per commit")
    p.add_argument("--thumbnails", action=argparse.BooleanOptionalAction, default=None,
                   help="keep a PNG copy of each image (default: for images up to 64 px)")
    p.add_argument("--overwrite", action="store_true", help="rebuild over an existing index")
    p.add_argument("--images", nargs="+", help="index these image files / folders (recursive, no labels "
                                               "needed) instead of the run's dataset; run again to resume")
    p.add_argument("--on-bad-image", choices=["error", "skip"], default="error", help="with --images")
    _add_data_args(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_index_build)

    p = isub.add_parser("create", help="an empty index of a run's or model directory's model "
                                       "(then index add)")
    p.add_argument("run_dir", help="a trained run or a model directory (hashret models fit / get)")
    p.add_argument("--out", required=True, metavar="COLLECTION", help=f"where to write: {_COLLECTION_HELP}")
    _add_collection_args(p)
    p.add_argument("--backend", default=None, type=_backend_spec, metavar="NAME[:OPTION=VALUE,...]",
                   help="Hamming search backend (hashret.index.list_indexes())")
    p.add_argument("--features", choices=["float16", "float32", "pca"],
                   help="how the re-rank features are stored (default float16)")
    p.add_argument("--pca-dim", type=int, help="stored dimension with --features pca")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index")
    p.set_defaults(func=_index_build, images=None, batch_size=512, thumbnails=None, on_bad_image="error",
                   quiet=True)

    p = isub.add_parser("load-shards", help="bulk-load encoded shards into an index directory or Milvus "
                                            "(resumable; visible only when complete)")
    p.add_argument("shards_dir", help="folder of shard-i-of-n folders, e.g. RUN/encodings/database.shards")
    p.add_argument("--out", help="index directory to create")
    p.add_argument("--milvus", metavar="URI", help="Milvus instead: a local file.db (embedded), or a server "
                                                  "/ cluster: milvus://HOST:PORT/COLLECTION or http://HOST:PORT")
    p.add_argument("--collection", help="Milvus collection name (default hashret; or in the URI: "
                                        "--milvus milvus://HOST:PORT/COLLECTION)")
    p.add_argument("--token", help="Milvus credentials, user:password or an API key")
    p.add_argument("--backend", default=None, type=_backend_spec, metavar="NAME[:OPTION=VALUE,...]",
                   help="Hamming search backend of an index directory")
    p.add_argument("--features", default="float16", choices=["float16", "float32", "pca"],
                   help="how an index directory stores the re-rank features (default float16)")
    p.add_argument("--pca-dim", type=int, help="stored dimension with --features pca")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index or collection")
    p.set_defaults(func=_index_load_shards)

    p = isub.add_parser("add", help="encode image files with the index's model and add them")
    p.add_argument("index_dir", metavar="COLLECTION", help=_COLLECTION_HELP)
    _add_collection_args(p, model=True)
    p.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--label", help="class name of the added images")
    p.add_argument("--on-bad-image", choices=["error", "skip"], default="error")
    p.add_argument("--allow-duplicates", action="store_true",
                   help="add files whose bytes are already in the index again (default: skip them, so "
                        "an interrupted add is finished by running it again)")
    _add_threads_arg(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_index_add)

    p = isub.add_parser("remove", help="remove items by id")
    p.add_argument("index_dir", metavar="COLLECTION", help=_COLLECTION_HELP)
    _add_collection_args(p)
    p.add_argument("ids", nargs="+", type=int)
    p.set_defaults(func=_index_remove)

    p = isub.add_parser("compact", help="merge segments and drop removed items")
    p.add_argument("index_dir")
    p.set_defaults(func=_index_compact)

    p = isub.add_parser("info", help="what a collection holds (items, bits, model, files, bytes)")
    p.add_argument("index_dir", metavar="COLLECTION", help=_COLLECTION_HELP)
    _add_collection_args(p)
    p.add_argument("--verify", action="store_true",
                   help="check every file against its SHA-256 and metadata.sqlite against its seal (Milvus: "
                        "the record against the collection)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_index_info)

    p = isub.add_parser("repair", help="mend a manifest or metadata database that fails its checks "
                                       "(says what it would change and asks first)")
    p.add_argument("index_dir")
    p.add_argument("--yes", action="store_true", help="do not ask before changing anything")
    p.add_argument("--drop-metadata", action="store_true",
                   help="replace a missing or damaged metadata.sqlite by empty rows (labels, sources and "
                        "thumbnails are lost; the damaged file is kept beside it)")
    p.add_argument("--accept-metadata", action="store_true",
                   help="keep a metadata.sqlite whose bytes changed but which SQLite finds sound, as it is")
    p.set_defaults(func=_index_repair)


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": _train, "encode": _encode, "evaluate": _evaluate, "search": _search,
    "download": _download, "demo": _demo, "serve": _serve, "index": lambda a: a.func(a),
    "export-onnx": _export_onnx, "models": lambda a: a.func(a),
}


#: what a command interrupted by Ctrl-C leaves behind (train says it itself)
_AFTER_INTERRUPT = {
    "index": "every committed batch is kept: run the same command again to continue",
    "encode": "finished shards and splits are kept: run the same command again to continue",
}


def _check_index_dir(a: argparse.Namespace) -> None:
    """A training run given where an index directory goes: say how to build the index from it
    (the store's own message would suggest building the index into the run directory)."""
    if getattr(a, "index_dir", None) is None:
        return
    p = Path(a.index_dir)
    is_run = (p / "config.json").is_file() and (p / "model.safetensors").is_file()
    if not is_run or (p / "manifest.json").exists():
        return
    cmd = "serve" if a.command == "serve" else f"index {a.index_command}"
    raise FileNotFoundError(f"{p} is a training run, not an index: build one with "
                            f"`hashret index build {p} --out {p}-index`, then `hashret {cmd} {p}-index`")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # for the "continue with" line after Ctrl-C
    if getattr(args, "k", 1) < 1:
        print("hashret: error: --k must be >= 1", file=sys.stderr)
        return 2
    try:
        _check_index_dir(args)
        apply_threads(getattr(args, "threads", None))  # before torch loads: see hashret.threads
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        hint = _AFTER_INTERRUPT.get(args.command, "nothing was left half-written")
        print(f"\nhashret {args.command}: interrupted; {hint}", file=sys.stderr)
        return 130
    except KeyError as e:
        print(f"hashret {args.command}: error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, FileExistsError, FloatingPointError, RuntimeError,
            PermissionError, ImportError, LookupError) as e:
        print(f"hashret {args.command}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a quota, a file-size limit, an I/O error: one line, not a traceback
        print(f"hashret {args.command}: error: {_os_error(e)}", file=sys.stderr)
        return 1
    except sqlite3.OperationalError as e:  # SQLite's words for the same (full disk, I/O error)
        print(f"hashret {args.command}: error: the index's metadata database could not be written ({e}): "
              "free some space and run the same command again; what was committed before is intact",
              file=sys.stderr)
        return 1


def _os_error(e: OSError) -> str:
    """An OS error in words, with what to do: every write is atomic, so what was committed stays."""
    what = {errno.ENOSPC: "the disk is full", errno.EDQUOT: "the disk quota is exceeded",
            errno.EFBIG: "a file would pass the size limit (ulimit -f)"}.get(e.errno or 0)
    where = f" writing {e.filename}" if e.filename else ""
    if what:
        return (f"{what}{where} ({e.strerror}): free some space (or raise the limit) and run the same "
                "command again; what was written before is intact")
    return f"{e.strerror or e}{where}: check the path and the device, then run the same command again"


if __name__ == "__main__":
    sys.exit(main())
