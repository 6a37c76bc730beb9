"""Retrieval quality benchmark: train DLBHC from scratch, encode, evaluate, write results.

    python benchmarks/quality.py --dataset mnist --data-dir ../shared/data/mnist
    python benchmarks/quality.py --dataset cifar10 \
        --data-dir ../shared/data/cifar10-jpeg/cifar10-jpeg.zip --bits 48 32 12 --epochs 13 10 10
    python benchmarks/quality.py --dataset cifar10 --data-dir ... --recipe airbench94 --val-fraction 0.05

Protocol (DLBHC): queries = the 10,000 test images, database = the whole training set
(also the training data; 10% of it is held out from the gradient steps for model selection
by validation accuracy, never the test queries); mAP@1000 with AP@k normalised by the
relevant items found in the top k, Hamming ties broken by database order. Results go to
``benchmarks/results/quality-<dataset>-<machine>.{json,md}`` and a precision@k plot; the
file is rewritten after every code length, so a stopped run keeps what it finished.

Each row also records where the training time went (the epochs' batch-making, forward /
backward / optimizer and validation seconds, from ``history.json``) and the test-time
augmentations tried on the validation split alone (:func:`tta_on_validation`: its mAP and
encoding seconds per 1,000 images with no TTA, mirror, and mirror + 1 px translation).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _machine import cpu_name
from _pipeline import train_encode_evaluate

from hashret import __version__
from hashret.data import load_dataset
from hashret.encode import encode_images
from hashret.eval import plot_precision_at_k
from hashret.eval.protocol import Protocol, evaluate_codes
from hashret.io import read_json, write_json
from hashret.training import TrainConfig
from hashret.training.loop import split_validation
from hashret.training.recipes import RECIPES

#: test-time augmentations compared on the validation split: name -> (tta_flip, tta_translate)
TTA_LEVELS = {"none": (False, 0), "flip": (True, 0), "flip+translate1": (True, 1)}

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": gpu, "torch": torch.__version__, "python": platform.python_version(),
            "hashret": __version__}


def machine_tag(m: dict) -> str:
    if m["gpu"]:
        return "gpu-" + m["gpu"].split()[-1].lower()
    return f"cpu{m['cores']}"


def markdown(rows: list[dict], dataset: str, m: dict) -> str:
    lines = [
        f"# DLBHC retrieval quality on {dataset} (hashret {m['hashret']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}"
        + (f", GPU {m['gpu']}" if m["gpu"] else ", no GPU")
        + f"; training arithmetic {rows[0]['precision']}, batch {rows[0]['batch_size']}, "
        "recipes in hashret.training.recipes, "
        f"backbone {rows[0]['backbone']}, test-time flip {rows[0]['tta_flip']}"
        f"{', shift ' + str(rows[0]['tta_translate']) + ' px' if rows[0].get('tta_translate') else ''}.",
        "",
        f"Protocol: queries = the {rows[0]['n_queries']:,} test images, database = the whole "
        f"training set ({rows[0]['n_database']:,} images); "
        "mAP@1000 as the DLBHC evaluation computes it (AP@k over the relevant items found in "
        "the top 1000; a query with none scores 0), full-ranking mAP, precision within Hamming "
        "radius 2 (empty set scores 0); Hamming ties broken by database order. Trained from "
        "scratch; checkpoint = best validation accuracy on the share of the training set held "
        "out from training (column val; the test queries choose nothing).",
        "",
        "| bits | recipe | mAP@1000 | mAP (full) | P@r<=2 | P@1000 | val | val acc | epochs "
        "| train s | seed |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['bits']} | {r.get('recipe', 'sgd')} | {r['map@1000']:.4f} | {r['map']:.4f} "
            f"| {r['precision@radius2']:.4f} "
            f"| {r['precision@1000']:.4f} | {r.get('val_fraction', 0.1):.0%} | {r['val_acc']:.4f} "
            f"| {r['epochs']} "
            f"| {r['train_seconds']:.0f} | {r['seed']} |"
        )
    return "\n".join(lines) + "\n"


def row_key(r: dict) -> tuple:
    """What makes two result rows the same setting (older rows lack the newer fields)."""
    return (r["bits"], r.get("recipe", "sgd"), r["epochs"], r.get("val_fraction", 0.1),
            r.get("tta_translate") or 0)


def curve_label(r: dict) -> str:
    """The precision@k curve's name: one per :func:`row_key`."""
    bits, recipe, epochs, val, shift = row_key(r)
    return f"{bits} bits, {recipe}, {epochs} ep, val {val:.0%}" + (f", TTA shift {shift}" if shift else "")


def tta_on_validation(res, data) -> dict[str, dict[str, float]]:
    """The selected model's validation mAP (even-numbered validation items query the odd ones,
    as in training) and encoding seconds per 1,000 images at each of :data:`TTA_LEVELS`."""
    cfg = res.train_config
    _, val = split_validation(data.train, cfg.val_fraction, cfg.seed)
    if len(val.labels) < 2:
        return {}
    out = {}
    for name, (flip, shift) in TTA_LEVELS.items():
        t0 = time.perf_counter()
        enc = encode_images(res.model, val.images, tta_flip=flip, tta_translate=shift,
                            device=cfg.device, precision=cfg.precision)
        secs = time.perf_counter() - t0
        y = np.asarray(val.labels)
        rep = evaluate_codes(enc.codes[0::2], y[0::2], enc.codes[1::2], y[1::2], bits=res.model_config.bits,
                             protocol=Protocol("validation", k=len(y)), pk_max=1, workers=1)
        out[name] = {"val_map": round(float(rep["map"]), 4),
                     "encode_s_per_1000": round(1000 * secs / len(y), 2)}
    return out


