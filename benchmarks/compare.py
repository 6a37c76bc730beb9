"""The papers' comparison: shallow hashing baselines against DLBHC, same data, same protocol.

    python benchmarks/compare.py --data-root ../shared/data --deep-runs runs/bench
    python benchmarks/compare.py --dataset mnist --inputs pixels --no-deep   # no trained runs

Runs LSH, SH, ITQ, ITQ-CCA and KSH (:mod:`hashret.baselines`) on MNIST and CIFAR-10 at 12,
32 and 48 bits, each on two inputs:

* ``pixels``: raw pixels scaled to [0, 1]; pixel vectors longer than 1,024 values
  (CIFAR-10's 3,072, not MNIST's 784) are first reduced to ``--pixel-pca`` (512) principal
  components, fitted on the training set, so that the baselines fit in minutes on 2 cores;
* ``deep``: the float features (the fc7 role) of the trained 48-bit DLBHC run, at every
  code length.

Protocol (DLBHC): the baselines are fitted on the training set, which is also the retrieval
database; the 10,000 test images are the queries; mAP@1000 with AP@k normalised by the
relevant items found in the top 1000, Hamming ties broken by database order
(:func:`hashret.eval.evaluate_codes`). Supervised baselines see the training labels: all of
them for ITQ-CCA, a labelled subset of 2,000 for KSH (as in its paper).

The DLBHC rows are read from trained run directories under ``--deep-runs``: ``DATASET-BITS``
or ``DATASET-BITS-RECIPE`` with ``report.json`` and ``encodings/`` (``make bench-mnist`` and
``make bench-cifar10`` write them to ``runs/bench/``); where several exist for one code
length, the one with the best validation accuracy is used (as the README does). Their
codes are evaluated again here with the same code as the baselines'.

Writes ``benchmarks/results/compare-<dataset>-<machine>.{json,md}`` and
``compare-<dataset>-<machine>-pk.png`` (precision@k for k = 100..1000 at 48 bits). The files
are rewritten after every row, so a stopped run keeps what it finished; ``--resume`` skips
the rows already in the JSON file.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _machine import cpu_name

from hashret import __version__
from hashret.baselines import BASELINES, PCAReducer, create_baseline, pixel_features
from hashret.data import load_dataset
from hashret.encodings import load_encoded
from hashret.eval import evaluate_codes, get_protocol
from hashret.io import atomic_write, read_json, write_json

RESULTS = Path(__file__).parent / "results"
DATASETS = ("mnist", "cifar10")
NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10 (JPEG copy)"}
METHODS = ("ksh", "itq-cca", "itq", "sh", "lsh")  # the order of the DLBHC table
LABELS = {"dlbhc": "DLBHC", "ksh": "KSH", "itq-cca": "ITQ-CCA", "itq": "ITQ", "sh": "SH", "lsh": "LSH"}
INPUTS = {"pixels": "raw pixels", "deep": "DLBHC float features"}
PIXEL_PCA_ABOVE = 1024
PK_SHOWN = list(range(100, 1001, 100))
PLOT_BITS = 48


def data_path(root: Path, dataset: str) -> Path:
    """Where ``--data-root`` keeps a dataset (the layout of ../shared/data)."""
    if dataset == "mnist":
        return root / "mnist"
    for candidate in (root / "cifar10-jpeg" / "cifar10-jpeg.zip", root / "cifar-10-batches-py"):
        if candidate.exists():
            return candidate
    return root / "cifar10-jpeg" / "cifar10-jpeg.zip"


def machine() -> dict[str, Any]:
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "numpy": np.__version__,
            "python": platform.python_version(), "hashret": __version__}


# ------------------------------------------------------------------ deep runs
def best_val_acc(run: Path) -> float:
    history = read_json(run / "history.json")
    epochs = history["epochs"]
    return float(epochs[int(history.get("best_epoch", len(epochs))) - 1]["val_acc"])


def select_deep_run(root: Path, dataset: str, bits: int) -> Path:
    """The run for ``dataset`` at ``bits`` under ``root`` with the best validation accuracy.

    Raises:
        FileNotFoundError: none there, saying how to make them.
    """
    candidates = [root / f"{dataset}-{bits}", *sorted(root.glob(f"{dataset}-{bits}-*"))]
    runs = [p for p in candidates if (p / "report.json").exists() and (p / "history.json").exists()
            and (p / "encodings" / "database" / "meta.json").exists()
            and (p / "encodings" / "queries" / "meta.json").exists()]
    if not runs:
        target = "bench-mnist" if dataset == "mnist" else "bench-cifar10"
        raise FileNotFoundError(
            f"no trained {dataset} run at {bits} bits under {root} (expected {root}/{dataset}-{bits}/ "
            f"with report.json, history.json and encodings/): train them with `make {target}` "
            f"(they go to runs/bench/) and pass --deep-runs runs/bench, or leave the deep rows "
            "out with --no-deep"
        )
    return max(runs, key=best_val_acc)


def load_deep(run: Path, data: Any) -> dict[str, Any]:
    """A run's encodings, checked against the dataset (same items, same order)."""
    db, q = load_encoded(run / "encodings" / "database"), load_encoded(run / "encodings" / "queries")
    for enc, split in ((db, data.train), (q, data.test)):
        if len(enc) != len(split) or not np.array_equal(enc.ids, split.ids) \
                or not np.array_equal(enc.labels, split.labels):
            raise ValueError(
                f"the encodings in {run} are not of the dataset loaded here ({data.source}): "
                f"different items or order; re-encode with `hashret encode {run}`"
            )
    return {"db": db, "queries": q, "report": read_json(run / "report.json"),
            "val_acc": best_val_acc(run), "run": run}


