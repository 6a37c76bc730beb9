"""Print the README's results table from the committed quality results (no numbers by hand)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
NAMES = {"mnist": "MNIST", "cifar10": "CIFAR-10 (JPEG copy)"}


def main() -> int:
    print("| dataset | bits | recipe | mAP@1000 | mAP (full ranking) | P@radius<=2 | val share "
          "| val acc | epochs | training time |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for ds in ("mnist", "cifar10"):
        path = RESULTS / f"quality-{ds}-cpu2.json"
        if not path.exists():
            continue
        rows = json.loads(path.read_text())["rows"]
        for r in sorted(rows, key=lambda r: (r["bits"], r.get("recipe", "sgd"), r["epochs"],
                                             r.get("val_fraction", 0.1))):
            print(f"| {NAMES[ds]} | {r['bits']} | {r.get('recipe', 'sgd')} | {r['map@1000']:.4f} "
                  f"| {r['map']:.4f} | {r['precision@radius2']:.4f} "
                  f"| {r.get('val_fraction', 0.1):.0%} | {r['val_acc']:.4f} "
                  f"| {r['epochs']} | {r['train_seconds'] / 60:.1f} min |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
