"""``hashret`` command line: a dispatch table over the library API, nothing more."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hashret import __version__


def _train(a: argparse.Namespace) -> int:
    from hashret.training import TrainConfig, train

    cfg = TrainConfig(
        dataset=a.dataset, data_dir=a.data_dir, bits=a.bits, backbone=a.backbone, epochs=a.epochs,
        batch_size=a.batch_size, lr=a.lr, seed=a.seed, val_fraction=a.val_fraction,
        image_size=a.image_size, input_size=a.input_size, threads=a.threads,
        on_bad_image=a.on_bad_image, flip=a.flip, tta_flip=a.tta_flip, device=a.device,
        precision=a.precision, recipe=a.recipe,
    )
    res = train(cfg, a.out, resume=a.resume, overwrite=a.overwrite, cache_dir=a.cache_dir,
                progress=not a.quiet)
    print(f"trained {res.model_config.method} ({res.model_config.backbone}, "
          f"{res.model_config.bits} bits) in {res.train_seconds:.1f}s; "
          f"selected epoch {res.best_epoch} by validation accuracy -> {res.run_dir}")
    return 0


def _encode(a: argparse.Namespace) -> int:
    from hashret.run import encode_run, open_run

    run = open_run(a.run_dir)
    out = encode_run(run, data_dir=a.data_dir, cache_dir=a.cache_dir, progress=not a.quiet)
    for name, enc in out.items():
        print(f"{name}: {len(enc)} items -> {run.encodings_dir(name)}")
    return 0


def _evaluate(a: argparse.Namespace) -> int:
    from hashret.eval import format_table
    from hashret.run import PLOT_FILE, REPORT_FILE, encode_run, evaluate_run, open_run

    run = open_run(a.run_dir)
    if not run.encodings_dir("queries").joinpath("meta.json").exists():
        print("no encodings yet: encoding the database and queries first", file=sys.stderr)
        encode_run(run, data_dir=a.data_dir, cache_dir=a.cache_dir, progress=not a.quiet)
    results = evaluate_run(run, k=a.k)
    if a.json:
        print(json.dumps(results, indent=2))
    else:
        print(format_table(results))
        print(f"report: {run.run_dir / REPORT_FILE}\nplot:   {run.run_dir / PLOT_FILE}")
    return 0


def _search(a: argparse.Namespace) -> int:
    from hashret.run import open_run, read_query_image, search_images

    run = open_run(a.run_dir)
    hits = search_images(run, read_query_image(run, a.image), k=a.k)[0]
    if a.json:
        print(json.dumps(hits, indent=2))
        return 0
    print(f"top {len(hits)} for {a.image} ({run.model_config.bits}-bit codes, Hamming):")
    print(f"{'rank':>4}  {'hamming':>7}  {'class':<12} id")
    for h in hits:
        print(f"{h['rank']:>4}  {h['hamming']:>7}  {h['class']:<12} {h['id']}")
    return 0


def _download(a: argparse.Namespace) -> int:
    from hashret.data import download_cifar10, download_mnist

    fetch = {"mnist": download_mnist, "cifar10": download_cifar10}[a.dataset]
    path = fetch(a.out)
    print(f"{a.dataset} is in {path}: pass --data-dir {path} to `hashret train`")
    return 0


def _demo(a: argparse.Namespace) -> int:
    from hashret.demo import run_demo

    run_demo(Path(a.out), bits=a.bits, epochs=a.epochs, seed=a.seed, progress=not a.quiet)
    return 0


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", help="where the dataset lives (default: as in training)")
    p.add_argument("--cache-dir", help="decoded-image cache (default $HASHRET_CACHE or "
                                       "~/.cache/hashret)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hashret", description=(
        "Deep binary hash codes for fast image retrieval (DLBHC): train, encode, search, "
        "evaluate."))
    parser.add_argument("--version", action="version", version=f"hashret {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a hashing model on a labelled image collection")
    p.add_argument("--dataset", required=True, choices=["digits", "mnist", "cifar10", "folder"])
    p.add_argument("--data-dir", help="dataset location (MNIST IDX folder, CIFAR-10 pickles or "
                                      "image folder / .zip; not needed for digits)")
    p.add_argument("--bits", type=int, default=48, help="code length, 8..256 (default 48)")
    p.add_argument("--out", required=True, help="run directory to write")
    p.add_argument("--backbone", help="convnet, convnet-small or lenet (default: per dataset)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate of the one-cycle schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--recipe", default="sgd", choices=["sgd", "airbench"],
                   help="optimisation recipe (hashret.training.recipes; airbench: the CIFAR-10 "
                        "speed-record parametrisation)")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of the training set held out for model selection")
    p.add_argument("--image-size", type=int, help="resize folder images to this size on reading")
    p.add_argument("--input-size", type=int, help="model input side in px (default: image size)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="training arithmetic: auto = bf16 autocast where the hardware has it")
    p.add_argument("--on-bad-image", choices=["error", "skip"], default="error")
    p.add_argument("--flip", action=argparse.BooleanOptionalAction, default=None,
                   help="horizontal-flip augmentation (default: on for natural images)")
    p.add_argument("--tta-flip", action=argparse.BooleanOptionalAction, default=None,
                   help="encode as the mean of image and mirror (default: with --flip)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run")
    p.add_argument("--overwrite", action="store_true", help="train over an existing run")
    p.add_argument("--cache-dir")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_train)

    p = sub.add_parser("encode", help="encode the database (train) and queries (test)")
    p.add_argument("run_dir")
    _add_data_args(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_encode)

    p = sub.add_parser("evaluate", help="mAP@k, mAP, P@k and P@radius2 under the protocol")
    p.add_argument("run_dir")
    p.add_argument("--k", type=int, default=1000, help="mAP@k cut-off (default 1000)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_data_args(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("search", help="the database images nearest to an image file")
    p.add_argument("run_dir")
    p.add_argument("--image", required=True, help="query image file")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_search)

    p = sub.add_parser("download", help="fetch MNIST or CIFAR-10 (python version) from the web")
    p.add_argument("dataset", choices=["mnist", "cifar10"])
    p.add_argument("--out", required=True, help="folder to put the files in")
    p.set_defaults(func=_download)

    p = sub.add_parser("demo", help="train, encode, index, evaluate and search on the bundled "
                                    "8x8 digits (no download)")
    p.add_argument("--out", default="runs/demo")
    p.add_argument("--bits", type=int, default=32)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_demo)
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "train": _train, "encode": _encode, "evaluate": _evaluate, "search": _search,
    "download": _download, "demo": _demo,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "k", 1) < 1:
        print("hashret: error: --k must be >= 1", file=sys.stderr)
        return 2
    try:
        return COMMANDS[args.command](args)
    except (ValueError, FileNotFoundError, FloatingPointError, RuntimeError) as e:
        print(f"hashret {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
