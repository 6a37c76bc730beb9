"""DLBHC vs triplet ranking hashing on one pipeline: same data, backbone, epochs and evaluation.

    python benchmarks/methods.py --dataset mnist --data-dir ../shared/data/mnist --epochs 3
    python benchmarks/methods.py --dataset cifar10 \
        --data-dir ../shared/data/cifar10-jpeg/cifar10-jpeg.zip --epochs 3

For each code length and method: train from scratch (the dataset's default backbone and
recipe; the triplet method on class-balanced P x K batches of the same size), encode, and
evaluate under the DLBHC protocol: queries = the test images, database = the whole training
set; mAP@1000 with AP@k normalised by the relevant items found in the top k, full-ranking
mAP, Hamming ties broken by database order. 10% of the training set is held out from the
gradient steps for checkpoint selection (DLBHC: validation accuracy; triplet: validation
mAP, half the held-out images querying the other half); the test queries choose nothing.
Both methods get the same number of epochs, i.e. about the same time budget; the measured
training times are reported. Results: ``benchmarks/results/methods-<dataset>-<machine>.{json,md}``,
rewritten after every run, so a stopped benchmark keeps what it finished.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from _pipeline import train_encode_evaluate
from quality import machine, machine_tag

from hashret.data import load_dataset
from hashret.io import read_json, write_json
from hashret.losses import default_margin
from hashret.training import TrainConfig
from hashret.training.methods import get_training_method

RESULTS = Path(__file__).parent / "results"
NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10 (JPEG copy)", "digits": "digits"}


def markdown(rows: list[dict], dataset: str, m: dict, source: str) -> str:
    r0 = rows[0]
    lines = [
        f"# DLBHC vs triplet ranking hashing on {NAMES.get(dataset, dataset)} (hashret {m['hashret']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}"
        + (f", GPU {m['gpu']}" if m["gpu"] else ", no GPU")
        + f"; torch threads {m['torch_threads']}; training arithmetic {r0['precision']}; data: {source}.",
        "",
        f"Protocol (DLBHC): queries = the {r0['n_queries']:,} test images, database = the whole "
        f"training set ({r0['n_database']:,} images), encoded without augmentation; mAP@1000 as the "
        "DLBHC evaluation computes it (AP@k over the relevant items found in the top 1000; a query "
        "with none scores 0), full-ranking mAP, precision within Hamming radius 2 (an empty ball "
        "scores 0); Hamming ties broken by database order. Both methods: same backbone, recipe, "
        "batch size, augmentation and number of epochs, trained from scratch with seed 0. "
        "Checkpoint = the best epoch on 10% of the training set held out from training "
        "(DLBHC: validation accuracy; triplet: validation mAP); the test queries choose nothing. "
        "DLBHC codes: sigmoid > 0.5; triplet codes: sign of tanh (0 -> bit 0). Training time is "
        "the wall time of the training loop (validation included) on a machine shared with other "
        "jobs: compare it between the rows of one table.",
        "",
        "| method | bits | mAP@1000 | mAP (full) | P@r<=2 | selected by | epoch | epochs "
        "| train s | backbone | batch | lr | margin |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|---|---|---:|---:|",
    ]
    for r in rows:
        batch = (f"{r['classes_per_batch']}x{r['images_per_class']}" if r["classes_per_batch"]
                 else str(r["batch_size"]))
        lines.append(
            f"| {r['method']} | {r['bits']} | {r['map@1000']:.4f} | {r['map']:.4f} "
            f"| {r['precision@radius2']:.4f} | {r['select_by']} {r['select_value']:.4f} "
            f"| {r['best_epoch']} | {r['epochs']} | {r['train_seconds']:.0f} | {r['backbone']} "
            f"| {batch} | {r['lr']:g} | {r['margin'] if r['margin'] is not None else '-'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, choices=["mnist", "cifar10", "digits"])
    ap.add_argument("--data-dir")
    ap.add_argument("--bits", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--methods", nargs="+", default=["dlbhc", "triplet"])
    ap.add_argument("--epochs", type=int, help="for every run (default: the dataset's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default="runs/bench-methods", help="where the run directories go")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--cache-dir")
    ap.add_argument("--threads", type=int, help="torch CPU threads (1 is faster on a busy machine)")
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)

    m = machine()
    stem = Path(a.results) / f"methods-{a.dataset}-{machine_tag(m)}"
    data = load_dataset(a.dataset, a.data_dir, cache_dir=a.cache_dir)
    old = read_json(stem.with_suffix(".json")) if stem.with_suffix(".json").exists() else {}
    mine = {(meth, b) for meth in a.methods for b in a.bits}
    rows = [r for r in old.get("rows", []) if (r["method"], r["bits"]) not in mine]
    for bits in a.bits:
        for method in a.methods:
            run_dir = Path(a.runs) / f"{a.dataset}-{method}-{bits}"
            cfg = TrainConfig(dataset=a.dataset, data_dir=a.data_dir, method=method, bits=bits,
                              epochs=a.epochs, seed=a.seed, threads=a.threads)
            print(f"== {a.dataset} {method} {bits} bits: training", flush=True)
            res, rep, encode_s, eval_s = train_encode_evaluate(cfg, run_dir, data)
            tc = res.train_config
            select_by = get_training_method(method).select_by
            best = res.history[res.best_epoch - 1]
            row = {
                "dataset": a.dataset, "method": method, "bits": bits, "map@1000": rep["map@1000"],
                "map": rep["map"], "precision@radius2": rep["precision@radius2"],
                "precision@100": rep["precision@k"][99], "select_by": select_by,
                "select_value": best[select_by], "val_map": best.get("val_map"),
                "val_acc": best.get("val_acc"), "best_epoch": res.best_epoch, "epochs": tc.epochs,
                "train_seconds": round(res.train_seconds, 1), "encode_seconds": round(encode_s, 1),
                "eval_seconds": round(eval_s, 1), "seed": a.seed, "backbone": tc.backbone,
                "batch_size": tc.batch_size, "classes_per_batch": tc.classes_per_batch,
                "images_per_class": tc.images_per_class, "lr": tc.lr, "recipe": tc.recipe,
                "margin": None if method == "dlbhc" else (tc.margin or default_margin(bits)),
                "mining": tc.mining if method == "triplet" else None,
                "quant_weight": tc.quant_weight if method == "triplet" else None,
                "precision": tc.precision, "tta_flip": tc.tta_flip,
                "n_queries": rep["n_queries"], "n_database": rep["n_database"],
                "history": res.history,
            }
            rows = sorted([*rows, row], key=lambda r: (r["bits"], r["method"]))
            print(f"   mAP@1000 {row['map@1000']:.4f}  mAP {row['map']:.4f}  "
                  f"train {row['train_seconds']:.0f}s  ({select_by} {row['select_value']:.4f})", flush=True)
            write_json(stem.with_suffix(".json"), {
                "benchmark": "methods", "dataset": a.dataset, "source": data.source, "machine": m,
                "protocol": rep["protocol"], "rows": rows,
            })
            stem.with_suffix(".md").write_text(markdown(rows, a.dataset, m, data.source))
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