# ------------------------------------------------------------------ results
def row_key(r: dict[str, Any]) -> tuple[str, str, int]:
    return (r["method"], r["input"], int(r["bits"]))


def metric_row(res: dict[str, Any]) -> dict[str, Any]:
    pk = res["precision@k"]
    return {"map@1000": res["map@1000"], "map": res["map"],
            "precision@radius2": res["precision@radius2"],
            "precision@100": pk[99], "precision@1000": pk[999]}


def curve_label(method: str, input_name: str) -> str:
    return LABELS[method] if method == "dlbhc" else f"{LABELS[method]} ({input_name})"


def ordered_rows(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(method, input) pairs in table order: DLBHC, then each input's baselines."""
    present = {(r["method"], r["input"]) for r in rows}
    order = [("dlbhc", "-")] + [(m, i) for i in INPUTS for m in METHODS]
    return [p for p in order if p in present]


def markdown(doc: dict[str, Any]) -> str:
    rows, ds, m = doc["rows"], doc["dataset"], doc["machine"]
    bits = sorted({int(r["bits"]) for r in rows})
    by = {row_key(r): r for r in rows}
    cell = lambda r, key, fmt: "-" if r is None else format(r[key], fmt)  # noqa: E731
    notes = doc["notes"]
    lines = [
        f"# Shallow hashing baselines against DLBHC on {NAMES[ds]} (hashret {m['hashret']})",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores shared with other jobs (the times are wall "
        f"times, with that noise), numpy {m['numpy']} with {m.get('blas_threads', '?')} BLAS "
        "thread(s), no GPU.",
        "",
        "Protocol: " + doc["protocol"]["description"] + "; the baselines are fitted on "
        "the training set, which is also the database. mAP@1000 as the DLBHC evaluation "
        "computes it (AP@k over the relevant items found in the top 1000; a query with none "
        "scores 0); P@r<=2: precision of the Hamming ball of radius 2 (empty ball scores 0).",
        "",
        *[f"- {n}" for n in notes],
        "",
        "| method | input | labels | " + " | ".join(f"mAP@1000 {b}b" for b in bits) + " | "
        + " | ".join(f"P@r<=2 {b}b" for b in bits) + " | " + " | ".join(f"seconds {b}b" for b in bits)
        + " |",
        "|---|---|---|" + "---:|" * (3 * len(bits)),
    ]
    for method, inp in ordered_rows(rows):
        rs = [by.get((method, inp, b)) for b in bits]
        first = next(r for r in rs if r is not None)
        lines.append(
            f"| {LABELS[method]} | {INPUTS.get(inp, 'images (end to end)')} | {first['labels']} | "
            + " | ".join(cell(r, "map@1000", ".4f") for r in rs) + " | "
            + " | ".join(cell(r, "precision@radius2", ".4f") for r in rs) + " | "
            + " | ".join(cell(r, "seconds", ".0f") for r in rs) + " |"
        )
    return "\n".join(lines) + "\n"


def plot(doc: dict[str, Any], path: Path) -> None:
    """P@k for k = 100..1000 at 48 bits: one panel per input, DLBHC in each."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = doc["curves"]
    inputs = [i for i in INPUTS if any(k.endswith(f"({INPUTS[i]})") for k in curves)]
    if not inputs:
        return
    fig = Figure(figsize=(5.2 * len(inputs), 4.2), dpi=100)
    FigureCanvasAgg(fig)
    colors = dict(zip(["dlbhc", *METHODS], ["black", "C3", "C1", "C0", "C2", "C7"], strict=True))
    axes = fig.subplots(1, len(inputs), squeeze=False)[0]
    for ax, inp in zip(axes, inputs, strict=True):
        low, high = 1.0, 0.0
        for method in ["dlbhc", *METHODS]:
            label = curve_label(method, INPUTS[inp])
            if label not in curves:
                continue
            ys = [curves[label][k - 1] for k in PK_SHOWN]
            low, high = min(low, *ys), max(high, *ys)
            ax.plot(PK_SHOWN, ys, marker="o", markersize=3, color=colors[method], label=LABELS[method],
                    linewidth=2.0 if method == "dlbhc" else 1.3)
        ax.set_title(f"baselines on {INPUTS[inp]}")
        ax.set_xlabel("number of retrieved images (k)")
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        margin = max(0.005, (high - low) * 0.08)  # zoom to the data
        ax.set_ylim(max(0.0, low - margin), min(1.0, high + margin) + 0.002)
    axes[0].set_ylabel("precision@k")
    fig.suptitle(f"{NAMES[doc['dataset']]}, {PLOT_BITS} bits: test queries against the training set")
    fig.tight_layout()
    atomic_write(path, lambda p: fig.savefig(p, format="png"))


def save(doc: dict[str, Any], stem: Path) -> None:
    doc["rows"] = sorted(doc["rows"], key=lambda r: (r["input"] != "-", r["input"], r["method"], r["bits"]))
    write_json(stem.with_suffix(".json"), doc)
    atomic_write(stem.with_suffix(".md"), lambda p: p.write_text(markdown(doc)))
    plot(doc, Path(str(stem) + "-pk.png"))


def readme_table(results: Path) -> str:
    """The README's table, from the committed JSON files (no numbers by hand)."""
    lines = ["| dataset | method | input | mAP@1000 12 bits | 32 bits | 48 bits | P@r<=2 48 bits "
             "| seconds 48 bits |", "|---|---|---|---:|---:|---:|---:|---:|"]
    for ds in DATASETS:
        files = sorted(results.glob(f"compare-{ds}-cpu*.json"))
        if not files:
            continue
        rows = read_json(files[0])["rows"]
        by = {row_key(r): r for r in rows}
        for method, inp in ordered_rows(rows):
            cells = [by.get((method, inp, b)) for b in (12, 32, 48)]
            maps = " | ".join("-" if r is None else f"{r['map@1000']:.4f}" for r in cells)
            last = cells[2]
            tail = "- | -" if last is None else f"{last['precision@radius2']:.4f} | {last['seconds']:.0f}"
            name = f"**{LABELS[method]}**" if method == "dlbhc" else LABELS[method]
            lines.append(f"| {NAMES[ds]} | {name} | {INPUTS.get(inp, 'images (end to end)')} | {maps} "
                         f"| {tail} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ the run
def run_dataset(dataset: str, a: argparse.Namespace, m: dict[str, Any]) -> Path:
    stem = Path(a.results) / f"compare-{dataset}-cpu{m['cores']}"
    protocol = get_protocol(dataset)
    old = read_json(stem.with_suffix(".json")) if a.resume and stem.with_suffix(".json").exists() else {}
    doc: dict[str, Any] = {
        "benchmark": "compare", "dataset": dataset, "machine": m, "protocol": None, "seed": a.seed,
        "rows": old.get("rows", []), "curves": old.get("curves", {}), "notes": [], "inputs": {},
    }
    done = {row_key(r) for r in doc["rows"]}

    print(f"== {dataset}: loading", flush=True)
    data = load_dataset(dataset, data_path(Path(a.data_root), dataset), cache_dir=a.cache_dir)
    doc["source"] = data.source
    ytr, yte = data.train.labels, data.test.labels

    def evaluate(qc: np.ndarray, dc: np.ndarray, bits: int) -> dict[str, Any]:
        res = evaluate_codes(qc, yte, dc, ytr, bits=bits, protocol=protocol)
        doc["protocol"] = res["protocol"]
        return res

    def record(row: dict[str, Any], res: dict[str, Any], input_name: str) -> None:
        row.update(metric_row(res))
        doc["rows"] = [r for r in doc["rows"] if row_key(r) != row_key(row)] + [row]
        if row["bits"] == PLOT_BITS:
            doc["curves"][curve_label(row["method"], input_name)] = res["precision@k"]
        save(doc, stem)
        print(f"   {row['method']:8s} {row['input']:6s} {row['bits']:2d} bits  mAP@1000 {row['map@1000']:.4f}"
              f"  P@r2 {row['precision@radius2']:.4f}  {row['seconds']:.1f}s", flush=True)

    inputs: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    deep48 = None
    if not a.no_deep:
        deep = {b: load_deep(select_deep_run(Path(a.deep_runs), dataset, b), data) for b in a.bits}
        if "deep" in a.inputs:
            deep48 = deep.get(PLOT_BITS) or load_deep(select_deep_run(Path(a.deep_runs), dataset, PLOT_BITS),
                                                      data)
        doc["deep_runs"] = {
            str(b): {"run": str(d["run"]), "val_acc": d["val_acc"],
                     "model_sha256": d["report"].get("model_sha256")} for b, d in deep.items()
        }
        for b, d in deep.items():
            t0 = time.perf_counter()
            res = evaluate(d["queries"].codes, d["db"].codes, b)
            rep = d["report"]
            row = {"method": "dlbhc", "input": "-", "bits": b, "labels": "all",
                   "seconds": rep["train_seconds"], "train_seconds": rep["train_seconds"],
                   "eval_seconds": round(time.perf_counter() - t0, 1), "run": d["run"].name,
                   "val_acc": d["val_acc"], "epochs": rep.get("epochs"), "map@1000_report": rep["map@1000"]}
            record(row, res, "-")
        doc["notes"].append(
            "DLBHC rows: the runs of `make bench-" + ("mnist" if dataset == "mnist" else "cifar10")
            + "` (" + ", ".join(f"{b} bits: {d['run'].name}" for b, d in deep.items())
            + "; several runs of one length: best validation accuracy); their seconds are the "
            "training time (2 CPU cores), encoding not included.")

    if "pixels" in a.inputs:
        t0 = time.perf_counter()
        xtr, xte = pixel_features(data.train.images), pixel_features(data.test.images)
        info: dict[str, Any] = {"dims": int(xtr.shape[1])}
        note = f"raw pixels: the {xtr.shape[1]:,} pixel values scaled to [0, 1]"
        if a.pixel_pca and xtr.shape[1] > PIXEL_PCA_ABOVE:
            reducer = PCAReducer(a.pixel_pca).fit(xtr)
            xtr, xte = reducer.transform(xtr), reducer.transform(xte)
            info |= {"pca": a.pixel_pca, "explained_variance": reducer.explained_variance_ratio_}
            note += (f", reduced to their top {a.pixel_pca} principal components (fitted on the "
                     f"training set, {reducer.explained_variance_ratio_:.1%} of the variance) so the "
                     "baselines fit in minutes on 2 cores; ITQ and ITQ-CCA project onto at most 48 "
                     "directions anyway, and the papers fed CIFAR-10 baselines 512-d GIST")
        else:
            dead = int((xtr.max(axis=0) == xtr.min(axis=0)).sum())
            note += f"; the {dead} columns constant over the training set (the empty border) are dropped"
        info["preprocess_seconds"] = round(time.perf_counter() - t0, 1)
        note += f" (preparation {info['preprocess_seconds']:.0f} s, not in the rows' seconds)."
        doc["inputs"]["pixels"] = info
        doc["notes"].append(note)
        inputs["pixels"] = (xtr, xte)
    if deep48 is not None:
        feats = deep48["db"].features
        inputs["deep"] = (feats, deep48["queries"].features)
        dead = int((feats.max(axis=0) == feats.min(axis=0)).sum())
        doc["inputs"]["deep"] = {"dims": int(feats.shape[1]), "run": deep48["run"].name, "constant": dead}
        doc["notes"].append(
            f"DLBHC float features: the {feats.shape[1]}-d penultimate features of the 48-bit run "
            f"{deep48['run'].name} (learnt from all training labels), used at every code length; "
            + ("none is constant over the training set. " if dead == 0
               else f"{dead} of them are constant over the training set (dropped). ")
            + "The DLBHC rows at the other lengths are separately trained models, so a baseline "
            "on these features can beat the DLBHC row of a shorter code by having the better "
            "model's features.")
    doc["notes"].append(
        "labels: what the method learns from; ITQ-CCA uses all training labels, KSH 2,000 "
        "labelled training samples and 300 anchors (its paper's setting); seconds: fit on the "
        "training set + encoding of the training and test sets.")
    if dataset == "cifar10":
        doc["notes"].append(
            "CIFAR-10 is the JPEG-compressed copy (about 30 dB PSNR against the original "
            "pickles), so the figures are close to, not the same as, figures on the originals.")

    for input_name, (xtr, xte) in inputs.items():
        for bits in a.bits:
            for method in a.methods:
                if (method, input_name, bits) in done:
                    continue
                cls = BASELINES[method]
                t0 = time.perf_counter()
                model = create_baseline(method, bits, seed=a.seed, drop_constant=True)
                model.fit(xtr, ytr if cls.supervised else None)
                t_fit = time.perf_counter() - t0
                dc, qc = model.encode(xtr), model.encode(xte)
                t_enc = time.perf_counter() - t0 - t_fit
                t1 = time.perf_counter()
                res = evaluate(qc, dc, bits)
                labels = ("none" if not cls.supervised else
                          f"{len(model.labelled_):,}" if method == "ksh" else "all")
                row = {"method": method, "input": input_name, "bits": bits, "labels": labels,
                       "seconds": round(t_fit + t_enc, 1), "fit_seconds": round(t_fit, 1),
                       "encode_seconds": round(t_enc, 1), "eval_seconds": round(time.perf_counter() - t1, 1),
                       "seed": a.seed, "paper": cls.paper}
                record(row, res, INPUTS[input_name])
    save(doc, stem)
    print(stem.with_suffix(".md").read_text(), flush=True)
    return stem


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", nargs="+", default=list(DATASETS), choices=DATASETS)
    ap.add_argument("--data-root", default="../shared/data",
                    help="folder with mnist/ and cifar10-jpeg/cifar10-jpeg.zip (or cifar-10-batches-py/)")
    ap.add_argument("--bits", type=int, nargs="+", default=[12, 32, 48])
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--inputs", nargs="+", default=list(INPUTS), choices=list(INPUTS))
    ap.add_argument("--deep-runs", default="runs/bench",
                    help="folder of trained runs DATASET-BITS[-RECIPE] (make bench-mnist / bench-cifar10)")
    ap.add_argument("--no-deep", action="store_true",
                    help="no DLBHC rows and no deep-feature input (no trained runs needed)")
    ap.add_argument("--pixel-pca", type=int, default=512,
                    help=f"reduce pixel vectors longer than {PIXEL_PCA_ABOVE} values to this many "
                    "principal components (0: never)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--cache-dir", help="decoded image-folder cache (default $HASHRET_CACHE)")
    ap.add_argument("--threads", type=int, default=1,
                    help="BLAS threads (1: on shared cores, multithreaded BLAS ran up to 10x slower)")
    ap.add_argument("--resume", action="store_true", help="keep the rows already in the JSON files")
    ap.add_argument("--readme-table", action="store_true",
                    help="print the README's table from the JSON files in --results and stop")
    a = ap.parse_args(argv)
    if a.readme_table:
        print(readme_table(Path(a.results)))
        return 0
    if a.no_deep and a.inputs == ["deep"]:
        ap.error("--no-deep leaves no input: add --inputs pixels")
    if not a.no_deep and not Path(a.deep_runs).is_dir():
        ap.error(f"--deep-runs {a.deep_runs} does not exist: train the DLBHC runs with `make bench-mnist` "
                 "and `make bench-cifar10` (they write runs/bench/), or pass --no-deep")
    if a.no_deep:
        a.inputs = [i for i in a.inputs if i != "deep"]
    from threadpoolctl import threadpool_limits  # installed with scikit-learn

    m = machine() | {"blas_threads": a.threads}
    with threadpool_limits(a.threads):
        for dataset in a.dataset:
            run_dataset(dataset, a, m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
