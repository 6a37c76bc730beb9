"""How much the database order (the Hamming tie-break) moves the figures of a trained run.

    python benchmarks/tie_order.py --runs runs/bench/cifar10-48-airbench-val0.05 ... [--shuffles 5]

The DLBHC evaluation breaks Hamming ties by database order. Trained codes collide (thousands
of images share a code), so inside a tied bucket the order decides which items come first.
CIFAR-10's own files list the training images in a mixed class order; an image-folder copy
(such as the JPEG copy used here) lists them class by class, so each bucket shows the
training images of *earlier classes* that share the code first. This re-evaluates a run's
saved encodings with the database as stored and after seeded random permutations of it
(the codes, labels and metric are unchanged: only the tie order differs), and writes
``benchmarks/results/tie-order-<machine>.{json,md}``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from _machine import cpu_name

from hashret.encodings import load_encoded
from hashret.eval import evaluate_codes, get_protocol
from hashret.io import read_json, write_json

RESULTS = Path(__file__).parent / "results"
KS = (1, 10, 100, 1000)


def evaluate_order(q, db, perm: np.ndarray | None, protocol: str) -> dict:
    codes, labels = (db.codes, db.labels) if perm is None else (db.codes[perm], db.labels[perm])
    rep = evaluate_codes(q.codes, q.labels, codes, labels, bits=int(db.meta["bits"]),
                         protocol=get_protocol(protocol))
    return {"map@1000": rep["map@1000"], "map": rep["map"],
            **{f"p@{k}": rep["precision@k"][k - 1] for k in KS}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="trained and encoded run directories")
    ap.add_argument("--shuffles", type=int, default=5, help="seeded permutations of the database")
    ap.add_argument("--results", default=str(RESULTS))
    a = ap.parse_args(argv)
    rows = []
    for run in map(Path, a.runs):
        q, db = load_encoded(run / "encodings" / "queries"), load_encoded(run / "encodings" / "database")
        protocol = read_json(run / "report.json")["protocol"]["name"]
        t0 = time.perf_counter()
        stored = evaluate_order(q, db, None, protocol)
        shuffled = [evaluate_order(q, db, np.random.default_rng(s).permutation(len(db.codes)), protocol)
                    for s in range(a.shuffles)]
        mean = {k: float(np.mean([r[k] for r in shuffled])) for k in stored}
        std = {k: float(np.std([r[k] for r in shuffled])) for k in stored}
        labels = np.asarray(db.labels)
        runs_of_class = int(1 + np.count_nonzero(labels[1:] != labels[:-1]))
        rows.append({"run": run.name, "bits": int(db.meta["bits"]), "protocol": protocol,
                     "n_database": len(db.codes), "n_queries": len(q.codes),
                     "database_label_runs": runs_of_class, "stored": stored,
                     "shuffled_mean": mean, "shuffled_std": std, "seconds": time.perf_counter() - t0})
        print(f"{run.name}: stored order mAP@1000 {stored['map@1000']:.4f} P@1 {stored['p@1']:.4f}; "
              f"shuffled {mean['map@1000']:.4f} +- {std['map@1000']:.4f}, P@1 {mean['p@1']:.4f}", flush=True)
    m = {"cpu": cpu_name(), "shuffles": a.shuffles, "command": "python " + " ".join(sys.argv)}
    stem = Path(a.results) / "tie-order-cpu2"
    write_json(stem.with_suffix(".json"), {"benchmark": "tie_order", "machine": m, "rows": rows})
    lines = [
        "# Hamming ties: the database as stored vs randomly ordered",
        "",
        f"Each run's saved encodings (queries = test set, database = training set, {KS[-1]}-item "
        "lists, DLBHC mAP@1000 convention) evaluated twice: ties broken by the database order "
        f"as stored, and by {a.shuffles} seeded random permutations of the database (mean +- std). "
        "'label runs' counts the blocks of equal labels in the stored order (10 = sorted by "
        "class). Codes, labels and metric are the same; only the tie order differs. "
        f"`{m['command']}`",
        "",
        "| run | bits | label runs | order | mAP@1000 | mAP (full) | P@1 | P@10 | P@100 | P@1000 |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    keys = ("map@1000", "map", *[f"p@{k}" for k in KS])
    for r in rows:
        stored = " | ".join(f"{r['stored'][k]:.4f}" for k in keys)
        shuffled = " | ".join(f"{r['shuffled_mean'][k]:.4f} +- {r['shuffled_std'][k]:.4f}" for k in keys)
        head = f"| {r['run']} | {r['bits']} | {r['database_label_runs']} |"
        lines += [f"{head} stored | {stored} |", f"{head} shuffled | {shuffled} |"]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
