"""One ``Encoder``: a trained model together with how it encodes an image.

"How this model encodes" is the model's input shape (images are decoded and resized to it),
flip averaging (``tta_flip``), the arithmetic (``precision``: the one the model was trained
with), the device and the threshold that turns latent activations into bits. Everything that
turns images into codes (run search, index build and add, shards, the service) goes through
an Encoder, so a query and the database it searches are always encoded the same way; its
:meth:`Encoder.record` is what an index stores to rebuild the same Encoder later.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashret.data import read_image
from hashret.encode import Encoded, encode_images
from hashret.io import file_sha256
from hashret.training.checkpoint import load_model


@dataclass
class Encoder:
    """A model in eval mode and how it encodes images.

    Attributes:
        model: the hashing model (:class:`hashret.models.HashModel`).
        bits: code length.
        image_shape: ``(h, w, c)`` every image is decoded to (the training images' shape).
        tta_flip: encode as the mean of the image and its mirror image.
        precision: ``"fp32"`` or ``"bf16"`` (autocast, as trained).
        device: ``"cpu"``, ``"cuda"``...
        classes: the class names the model was trained on, in label order.
        tta_translate: also average over the image shifted by this many pixels
            (:func:`hashret.encode.tta_views`); 0: no shift.
    """

    model: Any
    bits: int
    image_shape: tuple[int, int, int]
    tta_flip: bool
    precision: str
    device: str
    classes: tuple[str, ...]
    tta_translate: int = 0

    @property
    def threshold(self) -> float:
        """Bit ``j`` is 1 where latent activation ``j`` exceeds this (0.5 sigmoid, 0 tanh)."""
        return float(getattr(self.model, "threshold", 0.5))

    @property
    def feature_dim(self) -> int:
        """Dimension of the float features (the fine re-rank's space)."""
        return int(self.model.feature_dim)

    def encode(self, images: np.ndarray, *, batch_size: int = 500, progress: bool = False) -> Encoded:
        """Encode ``uint8[n, h, w, c]`` images (at :attr:`image_shape`) as the database was encoded:
        codes ``uint8[n, ceil(bits/8)]``, features ``float32[n, d]``, latent ``float32[n, bits]``."""
        return encode_images(self.model, images, batch_size=batch_size, tta_flip=self.tta_flip,
                             device=self.device, precision=self.precision, progress=progress,
                             tta_translate=self.tta_translate)

    def read(self, path_or_bytes: str | Path | bytes, notes: list[str] | None = None) -> np.ndarray:
        """Decode one image (file or bytes) to ``uint8[h, w, c]`` at :attr:`image_shape`;
        ``notes`` gets what was changed to fit it (resized, converted to grey, ...)."""
        h, w, c = self.image_shape
        return read_image(path_or_bytes, channels=c, size=(h, w), notes=notes)

    def record(self, model_file: str | Path) -> dict[str, Any]:
        """What an index stores to rebuild this Encoder (:meth:`from_record`): the checkpoint's
        SHA-256, the model config and how it encodes."""
        return {
            "sha256": file_sha256(model_file), "config": self.model.config.to_dict(),
            "tta_flip": bool(self.tta_flip), "tta_translate": int(self.tta_translate),
            "precision": self.precision,
            "threshold": self.threshold, "image_shape": [int(s) for s in self.image_shape],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], model_file: str | Path, device: str = "cpu") -> Encoder:
        """The Encoder an index recorded (:meth:`record`), its weights read from ``model_file``.

        Raises:
            ValueError: the file holds another model than the record describes.
        """
        model, cfg = load_model(model_file, device=device)
        if record.get("config") and json.loads(json.dumps(cfg.to_dict())) != record["config"]:
            raise ValueError(f"{model_file} does not match the model the index recorded: rebuild the index "
                             "(`hashret index build RUN --out DIR --overwrite`)")
        return cls(model, cfg.bits, tuple(record["image_shape"]), bool(record.get("tta_flip")),  # type: ignore[arg-type]
                   str(record.get("precision", "fp32")), device, tuple(cfg.classes),
                   int(record.get("tta_translate", 0)))
