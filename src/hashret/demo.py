"""``hashret demo``: the whole pipeline on scikit-learn's bundled 8x8 digits (no download).

train -> encode -> evaluate (report + precision@k plot) -> index -> one query searched by file.
It writes only into a new or empty folder, or one an earlier demo wrote (see
:mod:`hashret.outdir`): a user's files are never deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from hashret.eval import format_table
from hashret.indexing import build_index, describe_results, load_index_model, search_by_images
from hashret.outdir import claim_dir, describe_foreign
from hashret.run import (
    PLOT_FILE,
    REPORT_FILE,
    RUN_ENTRIES,
    encode_run,
    evaluate_run,
    load_run_dataset,
    open_run,
)
from hashret.training import TrainConfig, train

#: the coarse stage's pool in the demo's hierarchical search (a small share of the 1,438 digits)
POOL = 100
#: queries shown (the first test images; the very first is a 5 that looks like a 9)
QUERIES = 4
#: the demo's index directory, inside its output directory
INDEX_DIR = "index"
#: everything the demo writes into its output directory (what a second demo run replaces)
DEMO_ENTRIES = (*RUN_ENTRIES, INDEX_DIR, "query.png", "query-*.png", "query_results.png")


@dataclass
class ResultRow:
    """One query's row of the results grid: ``uint8[h, w, c]`` images, titles, right or wrong."""

    query: np.ndarray
    results: list[np.ndarray]
    titles: list[str]
    correct: list[bool]


def save_results_grid(path: Path, rows: list[ResultRow]) -> Path:
    """A PNG grid, a row per query: the query, then its results, each titled and framed green
    (same class as the query) or red (another class)."""
    from matplotlib.figure import Figure

    cols = 1 + max(len(r.results) for r in rows)
    fig = Figure(figsize=(1.2 * cols, 1.45 * len(rows)))
    for i, row in enumerate(rows):
        cells = [(row.query, "query", None), *zip(row.results, row.titles, row.correct, strict=True)]
        for j, (img, title, ok) in enumerate(cells):
            ax = fig.add_subplot(len(rows), cols, i * cols + j + 1)
            ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            colour = "black" if ok is None else ("tab:green" if ok else "tab:red")
            ax.set_title(title if ok is None else f"{'ok' if ok else 'x'} {title}", fontsize=7, color=colour)
            for side in ax.spines.values():
                side.set_color(colour)
                side.set_linewidth(1 if ok is None else 3)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    return path


def run_demo(out: Path, *, bits: int = 32, epochs: int | None = None, seed: int = 0,
             overwrite: bool = False, progress: bool = True) -> dict:
    """Run the demo into ``out`` and return the evaluation report.

    ``out`` must be new, empty, or a demo directory hashret wrote earlier (its files are then
    replaced); a folder with anything else in it is refused unless ``overwrite``, and even
    then only the demo's own file names are replaced: nothing else is ever deleted.
    """
    out = Path(out)
    foreign = claim_dir(out, "demo", DEMO_ENTRIES, overwrite=overwrite)
    say = print if progress else (lambda *a, **k: None)
    if foreign:
        say(describe_foreign(out, foreign))
    say(f"[1/6] training DLBHC ({bits} bits) on the 8x8 digits bundled with scikit-learn")
    res = train(TrainConfig(dataset="digits", bits=bits, epochs=epochs, seed=seed), out,
                overwrite=True, progress=progress)
    say(f"      {res.train_seconds:.1f}s, best validation epoch {res.best_epoch}")
    run = open_run(out)
    say("[2/6] encoding the database (training split) and the queries (test split)")
    enc = encode_run(run, progress=False)
    say(f"      {len(enc['database'])} database codes, {len(enc['queries'])} query codes")
    say("[3/6] evaluating (queries = test split, database = training split)")
    results = evaluate_run(run, encodings=enc)
    say(format_table(results))
    data = load_run_dataset(run)
    say(f"[4/6] indexing the database into {out / INDEX_DIR} (codes + float features for the re-rank)")
    with build_index(run, out / INDEX_DIR, data.train, collection=data.source, split="train",
                     encodings=enc["database"]) as store:
        say(f"      {len(store)} items")
        say(f"[5/6] {QUERIES} queries, the first test images, each written to a PNG and searched by file "
            f"(the {POOL} nearest codes by Hamming distance, re-ranked by Euclidean feature distance)")
        model = load_index_model(store)
        rows = []
        for q in range(QUERIES):
            query_png = out / ("query.png" if q == 0 else f"query-{q}.png")
            Image.fromarray(data.test.images[q].squeeze()).save(query_png)
            result = search_by_images(store, model, model.read(query_png)[None], k=10, rerank=True,
                                      candidates=POOL)[0]
            hits = describe_results(store, result)
            query_class = data.classes[int(data.test.labels[q])]
            right = [h["class_name"] == query_class for h in hits]
            say(f"      {query_png.name} (class {query_class}): "
                + " ".join(f"{h['class_name']}{'' if ok else '(x)'}"
                           for h, ok in zip(hits, right, strict=True))
                + f"   {sum(right)}/10 right")
            rows.append(ResultRow(data.test.images[q], [data.train.images[h["id"]] for h in hits],
                                  [f"{h['class_name']} H{h['hamming']}" for h in hits], right))
    grid = save_results_grid(out / "query_results.png", rows)
    query_png = out / "query.png"
    say(f"[6/6] report {out / REPORT_FILE}\n      plot   {out / PLOT_FILE}\n      query  {grid}\n"
        f"      index  {out / INDEX_DIR}\n"
        f"      try:   hashret search {out / INDEX_DIR} --image {query_png} --rerank --candidates {POOL}")
    return results
