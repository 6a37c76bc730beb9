"""Operations on a run directory: encode its collection, evaluate it, search it.

A run directory is what ``hashret train`` writes (``config.json``, ``model.safetensors``);
these functions add ``encodings/{database,queries}/``, ``report.json`` and
``precision_at_k.png``. The CLI and the demo are thin layers over them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashret.data import DatasetSplits, ImageArray, load_dataset
from hashret.device import resolve_device, resolve_precision
from hashret.encoder import Encoder
from hashret.encodings import EncodedSet, load_encoded, save_encoded
from hashret.eval import evaluate_codes, get_protocol, ideal_precision_at_k, plot_precision_at_k, write_report
from hashret.hits import Hit, make_hit
from hashret.index import FlatIndex
from hashret.io import file_sha256, read_json
from hashret.models import ModelConfig
from hashret.training.checkpoint import MODEL_FILE, load_model
from hashret.training.config import TrainConfig
from hashret.training.loop import RUN_FILES

#: The DLBHC protocol: the training set is the database, the test set the queries.
SPLITS = {"database": "train", "queries": "test"}
ENCODINGS_DIR = "encodings"
REPORT_FILE = "report.json"
PLOT_FILE = "precision_at_k.png"
#: everything a run directory holds (training's files, the encodings, the evaluation)
RUN_ENTRIES = (*RUN_FILES, ENCODINGS_DIR, REPORT_FILE, PLOT_FILE)


@dataclass
class Run:
    """A trained run: its model (eval mode), configs and directory."""

    run_dir: Path
    model: Any
    model_config: ModelConfig
    train_config: TrainConfig
    info: dict[str, Any]
    device: str = "cpu"

    @property
    def model_sha256(self) -> str:
        return file_sha256(self.run_dir / MODEL_FILE)

    @property
    def precision(self) -> str:
        """The arithmetic the model was trained with, used again for encoding."""
        return resolve_precision(self.train_config.precision or "auto", self.device)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(h, w, c)`` of the images the model was trained on (what every image is decoded to)."""
        shape = self.info.get("dataset", {}).get("image_shape") or (
            *self.model_config.input_size, self.model_config.in_channels)
        return tuple(int(s) for s in shape)  # type: ignore[return-value]

    @property
    def encoder(self) -> Encoder:
        """The run's model and how it encodes (the training arithmetic, flip averaging)."""
        return Encoder(self.model, self.model_config.bits, self.image_shape, bool(self.train_config.tta_flip),
                       self.precision, self.device, tuple(self.model_config.classes),
                       int(self.train_config.tta_translate or 0))

    def encodings_dir(self, name: str) -> Path:
        return self.run_dir / ENCODINGS_DIR / name


def open_run(run_dir: str | Path, device: str = "auto") -> Run:
    """Open a run directory written by ``hashret train`` (model on ``device``, eval mode)."""
    run_dir = Path(run_dir)
    device = resolve_device(device)
    if not (run_dir / "config.json").exists() or not (run_dir / MODEL_FILE).exists():
        raise FileNotFoundError(
            f"{run_dir} is not a trained run (needs config.json and {MODEL_FILE}): "
            "train one with `hashret train --out RUN_DIR`"
        )
    info = read_json(run_dir / "config.json")
    model, model_cfg = load_model(run_dir / MODEL_FILE, device=device)
    return Run(run_dir, model, model_cfg, TrainConfig.from_dict(info["train"]), info, device)


def load_run_dataset(run: Run, data_dir: str | None = None,
                     cache_dir: str | Path | None = None) -> DatasetSplits:
    """Load the dataset the run was trained on (``data_dir`` overrides where it lives now)."""
    cfg = run.train_config
    return load_dataset(cfg.dataset, data_dir or cfg.data_dir, cache_dir=cache_dir, seed=cfg.seed,
                        test_fraction=cfg.test_fraction, on_bad_image=cfg.on_bad_image,
                        size=cfg.image_size, class_names=cfg.class_names)


def encode_collection(run: Run, images: ImageArray, *, split: str, source: str,
                      progress: bool = False, batch_size: int = 500) -> EncodedSet:
    """Encode an :class:`ImageArray` with the run's model (no training augmentation)."""
    enc = run.encoder.encode(images.images, batch_size=batch_size, progress=progress)
    meta = {
        "bits": run.model_config.bits, "threshold": float(run.model.threshold),
        "feature_dim": int(enc.features.shape[1]), "model_sha256": run.model_sha256,
        "source": source, "split": split, "tta_flip": bool(run.train_config.tta_flip),
        "tta_translate": int(run.train_config.tta_translate or 0), "precision": run.precision,
        "classes": list(images.classes),
    }
    return EncodedSet(enc.codes, enc.features.astype(np.float32),
                      images.labels.astype(np.int64), np.asarray(images.ids).astype(str), meta)


