"""``hashret demo``: the whole pipeline on scikit-learn's bundled 8x8 digits (no download).

train -> encode -> evaluate (report + precision@k plot) -> index -> one query searched by file.
It writes only into a new or empty folder, or one an earlier demo wrote (see
:mod:`hashret.outdir`): a user's files are never deleted.
"""

from __future__ import annotations

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

#: the demo's index directory, inside its output directory
INDEX_DIR = "index"
#: everything the demo writes into its output directory (what a second demo run replaces)
DEMO_ENTRIES = (*RUN_ENTRIES, INDEX_DIR, "query.png", "query_results.png")


def save_results_grid(path: Path, query: np.ndarray, results: list[np.ndarray],
                      titles: list[str], correct: list[bool] | None = None) -> Path:
    """A PNG strip: the query, then its results, each titled (``uint8[h, w, c]`` images).

    ``correct[i]`` frames result ``i`` green (same class as the query) or red (another class).
    """
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.3 * (len(results) + 1), 1.7))
    marks = [None, *(correct if correct is not None else [None] * len(results))]
    for j, (img, title, ok) in enumerate(zip([query, *results], ["query", *titles], marks, strict=True)):
        ax = fig.add_subplot(1, len(results) + 1, j + 1)
        ax.imshow(img.squeeze(), cmap="gray" if img.shape[-1] == 1 else None)
        ax.set_xticks([])
        ax.set_yticks([])
        if ok is None:
            ax.set_title(title, fontsize=8)
            ax.axis("off")
            continue
        colour = "tab:green" if ok else "tab:red"
        ax.set_title(f"{'ok' if ok else 'x'} {title}", fontsize=8, color=colour)
        for side in ax.spines.values():
            side.set_color(colour)
            side.set_linewidth(3)
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
        say("[5/6] one query: the first test image, written to a PNG and searched by file "
            "(Hamming candidates, Euclidean re-rank)")
        query_png = out / "query.png"
        Image.fromarray(data.test.images[0].squeeze()).save(query_png)
        model = load_index_model(store)
        result = search_by_images(store, model, model.read(query_png)[None], k=10, rerank=True)[0]
        hits = describe_results(store, result)
    query_class = data.classes[int(data.test.labels[0])]
    say(f"      query {enc['queries'].ids[0]} (class {query_class}):")
    for h in hits:
        say(f"      {h['rank']:>2}. id {h['id']:<5} class {h['class']:<3} hamming {h['hamming']:>2}  "
            f"euclidean {h['euclidean']:.3f}")
    grid = save_results_grid(out / "query_results.png", data.test.images[0],
                             [data.train.images[h["id"]] for h in hits],
                             [f"{h['class']} d={h['hamming']}" for h in hits],
                             correct=[h["class"] == query_class for h in hits])
    say(f"[6/6] report {out / REPORT_FILE}\n      plot   {out / PLOT_FILE}\n      query  {grid}\n"
        f"      index  {out / INDEX_DIR}\n"
        f"      try:   hashret search {out / INDEX_DIR} --image {query_png} --rerank")
    return results
