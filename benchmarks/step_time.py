"""Training step time of the CIFAR-10 backbones: what one epoch of the airbench recipes costs.

Times full training steps (augmentation of uint8 batches, forward, backward, the airbench
optimizer step) of DLBHC at 48 bits on 32 px RGB batches of 1024 random images, for hashret's
``convnet`` (ceil pools, 16 -> 8 -> 4 px) and airbench94's ``convnet-airbench94`` (floor pools,
15 -> 7 -> 3 px), alternating between them so a change in the machine's load hits both alike;
reports images/s, the projected seconds of one epoch of 47,500 images (CIFAR-10 less 5%
validation) and of the recipe's 10 epochs. Results: ``benchmarks/results/step-time-<machine>``.

    python benchmarks/step_time.py --threads 2 --steps 6
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

from hashret.device import autocast, resolve_precision  # noqa: E402
from hashret.io import write_json  # noqa: E402
from hashret.losses.softmax import SoftmaxLoss  # noqa: E402
from hashret.models import create_model  # noqa: E402
from hashret.training.augment import alternating_flips, augment  # noqa: E402
from hashret.training.recipes import make_optimizer  # noqa: E402

RESULTS = Path(__file__).parent / "results"
BACKBONES = ("convnet", "convnet-airbench94")
EPOCH_IMAGES = 47_500


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4, help="timed steps per backbone (after one warm-up)")
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--results", default=str(RESULTS))
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    precision = resolve_precision(a.precision, "cpu")
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (a.batch_size, 3, 32, 32), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 10, (a.batch_size,), generator=g)
    loss_fn = SoftmaxLoss(label_smoothing=0.2)
    nets = {}
    for name in BACKBONES:
        torch.manual_seed(0)
        m = create_model("dlbhc", backbone=name, bits=48, num_classes=10, in_channels=3, input_size=(32, 32))
        m = m.to(memory_format=torch.channels_last).train()
        nets[name] = (m, make_optimizer(m, "airbench94", lr=11.5, momentum=0.85, weight_decay=0.0153,
                                        batch_size=a.batch_size))
    flips = alternating_flips(a.batch_size, 1, seed=0)

    def step(name: str) -> float:
        m, opt = nets[name]
        t0 = time.perf_counter()
        x = augment(images.float().div_(255), pad=2, flip=True, generator=g, flip_mask=flips)
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast("cpu", precision):
            loss = loss_fn(m(x), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return time.perf_counter() - t0

    for name in BACKBONES:  # warm-up
        step(name)
    times: dict[str, list[float]] = {n: [] for n in BACKBONES}
    load_before = os.getloadavg()
    for _ in range(a.steps):
        for name in BACKBONES:
            times[name].append(step(name))
    load_after = os.getloadavg()
    rows = []
    for name in BACKBONES:
        med = statistics.median(times[name])
        ips = a.batch_size / med
        rows.append({"backbone": name, "step_seconds": [round(t, 3) for t in times[name]],
                     "median_step_s": round(med, 3), "images_per_s": round(ips, 1),
                     "epoch_s": round(EPOCH_IMAGES / ips, 1),
                     "ten_epochs_min": round(10 * EPOCH_IMAGES / ips / 60, 1)})
    ratio = rows[0]["median_step_s"] / rows[1]["median_step_s"]
    machine = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__,
               "python": platform.python_version(), "threads": a.threads, "precision": precision,
               "loadavg_before": load_before, "loadavg_after": load_after}
    stem = Path(a.results) / f"step-time-cpu{os.cpu_count()}-threads{a.threads}"
    write_json(stem.with_suffix(".json"), {"benchmark": "step_time", "machine": machine,
                                           "batch_size": a.batch_size, "rows": rows,
                                           "convnet_over_airbench94": round(ratio, 3),
                                           "command": " ".join(["python", *sys.argv])})
    lines = [f"# Training step time, DLBHC 48 bits, batch {a.batch_size} of 32 px RGB",
             "",
             f"Machine: {machine['cpu']}, {machine['cores']} cores, torch threads {a.threads}, "
             f"{precision}; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
             "(a shared machine: ratios within this run mean more than absolute times). "
             f"`{' '.join(['python', *sys.argv])}`",
             "",
             "| backbone | median step s | images/s | epoch of 47,500 s | 10 epochs min |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {r['backbone']} | {r['median_step_s']} | {r['images_per_s']} | {r['epoch_s']} "
              f"| {r['ten_epochs_min']} |" for r in rows]
    lines += ["", f"convnet step / convnet-airbench94 step: {ratio:.2f}"]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
