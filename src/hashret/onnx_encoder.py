"""An Encoder's forward pass as an ONNX graph, and :class:`OnnxEncoder`, which runs it with ONNX Runtime.

:func:`export_onnx` writes everything between the decoded image and the float outputs into
one graph: ``uint8[n, h, w, c]`` pixels -> ``/ 255`` -> the model's own preprocessing
(resize, normalisation) -> backbone -> features and latent activations, and with
``tta_flip`` / ``tta_translate`` the weighted mean over the test-time views
(:func:`hashret.encode.tta_views`), exactly as :func:`hashret.encode.encode_images` computes
them. The batch axis is dynamic. Thresholding stays outside the graph, in :mod:`hashret.codes`,
as for every other encoder.

:class:`OnnxEncoder` has the interface the service and the indexing code use from
:class:`hashret.encoder.Encoder` (``encode``, ``read``, ``bits``, ``image_shape``, ...). It
always computes in fp32. An Encoder whose ``precision`` is ``bf16`` (the training arithmetic
on CPUs with native bf16) encoded its database under bf16 autocast, so ONNX Runtime's codes
for the same image can differ from the database's in the bits whose activation lies near
the threshold; :func:`code_agreement` measures how many (see ``hashret serve --runtime``).

Needs the ``onnx`` extra (``pip install 'hashret[onnx]'``: onnx, onnxruntime, onnxscript).
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hashret.codes import encode as pack_activations
from hashret.codes import unpack
from hashret.data import read_image
from hashret.encode import Encoded, tta_views
from hashret.encoder import Encoder

#: Names of the graph's input and outputs.
INPUT, FEATURES, LATENT = "pixels", "features", "latent"
#: Largest batch the exported graph is declared for.
MAX_EXPORT_BATCH = 4096
_EXTRA_HINT = "install the ONNX extra: pip install 'hashret[onnx]'"


def _require(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"{module} is not installed: {_EXTRA_HINT}") from None


def encode_graph(encoder: Encoder) -> Any:
    """The ``torch.nn.Module`` that is exported: ``uint8[n, h, w, c]`` -> ``(features float32[n, d],
    latent float32[n, bits])``, computed in fp32 as :func:`hashret.encode.encode_images` does."""
    import torch
    from torch import nn

    class EncodeGraph(nn.Module):
        def __init__(self, model: nn.Module, tta_flip: bool, tta_translate: int) -> None:
            super().__init__()
            self.model, self.tta_flip, self.tta_translate = model, tta_flip, tta_translate

        def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            x = pixels.permute(0, 3, 1, 2).float() / 255  # [n, h, w, c] uint8 -> [n, c, h, w] in [0, 1]
            if self.tta_translate:  # encode_images' weighted views, in its order
                f = z = None
                for wt, view in tta_views(x, tta_flip=self.tta_flip, tta_translate=self.tta_translate):
                    fv = self.model.forward_features(view)
                    zv = self.model.forward_latent(fv)
                    f = wt * fv if f is None else f + wt * fv
                    z = wt * zv if z is None else z + wt * zv
                return f, z
            f = self.model.forward_features(x)
            z = self.model.forward_latent(f)
            if self.tta_flip:
                f2 = self.model.forward_features(x.flip(3))
                z = (z + self.model.forward_latent(f2)) / 2
                f = (f + f2) / 2
            return f, z

    translate = int(getattr(encoder, "tta_translate", 0))
    return EncodeGraph(encoder.model, bool(encoder.tta_flip), translate).eval()


def _metadata(encoder: Encoder, model_sha256: str | None) -> dict[str, str]:
    """What an OnnxEncoder needs besides the graph, stored in the ONNX file's metadata."""
    return {"hashret": json.dumps({"model_sha256": model_sha256,
        "bits": int(encoder.bits), "image_shape": [int(s) for s in encoder.image_shape],
        "tta_flip": bool(encoder.tta_flip), "tta_translate": int(getattr(encoder, "tta_translate", 0)),
        "threshold": float(encoder.threshold),
        "feature_dim": int(encoder.feature_dim), "classes": list(encoder.classes),
        "torch_precision": encoder.precision, "config": encoder.model.config.to_dict()})}


