"""Learned hash heads on a frozen pretrained backbone: ``hashret train --freeze-backbone`` at
several bit lengths and input sizes, each evaluated with ``hashret evaluate``.

Every run is the ``hashret train`` and ``hashret evaluate`` command lines themselves, run
in-process (:func:`hashret.cli.main`), with one change: the frozen backbone's forward pass is
looked up instead of recomputed. A frozen backbone's features do not depend on the head,
the bit length or the method, so for each input side the features of every database image
and query image, plain and mirrored, are computed once (:func:`compute_store`, cached under
``--cache``, not committed) and

* training's :func:`hashret.training.frozen.cache_features` returns the training and
  validation images' rows of the plain database features;
* evaluation's :meth:`hashret.encoder.Encoder.encode` runs only the run's own head on the
  stored plain and mirrored features (``--tta-flip``: latent and features averaged over
  image and mirror, as :func:`hashret.encode.encode_images` does), then ``hashret evaluate``
  writes and scores the encodings as usual.

The features are those :func:`hashret.encode.encode_images` computes (eval mode, the run's
precision, batches of 500); ``verify`` compares them with what the unpatched commands give.

The DLBHC protocol on the CIFAR-10 JPEG copy: queries = the 10,000 test images, database =
the 50,000 training images, mAP@1000 (DLBHC convention) and full mAP, Hamming ties by
database order. Model selection is by the validation split (5% of the training set) only.

    python benchmarks/pretrained_heads.py --bits 12 32 48 64 --input-sizes 96
    python benchmarks/pretrained_heads.py --bits 48 --input-sizes 64 128 160 \\
        --results lite0-heads-sides-cifar10-cpu2
    python benchmarks/pretrained_heads.py --method triplet --bits 16 64 --input-sizes 96 \\
        --results lite0-triplet-cifar10-cpu2
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import os
import platform
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DATA = "/work/shared/data/cifar10-jpeg/cifar10-jpeg.zip"
CACHE = ROOT / ".cache" / "pretrained-heads"


@dataclass
class FeatureStore:
    """A frozen backbone's features of a dataset, computed once.

    Attributes:
        db, db_flip: ``float32[n_db, d]`` features of the training images (the database) and of
            their mirror images, in the dataset's training order.
        q, q_flip: ``float32[n_q, d]`` the same for the test images (the queries).
        side: the model's input side in px; precision: ``fp32`` or ``bf16``.
        seconds: time spent computing them (0 when read from the cache).
    """

    db: np.ndarray
    db_flip: np.ndarray
    q: np.ndarray
    q_flip: np.ndarray
    side: int
    precision: str
    seconds: float = 0.0

    def images_per_s(self) -> float:
        """Backbone forward passes per second while computing the store (nan if cached)."""
        n = 2 * (len(self.db) + len(self.q))
        return n / self.seconds if self.seconds else float("nan")


def row_keys(images: np.ndarray) -> list[bytes]:
    """One 16-byte digest per ``uint8[n, h, w, c]`` image (to find an image's row)."""
    return [hashlib.blake2b(np.ascontiguousarray(im).tobytes(), digest_size=16).digest() for im in images]


def train_argv(a: argparse.Namespace, side: int, bits: int, out: Path) -> list[str]:
    """The ``hashret train`` command line of one run."""
    argv = ["train", "--dataset", a.dataset, "--method", a.method, "--bits", str(bits), "--out", str(out),
            "--backbone", a.backbone, "--freeze-backbone", "--val-fraction", str(a.val_fraction),
            "--seed", str(a.seed), "--threads", str(a.threads), "--overwrite", "--quiet"]
    if a.data_dir:
        argv += ["--data-dir", a.data_dir]
    if a.pretrained:
        argv += ["--pretrained"]
    if side:
        argv += ["--input-size", str(side)]
    if a.epochs:
        argv += ["--epochs", str(a.epochs)]
    if a.tta_flip is not None:
        argv += ["--tta-flip" if a.tta_flip else "--no-tta-flip"]
    return argv


def _config_and_data(argv: list[str]) -> tuple[Any, Any, Any]:
    """(resolved TrainConfig, DatasetSplits, ModelConfig) that ``hashret train argv`` would use."""
    from hashret.cli import build_parser
    from hashret.data import load_dataset
    from hashret.training import TrainConfig
    from hashret.training.loop import make_model_config

    args = build_parser().parse_args(argv)
    cfg = TrainConfig(**{f: getattr(args, f) for f in TrainConfig.__dataclass_fields__ if hasattr(args, f)})
    data = load_dataset(cfg.dataset, cfg.data_dir, seed=cfg.seed, test_fraction=cfg.test_fraction,
                        on_bad_image=cfg.on_bad_image, size=cfg.image_size, class_names=cfg.class_names)
    cfg = cfg.resolved(data.natural)
    return cfg, data, make_model_config(cfg, data)


def store_path(cache: Path, cfg: Any, data: Any, model_cfg: Any) -> Path:
    """Where the features of this backbone, input, arithmetic and dataset are cached (the head, the
    method and the bit length do not change them)."""
    m = model_cfg.to_dict()
    key = {"source": data.source, "n": (len(data.train), len(data.test)), "pretrained": cfg.pretrained,
           "precision": cfg.precision, "seed": cfg.seed,
           **{k: m[k] for k in ("backbone", "in_channels", "input_size", "mean", "std")}}
    tag = hashlib.sha256(repr(sorted(key.items())).encode()).hexdigest()[:12]
    return cache / f"{cfg.dataset}-{cfg.backbone}-{model_cfg.input_size[0]}px-{cfg.precision}-{tag}.npz"


def compute_store(argv: list[str], cache: Path | None) -> tuple[FeatureStore, Any]:
    """The backbone features of ``hashret train argv``'s dataset (read from / written to ``cache``).

    Returns the store and the dataset. The model is built and loaded as training builds it
    (:func:`hashret.models.build_model`, :func:`hashret.models.load_pretrained`); features are
    :func:`hashret.encode.encode_images`'s, without flip averaging, for the images and their
    mirror images.
    """
    import torch

    from hashret.encode import encode_images
    from hashret.models import build_model, load_pretrained

    cfg, data, model_cfg = _config_and_data(argv)
    side = model_cfg.input_size[0]
    path = None if cache is None else store_path(cache, cfg, data, model_cfg)
    if path is not None and path.exists():
        z = np.load(path)
        return FeatureStore(z["db"], z["db_flip"], z["q"], z["q_flip"], side, cfg.precision), data
    torch.manual_seed(cfg.seed)  # as training seeds before building the model
    model = build_model(model_cfg)
    if cfg.pretrained:
        load_pretrained(model.backbone, model_cfg.backbone, cfg.pretrained)
    elif hasattr(model.backbone, "init_from_data"):
        raise ValueError(f"backbone {cfg.backbone} initialises from the training data when not pretrained: "
                         "its features cannot be computed ahead of training; pass a pretrained backbone "
                         "or one without a data-initialised stem (lenet, resnet18-cifar, ...)")
    model.eval()
    t0 = time.perf_counter()
    feats = {}
    for name, images in (("db", data.train.images), ("q", data.test.images)):
        for flip in (False, True):
            x = images[:, :, ::-1] if flip else images  # x.flip(3) in NCHW, as tta_views mirrors
            enc = encode_images(model, np.ascontiguousarray(x), batch_size=500, device=cfg.device,
                                precision=cfg.precision, progress=True)
            feats[name + ("_flip" if flip else "")] = enc.features.astype(np.float32)
            print(f"features {name}{' mirrored' if flip else ''}: {len(x)} images at {side} px "
                  f"({time.perf_counter() - t0:.0f} s so far)", flush=True)
    store = FeatureStore(feats["db"], feats["db_flip"], feats["q"], feats["q_flip"], side, cfg.precision,
                         time.perf_counter() - t0)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, **feats)
    return store, data