def time_split(history: list[dict]) -> dict[str, float]:
    """Seconds of all epochs spent making batches, in the forward/backward/optimizer steps and
    in validation (runs from before these fields give zeros)."""
    return {k: round(sum(h.get(k, 0.0) for h in history), 1)
            for k in ("data_seconds", "step_seconds", "val_seconds")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True, choices=["mnist", "cifar10", "digits"])
    ap.add_argument("--data-dir")
    ap.add_argument("--bits", type=int, nargs="+", default=[48, 32, 12])
    ap.add_argument("--epochs", type=int, nargs="+", help="one value, or one per --bits")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--recipe", default="sgd", choices=list(RECIPES))
    ap.add_argument("--tta-translate", type=int,
                    help="encode with this test-time shift in px (default: the recipe's)")
    ap.add_argument("--runs", default="runs/bench", help="where the run directories go")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--cache-dir")
    ap.add_argument("--val-fraction", type=float, default=0.1,
                    help="share of the training set held out for choosing the checkpoint")
    a = ap.parse_args(argv)
    epochs = a.epochs or [None]
    if len(epochs) == 1:
        epochs = epochs * len(a.bits)
    if len(epochs) != len(a.bits):
        ap.error("--epochs takes one value or one per --bits")

    m = machine()
    stem = Path(a.results) / f"quality-{a.dataset}-{machine_tag(m)}"
    data = load_dataset(a.dataset, a.data_dir, cache_dir=a.cache_dir)
    old = read_json(stem.with_suffix(".json")) if stem.with_suffix(".json").exists() else {}
    # a row is one (bits, recipe, epochs, val share): a re-run of the same setting replaces it
    rows = old.get("rows", [])
    curves = old.get("curves", {})
    for bits, ep in zip(a.bits, epochs, strict=True):
        name = f"{a.dataset}-{bits}" + ("" if a.recipe == "sgd" else f"-{a.recipe}")
        if a.val_fraction != 0.1:
            name += f"-val{a.val_fraction:g}"
        if a.tta_translate:
            name += f"-tta{a.tta_translate}"
        run_dir = Path(a.runs) / name
        cfg = TrainConfig(dataset=a.dataset, data_dir=a.data_dir, bits=bits, epochs=ep, seed=a.seed,
                          recipe=a.recipe, val_fraction=a.val_fraction, tta_translate=a.tta_translate)
        print(f"== {a.dataset} {bits} bits: training", flush=True)
        res, rep, encode_s, eval_s = train_encode_evaluate(cfg, run_dir, data)
        best = res.history[res.best_epoch - 1]
        row = {
            "dataset": a.dataset, "bits": bits, "map@1000": rep["map@1000"], "map": rep["map"],
            "precision@radius2": rep["precision@radius2"], "precision@1000": rep["precision@k"][999],
            "precision@100": rep["precision@k"][99], "val_acc": best.get("val_acc"),
            "best_epoch": res.best_epoch, "epochs": res.train_config.epochs,
            "train_seconds": round(res.train_seconds, 1), "encode_seconds": round(encode_s, 1),
            "eval_seconds": round(eval_s, 1), "seed": a.seed, "backbone": res.model_config.backbone,
            "batch_size": res.train_config.batch_size, "lr": res.train_config.lr,
            "precision": res.train_config.precision, "tta_flip": res.train_config.tta_flip,
            "n_queries": rep["n_queries"], "n_database": rep["n_database"], "recipe": a.recipe,
            "momentum": res.train_config.momentum, "weight_decay": res.train_config.weight_decay,
            "val_fraction": res.train_config.val_fraction,
            "tta_translate": res.train_config.tta_translate,
            "alternate_flip": res.train_config.alternate_flip,
            "time_split": time_split(res.history), "tta_on_validation": tta_on_validation(res, data),
        }
        rows = sorted([*[r for r in rows if row_key(r) != row_key(row)], row], key=row_key)
        curves[curve_label(row)] = rep["precision@k"]
        print(f"   mAP@1000 {row['map@1000']:.4f}  mAP {row['map']:.4f}  "
              f"train {row['train_seconds']:.0f}s  (val acc {row['val_acc']:.4f}; "
              f"time {row['time_split']}; TTA on validation {row['tta_on_validation']})", flush=True)
        write_json(stem.with_suffix(".json"), {
            "benchmark": "quality", "dataset": a.dataset, "source": data.source, "machine": m,
            "protocol": rep["protocol"], "rows": rows, "curves": curves,
        })
        stem.with_suffix(".md").write_text(markdown(rows, a.dataset, m))
        plot_precision_at_k(curves, str(stem) + "-pk.png",
                            title=f"DLBHC precision@k on {a.dataset} (test queries vs training database)")
    print(stem.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