def export_onnx(encoder: Encoder, path: str | Path, *, model_sha256: str | None = None) -> Path:
    """Write ``encoder``'s forward pass (uint8 pixels -> features, latent; fp32) as ONNX at ``path``.

    The graph takes ``pixels: uint8[batch, h, w, c]`` (``h, w, c`` = ``encoder.image_shape``,
    batch dynamic, 1 .. :data:`MAX_EXPORT_BATCH`) and gives ``features: float32[batch, d]`` and
    ``latent: float32[batch, bits]``. The file's metadata holds bits, threshold, image shape,
    flip and translate averaging, the model config and ``model_sha256`` (the checkpoint's, so that
    a server can check the file belongs to its index), so :class:`OnnxEncoder` needs nothing else.

    Raises:
        ImportError: the ``onnx`` extra is not installed.
    """
    import torch

    _require("onnxscript")
    onnx = _require("onnx")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    graph = encode_graph(encoder).to("cpu")
    h, w, c = encoder.image_shape
    example = (torch.zeros((2, h, w, c), dtype=torch.uint8),)
    batch = torch.export.Dim("batch", min=1, max=MAX_EXPORT_BATCH)
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping ..." per missing op set
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(graph, example, dynamo=True, dynamic_shapes=({0: batch},),
                                    input_names=[INPUT], output_names=[FEATURES, LATENT], verbose=False)
    tmp = path.with_name(path.name + ".tmp")
    quiet.setLevel(level)
    program.save(str(tmp))
    proto = onnx.load(str(tmp))
    for key, value in _metadata(encoder, model_sha256).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(tmp))
    tmp.replace(path)
    if encoder.device != "cpu":
        encoder.model.to(encoder.device)
    return path


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The hashret metadata an exported file carries (bits, image shape, model_sha256, ...); ``{}``
    for an ONNX file hashret did not write."""
    onnx = _require("onnx")
    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == "hashret":
            return dict(json.loads(entry.value))
    return {}


class OnnxEncoder:
    """An exported encoder (:func:`export_onnx`) run by ONNX Runtime on the CPU, in fp32.

    Same interface as :class:`hashret.encoder.Encoder` for encoding: :meth:`encode`,
    :meth:`read`, ``bits``, ``image_shape``, ``tta_flip``, ``threshold``, ``feature_dim``,
    ``classes``; ``precision`` is always ``"fp32"``.

    Args:
        path: the ``.onnx`` file.
        threads: ONNX Runtime's intra-op threads (1 suits one small image at a time on a shared
            machine; its threads do not spin while waiting, so idle threads cost nothing).
    """

    runtime = "onnx"
    precision = "fp32"
    device = "cpu"

    def __init__(self, path: str | Path, *, threads: int = 1) -> None:
        ort = _require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"no ONNX model at {self.path}: write one with "
                                    "`hashret export-onnx INDEX_OR_RUN_DIR --out FILE`")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map.get("hashret")
        if not meta:
            raise ValueError(f"{self.path} was not written by `hashret export-onnx` (no hashret metadata): "
                             "export it again")
        m = json.loads(meta)
        self.bits: int = int(m["bits"])
        self.image_shape: tuple[int, int, int] = tuple(int(s) for s in m["image_shape"])  # type: ignore[assignment]
        self.tta_flip: bool = bool(m["tta_flip"])
        self.tta_translate: int = int(m.get("tta_translate", 0))
        self.threshold: float = float(m["threshold"])
        self.feature_dim: int = int(m["feature_dim"])
        self.classes: tuple[str, ...] = tuple(m["classes"])
        self.torch_precision: str = str(m.get("torch_precision", "fp32"))
        self.config: dict[str, Any] = dict(m.get("config") or {})
        self.model_sha256: str | None = m.get("model_sha256")

    @classmethod
    def from_encoder(cls, encoder: Encoder, path: str | Path, *, threads: int = 1,
                     model_sha256: str | None = None) -> OnnxEncoder:
        """Export ``encoder`` to ``path`` (:func:`export_onnx`) and open it."""
        return cls(export_onnx(encoder, path, model_sha256=model_sha256), threads=threads)

    def encode(self, images: np.ndarray, *, batch_size: int = 500, progress: bool = False) -> Encoded:
        """Encode ``uint8[n, h, w, c]`` images (at :attr:`image_shape`): codes ``uint8[n, ceil(bits/8)]``,
        features ``float32[n, d]``, latent ``float32[n, bits]`` (``progress`` is accepted for
        :class:`Encoder`'s signature and ignored)."""
        images = np.asarray(images)
        if images.ndim != 4 or images.dtype != np.uint8 or tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(f"images must be uint8 [n, {', '.join(map(str, self.image_shape))}], got "
                             f"{images.dtype} {images.shape}")
        feats, lats = [], []
        step = max(1, min(int(batch_size), MAX_EXPORT_BATCH))
        for lo in range(0, len(images), step):
            f, z = self.session.run([FEATURES, LATENT], {INPUT: np.ascontiguousarray(images[lo:lo + step])})
            feats.append(f)
            lats.append(z)
        latent = np.concatenate(lats) if lats else np.zeros((0, self.bits), np.float32)
        features = np.concatenate(feats) if feats else np.zeros((0, self.feature_dim), np.float32)
        return Encoded(pack_activations(latent, self.threshold), features.astype(np.float32, copy=False),
                       latent.astype(np.float32, copy=False))

    def read(self, path_or_bytes: str | Path | bytes, notes: list[str] | None = None) -> np.ndarray:
        """Decode one image (file or bytes) to ``uint8[h, w, c]`` at :attr:`image_shape`."""
        h, w, c = self.image_shape
        return read_image(path_or_bytes, channels=c, size=(h, w), notes=notes)


def code_agreement(a: Encoded, b: Encoded, bits: int) -> dict[str, float]:
    """How two encodings of the same images differ: codes that differ at all, bits that differ
    (of ``n * bits``), the largest Hamming distance between two codes of one image, and the
    largest feature difference."""
    diff = unpack(a.codes, bits) != unpack(b.codes, bits)  # [n, bits]
    n = len(diff)
    return {"images": n, "codes_differing": int(diff.any(1).sum()), "bits_differing": int(diff.sum()),
            "bit_fraction": float(diff.mean()) if n else 0.0,
            "max_hamming": int(diff.sum(1).max()) if n else 0,
            "max_feature_diff": float(np.abs(a.features - b.features).max()) if n else 0.0}