def encode_run(run: Run, *, data: DatasetSplits | None = None, data_dir: str | None = None,
               cache_dir: str | Path | None = None, progress: bool = False) -> dict[str, EncodedSet]:
    """Encode the database (training set) and queries (test set) into ``RUN/encodings``."""
    if data is None:
        data = load_run_dataset(run, data_dir, cache_dir)
    out = {}
    for name, split in SPLITS.items():
        images = getattr(data, split)
        enc = encode_collection(run, images, split=split, source=data.source, progress=progress)
        save_encoded(run.encodings_dir(name), enc)
        out[name] = enc
    return out


def encodings_state(run: Run) -> str:
    """``"current"`` when ``RUN/encodings`` holds both splits encoded by the run's model as it is
    now, ``"stale"`` when they were encoded by an earlier model (the run was trained again),
    ``"missing"`` otherwise."""
    metas = [run.encodings_dir(name) / "meta.json" for name in SPLITS]
    if not all(m.exists() for m in metas):
        return "missing"
    sha = run.model_sha256
    return "current" if all(read_json(m).get("model_sha256") == sha for m in metas) else "stale"


def load_run_encodings(run: Run) -> dict[str, EncodedSet]:
    """The run's saved encodings, checked against its current model."""
    sha = run.model_sha256
    out = {}
    for name in SPLITS:
        enc = load_encoded(run.encodings_dir(name))
        if enc.meta.get("model_sha256") != sha:
            raise ValueError(
                f"{run.encodings_dir(name)} was encoded by another model than "
                f"{run.run_dir / MODEL_FILE}: re-run `hashret encode {run.run_dir}`"
            )
        out[name] = enc
    return out


def evaluate_run(run: Run, *, k: int = 1000, protocol: str | None = None,
                 encodings: dict[str, EncodedSet] | None = None) -> dict[str, Any]:
    """Evaluate the run's encodings under its dataset's protocol; writes report + plot.

    Returns the report dict (``protocol``, ``bits``, ``map@k``, ``map``, ``precision@k``,
    ``precision@radius2``, ``train_seconds``, ...).
    """
    enc = encodings or load_run_encodings(run)
    db, q = enc["database"], enc["queries"]
    proto = get_protocol(protocol or run.train_config.dataset)
    if k != proto.k:
        proto = dataclasses.replace(proto, k=k)
    results = evaluate_codes(q.codes, q.labels, db.codes, db.labels,
                             bits=run.model_config.bits, protocol=proto)
    history_file = run.run_dir / "history.json"
    history = read_json(history_file) if history_file.exists() else {}
    results |= {
        "method": run.model_config.method, "backbone": run.model_config.backbone,
        "dataset": run.info.get("dataset", {}), "seed": run.train_config.seed,
        "epochs": run.train_config.epochs, "best_epoch": history.get("best_epoch"),
        "train_seconds": history.get("train_seconds"), "tta_flip": run.train_config.tta_flip,
        "model_sha256": db.meta.get("model_sha256"),
    }
    write_report(results, run.run_dir / REPORT_FILE)
    pk = results["precision@k"]
    plot_precision_at_k({f"{run.model_config.method} {run.model_config.bits} bits": pk},
                        run.run_dir / PLOT_FILE,
                        title=f"precision@k, {proto.name} ({len(q)} queries, {len(db)} database)",
                        ideal=ideal_precision_at_k(q.labels, db.labels, range(1, len(pk) + 1)))
    return results


def search_images(run: Run, images: np.ndarray, *, k: int = 10,
                  database: EncodedSet | None = None) -> list[list[Hit]]:
    """Hamming top-``k`` over the run's database for ``uint8[q, h, w, c]`` query images.

    Returns per query a list of :class:`hashret.hits.Hit` dicts (``id``: the database row,
    ``source``: the dataset's reference of the image), ties broken by database order.
    """
    db = database or load_run_encodings(run)["database"]
    enc = run.encoder.encode(images)
    index = FlatIndex(run.model_config.bits)
    index.add(db.codes)
    dist, idx = index.search(enc.codes, k)
    classes = db.meta.get("classes") or list(run.model_config.classes)
    return [[make_hit(r + 1, i, d, None, db.labels[i], classes[int(db.labels[i])], db.ids[i])
             for r, (i, d) in enumerate(zip(row_i, row_d, strict=True))]
            for row_i, row_d in zip(idx, dist, strict=True)]


def read_query_image(run: Run, path: str | Path, notes: list[str] | None = None) -> np.ndarray:
    """Decode one image file for ``run``'s model: ``uint8[1, h, w, c]``; ``notes`` gets what was
    changed to fit it (:func:`hashret.data.image.image_to_array`)."""
    return run.encoder.read(path, notes)[None]
