"""Torch thread settings on a shared CPU: training time with and without other jobs on the cores.

Trains the digits model (``hashret train --dataset digits``, a few epochs) in a fresh process
for each setting, first on the machine as it is, then with ``--load N`` busy processes
competing for the cores (what another user's job does), and writes the wall times side by
side. Settings: torch's default threads, ``--threads 1``, the default threads with passive
OpenMP waiting (``OMP_WAIT_POLICY=PASSIVE``), and hashret's own default (what the CLI does
without ``--threads``). Every run is timed alone within its condition; ratios are within
one condition of one run.

    python benchmarks/threads.py --epochs 10 --load 2
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import cpu_name  # noqa: E402

HERE = Path(__file__).resolve().parent
#: label -> (extra environment, extra CLI arguments)
SETTINGS: dict[str, tuple[dict[str, str], list[str]]] = {
    "torch default (all cores, active OpenMP wait)": ({"OMP_WAIT_POLICY": "ACTIVE"}, ["--threads", "0"]),
    "--threads 1": ({}, ["--threads", "1"]),
    "all cores, OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, ["--threads", "0"]),
    "hashret default (no --threads)": ({}, []),
}


def _busy(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def _train_seconds(env: dict[str, str], args: list[str], epochs: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        full_env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
        t0 = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "hashret.cli", "train", "--dataset", "digits", "--bits",
                               "32", "--epochs", str(epochs), "--out", f"{tmp}/run", "--quiet", *args],
                              env=full_env | env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"training failed ({' '.join(args)}):\n{done.stderr}")
        return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--load", type=int, default=2, help="busy processes in the loaded condition")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--max-seconds", type=float, default=240.0, help="cap on one loaded run's busy load")
    ap.add_argument("--out", default=str(HERE / "results" / "threads-cpu2"))
    a = ap.parse_args()

    rows = []
    for condition in ("as is", f"{a.load} busy processes"):
        for label, (env, args) in SETTINGS.items():
            for rep in range(a.repeats):
                procs = []
                load_before = os.getloadavg()[0]
                if condition != "as is":
                    stop_at = time.time() + a.max_seconds
                    procs = [mp.Process(target=_busy, args=(stop_at,), daemon=True) for _ in range(a.load)]
                    for p in procs:
                        p.start()
                    time.sleep(1.0)
                try:
                    secs = _train_seconds(env, args, a.epochs)
                finally:
                    for p in procs:
                        p.terminate()
                        p.join()
                rows.append({"condition": condition, "setting": label, "repeat": rep,
                             "seconds": round(secs, 2), "loadavg_1min_before": round(load_before, 2)})
                print(f"{condition:>18} | {label:<48} | {secs:7.2f} s", flush=True)
                time.sleep(2.0)

    result = {
        "what": f"wall time of `hashret train --dataset digits --bits 32 --epochs {a.epochs}` (process start "
                "to exit, incl. imports and data loading) per thread setting",
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_at_end": os.getloadavg()},
        "command": " ".join(["python", *sys.argv]),
        "rows": rows,
    }
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"# Thread settings on a shared CPU ({cpu_name()}, {os.cpu_count()} cores)", "",
             result["what"] + f"; {a.repeats} runs each; the loaded condition adds {a.load} busy-looping "
             "processes for the run's duration. `loadavg` is the 1-minute load average before each run "
             "(other users' jobs included).", "", f"Command: `{result['command']}`", "",
             "| condition | setting | seconds (each run) | median | loadavg before |",
             "|---|---|---|---:|---|"]
    for condition in dict.fromkeys(r["condition"] for r in rows):
        for label in SETTINGS:
            rs = [r for r in rows if r["condition"] == condition and r["setting"] == label]
            each = ", ".join(f"{r['seconds']:.1f}" for r in rs)
            before = ", ".join(str(r["loadavg_1min_before"]) for r in rs)
            med = statistics.median(r["seconds"] for r in rs)
            lines.append(f"| {condition} | {label} | {each} | {med:.1f} | {before} |")
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"-> {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
