"""Learned vs generic binary codes at equal bits, on the same frozen backbone features.

Where does a trained hash layer earn its keep? On one set of frozen EfficientNet-Lite0
features of CIFAR-10 (the feature store of ``benchmarks/pretrained_heads.py``: each image
encoded as the mean of its own and its mirror image's features, bf16, the features the DLBHC
runs' encodings and re-rank use), at each bit length:

* **DLBHC head**: the codes of a ``hashret train --freeze-backbone`` run (its
  ``encodings/``, written by ``pretrained_heads.py`` through ``hashret evaluate``);
* **ITQ**, **PCA-sign** (what vector databases' binary quantisation does, after centring and
  PCA), **LSH** (random Gaussian directions): :func:`hashret.unsupervised.fit_projection`
  fitted on the database features, no labels;
* **float features**: exact ranking by Euclidean distance of the 1280-d features, and by
  cosine (Euclidean after L2 normalisation): the ceiling of the re-rank;

each ranked by Hamming distance alone and with the float re-rank (hierarchical search,
:class:`hashret.search.HierarchicalSearcher`): the top ``--candidates`` by Hamming distance
(ties by database order) re-ordered by the Euclidean distance of the features, and the same
with the pool widened to every item tied with the ``N``-th (``ties=True``: trained codes
collide).

The DLBHC protocol: queries = the 10,000 test images, database = the 50,000 training images,
mAP@1000 (DLBHC: AP over the relevant items found in the top 1000; ties by database order);
full mAP for the Hamming rankings.

    python benchmarks/learned_vs_generic.py --runs runs/lite0-heads --bits 12 32 48 64
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pretrained_heads  # noqa: E402
from _machine import cpu_name  # noqa: E402
from pretrained_hash import euclidean_top, map_at_1000  # noqa: E402

GENERIC = ("itq", "pca-sign", "lsh")


def hamming_rows(name: str, bits: int, qc: np.ndarray, dc: np.ndarray, q: np.ndarray, db: np.ndarray,
                 ql: np.ndarray, dl: np.ndarray, candidates: int) -> dict[str, Any]:
    """mAP@1000 and full mAP of one set of codes by Hamming distance, and mAP@1000 re-ranked.

    ``qc``/``dc``: ``uint8[n, ceil(bits/8)]`` packed codes; ``q``/``db``: ``float32[n, d]``;
    ``candidates >= 1000`` (the re-ranked list is scored over its first 1000).
    """
    if candidates < 1000 or len(db) < 1000:
        raise ValueError(f"--candidates {candidates} and the database ({len(db)} items) must both be "
                         "at least 1000: mAP@1000 scores the re-ranked top 1000")
    from hashret.eval import evaluate_codes, get_protocol
    from hashret.index import create_index
    from hashret.search import HierarchicalSearcher

    t = time.perf_counter()
    ham = evaluate_codes(qc, ql, dc, dl, bits=bits, protocol=get_protocol("cifar10"))
    row: dict[str, Any] = {"codes": name, "bits": bits, "map@1000": round(float(ham["map@1000"]), 4),
                           "map": round(float(ham["map"]), 4)}
    index = create_index("popcount", bits)
    index.add(dc)
    searcher = HierarchicalSearcher(index, db)
    for key, ties in (("map@1000_rerank", False), ("map@1000_rerank_ties", True)):
        res = searcher.search(qc, q, 1000, candidates=candidates, rerank=True, ties=ties)
        ranked = np.stack([r.indices[:1000] for r in res])
        row[key] = round(map_at_1000(ranked, ql, dl), 4)
    row["seconds"] = round(time.perf_counter() - t, 1)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default=str(pretrained_heads.ROOT / "runs" / "lite0-heads"),
                   help="folder of pretrained_heads.py's run directories (dlbhc<bits>-<side>px)")
    p.add_argument("--bits", type=int, nargs="+", default=[12, 32, 48, 64])
    p.add_argument("--input-size", type=int, default=96)
    p.add_argument("--methods", nargs="+", default=list(GENERIC))
    p.add_argument("--candidates", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache", default=str(pretrained_heads.CACHE))
    p.add_argument("--results", default="learned-vs-generic-cifar10-cpu2")
    p.add_argument("--results-dir", default=str(pretrained_heads.RESULTS))
    p.add_argument("--note", action="append", default=[], help="a paragraph to add under the tables")
    a = p.parse_args(argv)
    load0 = os.getloadavg()
    t0 = time.perf_counter()
    from hashret.codes import encode
    from hashret.encodings import load_encoded
    from hashret.unsupervised import fit_projection

    # the runs' own command line finds their feature store
    ns = argparse.Namespace(dataset="cifar10", method="dlbhc", backbone="efficientnet-lite0",
                            val_fraction=0.05, seed=0, threads=1, data_dir=pretrained_heads.DATA,
                            pretrained=True, epochs=None, tta_flip=None)
    argv_ = pretrained_heads.train_argv(ns, a.input_size, a.bits[0], Path(a.runs) / "store")
    store, data = pretrained_heads.compute_store(argv_, Path(a.cache) if a.cache else None)
    db = (store.db + store.db_flip) / 2  # what encode_images returns with tta_flip
    q = (store.q + store.q_flip) / 2
    dl, ql = data.train.labels.astype(np.int64), data.test.labels.astype(np.int64)
    rows: list[dict[str, Any]] = []
    for name, qq, dd in (("float features (Euclidean)", q, db),
                         ("float features (cosine)", *(x / np.linalg.norm(x, axis=1, keepdims=True)
                                                       for x in (q, db)))):
        t = time.perf_counter()
        rows.append({"codes": name, "bits": None,
                     "map@1000": round(map_at_1000(euclidean_top(qq, dd, 1000), ql, dl), 4),
                     "seconds": round(time.perf_counter() - t, 1)})
        print(rows[-1], flush=True)
    for bits in a.bits:
        run = Path(a.runs) / f"dlbhc{bits}-{a.input_size}px"
        enc = {s: load_encoded(run / "encodings" / s) for s in ("database", "queries")}
        if not (np.array_equal(enc["database"].features, db) and np.array_equal(enc["queries"].features, q)):
            raise ValueError(f"{run}/encodings hold other features than the store: "
                             "re-run benchmarks/pretrained_heads.py")
        rows.append(hamming_rows("DLBHC head (trained, labels)", bits, enc["queries"].codes,
                                 enc["database"].codes, q, db, ql, dl, a.candidates))
        print(rows[-1], flush=True)
        for method in a.methods:
            t = time.perf_counter()
            mean, proj = fit_projection(db, method, bits, seed=a.seed)
            fit_s = time.perf_counter() - t
            dc, qc = (encode((x - mean) @ proj, threshold=0.0) for x in (db, q))
            row = hamming_rows(method, bits, qc, dc, q, db, ql, dl, a.candidates)
            rows.append(row | {"fit_s": round(fit_s, 1)})
            print(rows[-1], flush=True)
    res = {
        "benchmark": "learned_vs_generic",
        "command": "python benchmarks/learned_vs_generic.py "
                   + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "shared": True, "load_average_start": [round(x, 2) for x in load0],
                    "load_average_end": [round(x, 2) for x in os.getloadavg()]},
        "protocol": {"dataset": "CIFAR-10 (JPEG copy)", "queries": len(q), "database": len(db),
                     "metric": "mAP@1000 (DLBHC: AP over the relevant items found in the top 1000; ties by "
                               "database order); full mAP for Hamming rankings",
                     "features": f"EfficientNet-Lite0 (ImageNet weights, frozen), {a.input_size} px, "
                                 f"{store.precision}, mean of image and mirror image, 1280-d",
                     "rerank": f"top {a.candidates} by Hamming distance re-ordered by Euclidean distance of "
                               "the features; 'ties': the pool widened to every item tied with the last",
                     "seed": a.seed},
        "dlbhc_runs": str(a.runs), "rows": rows, "notes": a.note,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    pretrained_heads.write_results(Path(a.results_dir) / a.results, res, markdown)
    return 0


def markdown(res: dict[str, Any]) -> str:
    """The table with its protocol."""
    m, p = res["machine"], res["protocol"]
    lines = [
        "# Learned vs generic binary codes on the same frozen features (CIFAR-10)", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, shared with other jobs (load average "
        f"{m['load_average_start']} at the start, {m['load_average_end']} at the end); {res['date']}; "
        f"{res['seconds']} s. Command: `{res['command']}`.", "",
        f"Protocol: {p['dataset']}, queries = {p['queries']:,} test images, database = {p['database']:,} "
        f"training images, {p['metric']}. Features: {p['features']}. Re-rank: {p['rerank']}. DLBHC head: "
        f"the runs in `{res['dlbhc_runs']}` (benchmarks/results/lite0-heads-cifar10-cpu2.md: trained on the "
        "labels of 95% of the training set, frozen backbone, seed 0); ITQ / PCA-sign / LSH fitted on the "
        f"database features without labels (seed {p['seed']}).", "",
        "| codes | bits | mAP@1000 Hamming | full mAP Hamming | mAP@1000 re-ranked "
        "| mAP@1000 re-ranked, ties |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in res["rows"]:
        if r["bits"] is None:
            lines.append(f"| {r['codes']} | 1280 floats | {r['map@1000']:.4f} | | | |")
        else:
            lines.append(f"| {r['codes']} | {r['bits']} | {r['map@1000']:.4f} | {r['map']:.4f} "
                         f"| {r['map@1000_rerank']:.4f} | {r['map@1000_rerank_ties']:.4f} |")
    lines += summary(res["rows"])
    lines += [x for n in res.get("notes", []) for x in ("", n)]
    return "\n".join(lines) + "\n"


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """mAP@1000 by code and bit length: Hamming ranking / re-ranked (strict top-N pool)."""
    bits = sorted({r["bits"] for r in rows if r["bits"] is not None})
    names = list(dict.fromkeys(r["codes"] for r in rows if r["bits"] is not None))
    at = {(r["codes"], r["bits"]): r for r in rows if r["bits"] is not None}
    out = ["", "mAP@1000, Hamming ranking / with the float re-rank of the top 1000:", "",
           "| codes | " + " | ".join(f"{b} bits" for b in bits) + " |", "|---|" + "---:|" * len(bits)]
    for name in names:
        cells = [f"{at[name, b]['map@1000']:.3f} / {at[name, b]['map@1000_rerank']:.3f}" if (name, b) in at
                 else "" for b in bits]
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    for r in rows:
        if r["bits"] is None:
            out.append(f"| {r['codes']}, 1280 floats | {r['map@1000']:.3f} |" + " |" * (len(bits) - 1))
    return out


if __name__ == "__main__":
    raise SystemExit(main())