@contextlib.contextmanager
def lookup_backbone(store: FeatureStore, data: Any) -> Iterator[None]:
    """Within the block, training's feature caching and the Encoder's backbone pass read ``store``."""
    import torch

    from hashret.codes import encode as pack_activations
    from hashret.device import autocast
    from hashret.encode import Encoded

    rows = {k: ("db", i) for i, k in enumerate(row_keys(data.train.images))}
    rows |= {k: ("q", i) for i, k in enumerate(row_keys(data.test.images)) if k not in rows}

    def find(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``uint8[n, h, w, c]`` -> (plain, mirrored) ``float32[n, d]`` features."""
        try:
            where = [rows[k] for k in row_keys(images)]
        except KeyError:
            raise ValueError("an image is not in the feature store's dataset") from None
        plain = np.stack([getattr(store, s)[i] for s, i in where])
        mirrored = np.stack([getattr(store, s + "_flip")[i] for s, i in where])
        return plain, mirrored

    def cache_features(model: Any, images: torch.Tensor, *, device: str, precision: str,
                       **_: Any) -> torch.Tensor:
        if precision != store.precision:
            raise ValueError(f"store computed in {store.precision}, training asks {precision}")
        plain, _mirrored = find(images.permute(0, 2, 3, 1).numpy())
        return torch.from_numpy(plain).to(device)

    @torch.no_grad()
    def encode(self: Any, images: np.ndarray, *, batch_size: int = 500, progress: bool = False) -> Encoded:
        if self.tta_translate or self.precision != store.precision:
            raise ValueError(f"the feature store holds plain and mirrored features at {store.precision} "
                             f"only (asked: translate {self.tta_translate}, {self.precision})")
        plain, mirrored = find(images)
        model = self.model.eval()
        feats, lats = [], []
        for i in range(0, len(images), batch_size):
            f = torch.from_numpy(plain[i:i + batch_size]).to(self.device)
            with autocast(self.device, self.precision):
                z = model.forward_latent(f).float()
                if self.tta_flip:
                    f2 = torch.from_numpy(mirrored[i:i + batch_size]).to(self.device)
                    z = (z + model.forward_latent(f2).float()) / 2
                    f = (f + f2) / 2
            feats.append(f.float().cpu().numpy())
            lats.append(z.float().cpu().numpy())
        latent = np.concatenate(lats)
        return Encoded(pack_activations(latent, self.threshold), np.concatenate(feats), latent)

    with mock.patch("hashret.training.loop.cache_features", cache_features), \
            mock.patch("hashret.encoder.Encoder.encode", encode):
        yield


def run_one(a: argparse.Namespace, store: FeatureStore, data: Any, side: int, bits: int) -> dict[str, Any]:
    """Train and evaluate one head; returns its results row."""
    from hashret.cli import main as hashret
    from hashret.io import read_json

    out = Path(a.out) / f"{a.method}{bits}-{side or 'native'}px"
    argv = train_argv(a, side, bits, out)
    shutil.rmtree(out / "encodings", ignore_errors=True)  # --overwrite keeps a former run's encodings
    load0 = os.getloadavg()
    with lookup_backbone(store, data):
        if hashret(argv) != 0:
            raise RuntimeError(f"hashret {' '.join(argv)} failed")
        evaluate = ["evaluate", str(out), "--threads", str(a.threads), "--quiet"]
        if hashret(evaluate) != 0:
            raise RuntimeError(f"hashret {' '.join(evaluate)} failed")
    hist = read_json(out / "history.json")
    report = read_json(out / "report.json")
    best = hist["epochs"][hist["best_epoch"] - 1]
    return {
        "method": a.method, "input_side": side, "bits": bits, "run_dir": str(out),
        "command": "hashret " + " ".join(argv), "epochs": len(hist["epochs"]),
        "best_epoch": hist["best_epoch"],
        "val_acc": best.get("val_acc"), "val_map": best.get("val_map"),
        "head_train_seconds": hist["train_seconds"],
        "map@1000": report["map@1000"], "map": report["map"],
        "precision@radius2": report.get("precision@radius2"),
        "load_average_before": [round(x, 2) for x in load0],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }


def verify(a: argparse.Namespace, store: FeatureStore, data: Any, n: int = 600) -> dict[str, float]:
    """Max |difference| between the store and unpatched training / encoding on ``n`` images."""
    import torch

    from hashret.models import build_model, load_pretrained
    from hashret.training.frozen import cache_features
    from hashret.training.loop import to_tensor

    cfg, _, model_cfg = _config_and_data(train_argv(a, store.side, a.bits[0], Path(a.out) / "verify"))
    torch.manual_seed(cfg.seed)
    model = build_model(model_cfg)
    if cfg.pretrained:
        load_pretrained(model.backbone, model_cfg.backbone, cfg.pretrained)
    model.to(memory_format=torch.channels_last)  # as training does
    x = data.train.images[:n]  # training passes its own split in batches of 256: bf16 rounding differs
    trained = cache_features(model, to_tensor(x), device=cfg.device, precision=cfg.precision).numpy()
    return {"images": len(x), "max_abs_diff_training_features": float(np.abs(trained - store.db[:n]).max()),
            "max_abs_feature": float(np.abs(store.db[:n]).max())}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="cifar10")
    p.add_argument("--data-dir", default=DATA)
    p.add_argument("--backbone", default="efficientnet-lite0")
    p.add_argument("--no-pretrained", dest="pretrained", action="store_false")
    p.add_argument("--method", default="dlbhc")
    p.add_argument("--bits", type=int, nargs="+", default=[12, 32, 48, 64])
    p.add_argument("--input-sizes", type=int, nargs="+", default=[96], help="0: the backbone's default")
    p.add_argument("--epochs", type=int, help="default: hashret train's for the dataset")
    p.add_argument("--tta-flip", action=argparse.BooleanOptionalAction,
                   help="passed to hashret train (default: its own, on for natural images)")
    p.add_argument("--val-fraction", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=str(ROOT / "runs" / "lite0-heads"), help="folder of the run directories")
    p.add_argument("--cache", default=str(CACHE), help="feature store folder ('' : no cache)")
    p.add_argument("--results", default="lite0-heads-cifar10-cpu2", help="results file name (no suffix)")
    p.add_argument("--results-dir", default=str(RESULTS))
    p.add_argument("--note", action="append", default=[], help="a paragraph to add under the tables")
    p.add_argument("--verify", type=int, default=600, help="images to check against training's own "
                                                             "feature pass (0: skip)")
    a = p.parse_args(argv)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    rows, stores = [], []
    for side in a.input_sizes:
        store, data = compute_store(train_argv(a, side, a.bits[0], Path(a.out) / "store"),
                                    Path(a.cache) if a.cache else None)
        info = {"input_side": store.side, "precision": store.precision, "seconds": round(store.seconds, 1),
                "forward_passes_per_s": round(store.images_per_s(), 1) if store.seconds else None,
                "database": len(store.db), "queries": len(store.q)}
        if a.verify:
            info["verify"] = verify(a, store, data, a.verify)
        stores.append(info)
        print(info, flush=True)
        for bits in a.bits:
            rows.append(run_one(a, store, data, side, bits))
            print({k: rows[-1][k] for k in ("method", "input_side", "bits", "val_acc", "val_map",
                                             "head_train_seconds", "map@1000", "map")}, flush=True)
    res = {
        "benchmark": "pretrained_heads",
        "command": "python benchmarks/pretrained_heads.py "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "shared": True, "load_average_start": [round(x, 2) for x in load0],
                    "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "protocol": {"dataset": a.dataset, "queries": "test split", "database": "training split",
                     "metric": "mAP@1000 (DLBHC: AP over the relevant items found in the top 1000) and "
                               "full mAP; Hamming ties by database order",
                     "selection": f"checkpoint by the method's validation statistic on {a.val_fraction:.0%} "
                                  "of the training set", "seed": a.seed, "threads": a.threads},
        "backbone": a.backbone, "pretrained": a.pretrained, "feature_stores": stores, "rows": rows,
        "notes": a.note,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    write_results(Path(a.results_dir) / a.results, res, markdown)
    return 0


def write_results(stem: Path, res: dict[str, Any], render: Any) -> None:
    """``STEM.json`` (``res``) and ``STEM.md`` (``render(res)``, also printed)."""
    from hashret.io import write_json

    stem.parent.mkdir(parents=True, exist_ok=True)
    write_json(stem.with_suffix(".json"), res)
    text = render(res)
    stem.with_suffix(".md").write_text(text)
    print(text)


def markdown(res: dict[str, Any]) -> str:
    """The results as a Markdown table with the protocol."""
    m, p = res["machine"], res["protocol"]
    lines = [
        f"# Hash heads trained on frozen {res['backbone']} features ({p['dataset']})", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, shared with other jobs (load average "
        f"{m['load_average_start']} at the start, {m['load_average_end']} at the end); {res['date']}; "
        f"{res['seconds']} s in all. Command: `{res['command']}`.", "",
        f"Protocol: queries = the {p['dataset']} {p['queries']}, database = the {p['database']}, "
        f"{p['metric']}. {p['selection']}; seed {p['seed']}; torch threads {p['threads']}. Each row is "
        "`hashret train --freeze-backbone` then `hashret evaluate` (command in the JSON) with the frozen "
        "backbone's forward pass looked up in features computed once per input side "
        "(benchmarks/pretrained_heads.py explains), so the head time below excludes the backbone.", "",
        "Feature stores (plain + mirrored images, database + queries; the training features are the "
        "database's plain rows):", "",
        "| input px | precision | forward passes | seconds | passes/s | check vs training's own pass |",
        "|---:|---|---:|---:|---:|---|",
    ]
    for s in res["feature_stores"]:
        v = s.get("verify")
        check = (f"max abs diff {v['max_abs_diff_training_features']:.3g} on {v['images']} images "
                 f"(features up to {v['max_abs_feature']:.3g})") if v else "not run"
        secs, rate = (s["seconds"], s["forward_passes_per_s"]) if s["seconds"] else ("cached", "")
        passes = 2 * (s["database"] + s["queries"])
        lines.append(f"| {s['input_side']} | {s['precision']} | {passes:,} | {secs} "
                     f"| {rate} | {check} |")
    lines += ["", "| method | input px | bits | epochs (best) | val acc | val mAP | head training s "
                  "| mAP@1000 | full mAP | P@r<=2 | load before -> after |",
              "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---|"]

    def f4(x: float | None) -> str:
        return "" if x is None else f"{x:.4f}"

    for r in res["rows"]:
        lines.append(f"| {r['method']} | {r['input_side']} | {r['bits']} | {r['epochs']} ({r['best_epoch']}) "
                     f"| {f4(r['val_acc'])} | {f4(r['val_map'])} | {r['head_train_seconds']} "
                     f"| {f4(r['map@1000'])} | {f4(r['map'])} | {f4(r['precision@radius2'])} "
                     f"| {r['load_average_before'][0]} -> {r['load_average_after'][0]} |")
    n = res["feature_stores"][0]["database"]
    passes = [f"{n:,} / {s['forward_passes_per_s']:.0f} = {n / s['forward_passes_per_s']:.0f} s at "
              f"{s['input_side']} px" for s in res["feature_stores"] if s["seconds"]]
    lines += ["", "Head training s: the training loop alone, the head on looked-up features. The plain "
                  "command also runs the frozen backbone once over the training images"
              + (": about " + "; ".join(passes) + " at this run's forward-pass rate." if passes
                 else " (not timed here: the features came from the cache).")]
    lines += [x for n in res.get("notes", []) for x in ("", n)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
