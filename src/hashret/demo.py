"""``hashret demo``: the whole pipeline on scikit-learn's bundled 8x8 digits (no download).

train -> encode -> index -> evaluate (report + precision@k plot) -> one query's results.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

from hashret.eval import format_table
from hashret.run import (
    PLOT_FILE,
    REPORT_FILE,
    encode_run,
    evaluate_run,
    open_run,
    read_query_image,
    search_images,
)
from hashret.training import TrainConfig, train


def save_results_grid(path: Path, query: np.ndarray, results: list[np.ndarray],
                      titles: list[str]) -> Path:
    """A PNG strip: the query, then its results, each titled (``uint8[h, w, c]`` images)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.3 * (len(results) + 1), 1.7))
    for j, (img, title) in enumerate(zip([query, *results], ["query", *titles], strict=True)):
        ax = fig.add_subplot(1, len(results) + 1, j + 1)
        ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None)
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def run_demo(out: Path, *, bits: int = 32, epochs: int | None = None, seed: int = 0,
             progress: bool = True) -> dict:
    """Run the demo into ``out`` (replaced if it exists) and return the evaluation report."""
    if out.exists():
        shutil.rmtree(out)
    say = print if progress else (lambda *a, **k: None)
    say(f"[1/5] training DLBHC ({bits} bits) on the 8x8 digits bundled with scikit-learn")
    res = train(TrainConfig(dataset="digits", bits=bits, epochs=epochs, seed=seed), out,
                progress=progress)
    say(f"      {res.train_seconds:.1f}s, best validation epoch {res.best_epoch}")
    run = open_run(out)
    say("[2/5] encoding the database (training split) and the queries (test split)")
    enc = encode_run(run, progress=False)
    say(f"      {len(enc['database'])} database codes, {len(enc['queries'])} query codes")
    say("[3/5] evaluating (queries = test split, database = training split)")
    results = evaluate_run(run, encodings=enc)
    say(format_table(results))
    say("[4/5] one query: the first test image, written to a PNG and searched by file")
    q = enc["queries"]
    from hashret.run import load_run_dataset

    data = load_run_dataset(run)
    query_png = out / "query.png"
    Image.fromarray(data.test.images[0].squeeze()).save(query_png)
    hits = search_images(run, read_query_image(run, query_png), k=10, database=enc["database"])[0]
    say(f"      query {q.ids[0]} (class {q.meta['classes'][int(q.labels[0])]}):")
    for h in hits:
        say(f"      {h['rank']:>2}. {h['id']:<16} class {h['class']}  hamming {h['hamming']}")
    grid = save_results_grid(out / "query_results.png", data.test.images[0],
                             [data.train.images[h["index"]] for h in hits],
                             [f"{h['class']} d={h['hamming']}" for h in hits])
    say(f"[5/5] report {out / REPORT_FILE}\n      plot   {out / PLOT_FILE}\n      query  {grid}")
    return results
