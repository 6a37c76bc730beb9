"""Near-duplicate search: is the original found at rank 1 when the query is a slightly changed copy?

N CIFAR-10 test images (the JPEG copy, seeded choice), upscaled from 32 px to ``--side`` px
(bicubic), are the collection. Each is changed four ways, and every changed copy queries the
whole collection:

* ``crop90``: the central 90% (each side), as a slightly reframed copy;
* ``half``: rescaled to 0.5x (a smaller copy);
* ``jpeg30``: re-compressed as JPEG at quality 30;
* ``flip``: mirrored left-right.

Hit rate = share of queries whose original is the first result (ties by collection order, the
exact backends' rule). Compared: the ready models ``efficientnet-lite0-{itq,pca-sign}-{64,128}``
(the shipped projection, :mod:`hashret.ready`) by Hamming distance and with the float re-rank
(top ``--candidates`` by Hamming re-ordered by the Euclidean distance of the 1280-d features),
their float features alone, and ``imagehash``'s 64-bit pHash (``pip install 'hashret[bench]'``).
Every image goes through the ready models' own decode path (PNG / JPEG bytes ->
``Encoder.read`` -> the model's input side).

    python benchmarks/near_duplicates.py [--n 1000] [--side 128]
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
DATA = Path("/work/shared/data/cifar10-jpeg/cifar10-jpeg.zip")
MODELS = ("efficientnet-lite0-itq-64", "efficientnet-lite0-itq-128", "efficientnet-lite0-pca-sign-64",
          "efficientnet-lite0-pca-sign-128")


def transforms(img: Image.Image) -> dict[str, bytes]:
    """The four changed copies of ``img`` as encoded bytes (PNG, except the JPEG one)."""
    w, h = img.size
    dx, dy = round(w * 0.05), round(h * 0.05)

    def png(im: Image.Image) -> bytes:
        buf = io.BytesIO()
        im.save(buf, format="PNG")
        return buf.getvalue()

    jpeg = io.BytesIO()
    img.save(jpeg, format="JPEG", quality=30)
    return {"crop90": png(img.crop((dx, dy, w - dx, h - dy))),
            "half": png(img.resize((w // 2, h // 2), Image.Resampling.BICUBIC)),
            "jpeg30": jpeg.getvalue(), "flip": png(img.transpose(Image.Transpose.FLIP_LEFT_RIGHT))}


def top1(dist: np.ndarray) -> np.ndarray:
    """``int[q]`` the first column of each row's minimum (ties by collection order)."""
    return np.argmin(dist, axis=1)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``int[q, n]`` Hamming distances of packed ``uint8`` codes."""
    return np.unpackbits(a[:, None, :] ^ b[None, :, :], axis=2).sum(2)


def rerank_top1(ham: np.ndarray, qf: np.ndarray, df: np.ndarray, candidates: int) -> np.ndarray:
    """Top 1 after re-ranking the ``candidates`` nearest codes (stable) by Euclidean distance."""
    pool = np.argsort(ham, axis=1, kind="stable")[:, :candidates]
    d = ((qf[:, None, :] - df[pool]) ** 2).sum(2)
    return pool[np.arange(len(pool)), np.argmin(d, axis=1)]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--side", type=int, default=128, help="the originals' side (upscaled from 32 px)")
    p.add_argument("--candidates", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    import imagehash

    from hashret.data import load_dataset
    from hashret.ready import get_ready_model
    from hashret.run import open_run

    load0, t0 = os.getloadavg()[0], time.perf_counter()
    test = load_dataset("cifar10", DATA).test
    idx = np.sort(np.random.default_rng(a.seed).choice(len(test), a.n, replace=False))
    originals = [Image.fromarray(test.images[i]).resize((a.side, a.side), Image.Resampling.BICUBIC)
                 for i in idx]
    kinds = ("crop90", "half", "jpeg30", "flip")
    queries = {k: [] for k in kinds}
    orig_bytes = []
    for img in originals:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        orig_bytes.append(buf.getvalue())
        for k, b in transforms(img).items():
            queries[k].append(b)

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        models = {}
        for name in MODELS:
            get_ready_model(name, Path(tmp) / name)
            models[name] = open_run(Path(tmp) / name, device="cpu")
        enc = models[MODELS[0]].encoder  # one backbone: features once, each head projects them
        t = time.perf_counter()
        feats = {"original": enc.encode(np.stack([enc.read(b) for b in orig_bytes])).features}
        for k in kinds:
            feats[k] = enc.encode(np.stack([enc.read(b) for b in queries[k]])).features
        n_enc = a.n * (1 + len(kinds))
        encode_rate = n_enc / (time.perf_counter() - t)
        import torch

        truth = np.arange(a.n)
        for name, run in models.items():
            with torch.no_grad():
                lat = {k: run.model.forward_latent(torch.from_numpy(v)).numpy() for k, v in feats.items()}
            codes = {k: np.packbits(v > 0, axis=1, bitorder="little") for k, v in lat.items()}
            for k in kinds:
                ham = hamming(codes[k], codes["original"])
                rows.append({"method": name, "query": k,
                             "hamming": float((top1(ham) == truth).mean()),
                             "rerank": float((rerank_top1(ham, feats[k], feats["original"], a.candidates)
                                              == truth).mean())})
        for k in kinds:
            d = ((feats[k][:, None, :] - feats["original"][None]) ** 2).sum(2)
            rows.append({"method": "lite0 float features (Euclidean)", "query": k,
                         "hamming": float((top1(d) == truth).mean()), "rerank": None})
    ph = {"original": [imagehash.phash(Image.open(io.BytesIO(b))) for b in orig_bytes]}
    for k in kinds:
        ph[k] = [imagehash.phash(Image.open(io.BytesIO(b))) for b in queries[k]]
    pack = {k: np.stack([np.packbits(h.hash.flatten()) for h in v]) for k, v in ph.items()}
    for k in kinds:
        rows.append({"method": "imagehash pHash 64 bits", "query": k,
                     "hamming": float((top1(hamming(pack[k], pack["original"])) == truth).mean()),
                     "rerank": None})
    res = {
        "benchmark": "near_duplicates",
        "command": "python benchmarks/near_duplicates.py " + " ".join(argv or sys.argv[1:]),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "load_average_start": round(load0, 2), "load_average_end": round(os.getloadavg()[0], 2)},
        "collection": f"{a.n} CIFAR-10 test images (seed {a.seed}) upscaled 32 -> {a.side} px (bicubic)",
        "model_input_side": int(enc.image_shape[0]), "rerank_candidates": a.candidates,
        "encode_images_per_s": round(encode_rate, 1), "imagehash": imagehash.__version__,
        "seconds": round(time.perf_counter() - t0, 1), "rows": rows,
    }
    from hashret.io import write_json

    stem = RESULTS / "near-duplicates-cpu2"
    write_json(stem.with_suffix(".json"), res)
    stem.with_suffix(".md").write_text(markdown(res, kinds))
    print(markdown(res, kinds))
    return 0


def markdown(res: dict, kinds: tuple[str, ...]) -> str:
    m = res["machine"]
    lines = [
        "# Near-duplicates: the original at rank 1", "",
        f"Machine: {m['cpu']}, {m['cores']} cores, shared (load average {m['load_average_start']} at the "
        f"start, {m['load_average_end']} at the end); {res['date']}. Command: `{res['command']}` "
        f"({res['seconds']} s).",
        "",
        f"Collection: {res['collection']}. Queries: each image cropped to its central 90% (crop90), rescaled "
        "0.5x (half), re-compressed as JPEG quality 30 (jpeg30), mirrored (flip). Hit rate = share of "
        "queries whose original is the first result, ties by collection order. Ready models: the shipped "
        f"projections at {res['model_input_side']} px (encoding {res['encode_images_per_s']} images/s, "
        "torch fp32); "
        f"re-rank = the {res['rerank_candidates']} nearest codes re-ordered by Euclidean distance of the "
        f"1280-d features. pHash: imagehash {res['imagehash']}.", "",
        "| method | " + " | ".join(kinds) + " |", "|---|" + "---:|" * len(kinds),
    ]
    by: dict[str, dict[str, dict]] = {}
    for r in res["rows"]:
        by.setdefault(r["method"], {})[r["query"]] = r
    for method, cells in by.items():
        lines.append(f"| {method} | " + " | ".join(f"{cells[k]['hamming']:.3f}" for k in kinds) + " |")
        if cells[kinds[0]]["rerank"] is not None:
            lines.append(f"| {method} + re-rank | "
                         + " | ".join(f"{cells[k]['rerank']:.3f}" for k in kinds) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
