"""Checkpoints: weights in safetensors, the full config in its metadata and in ``config.json``.

A ``model.safetensors`` file alone rebuilds its model (:func:`load_model`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from hashret.io import atomic_write
from hashret.models import ModelConfig, build_model

FORMAT = "hashret-checkpoint-1"
MODEL_FILE = "model.safetensors"


def save_checkpoint(path: str | Path, model: nn.Module, model_cfg: ModelConfig,
                    extra: dict[str, Any] | None = None) -> Path:
    """Atomically write ``model``'s weights with its config in the safetensors metadata."""
    meta = {"format": FORMAT, "model": json.dumps(model_cfg.to_dict())}
    if extra:
        meta["extra"] = json.dumps(extra)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    return atomic_write(path, lambda p: save_file(tensors, str(p), metadata=meta))


def _resolve(path: str | Path) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.exists():
        raise FileNotFoundError(
            f"no checkpoint at {path}: pass a run directory made by `hashret train` "
            f"or its {MODEL_FILE}"
        )
    return path


def read_checkpoint_config(path: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """The :class:`ModelConfig` and extra metadata stored in a checkpoint (no weights read)."""
    path = _resolve(path)
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ValueError(f"{path} is not a readable safetensors checkpoint ({e})") from e
    if meta.get("format") != FORMAT or "model" not in meta:
        raise ValueError(
            f"{path} is not a hashret checkpoint (no hashret model config in its metadata); "
            "train one with `hashret train`"
        )
    return ModelConfig.from_dict(json.loads(meta["model"])), json.loads(meta.get("extra", "{}"))


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load weights into ``model``, with a clear error when they belong to another model."""
    path = _resolve(path)
    state = load_file(str(path))
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{name}: {keys[:3]}{'...' if len(keys) > 3 else ''}"
            for name, keys in (("missing", missing), ("unexpected", unexpected),
                               ("shape mismatch", wrong)) if keys
        )
        raise ValueError(
            f"checkpoint {path} was saved from another model ({detail}); "
            "use the run directory that trained this model"
        )
    model.load_state_dict(state)


def load_model(path: str | Path, device: str = "cpu") -> tuple[nn.Module, ModelConfig]:
    """Rebuild a model from a checkpoint alone; returns ``(model in eval mode, config)``."""
    cfg, _ = read_checkpoint_config(path)
    model = build_model(cfg)
    load_weights(model, path)
    return model.to(device).eval(), cfg


def save_resume_state(path: str | Path, state: dict[str, Any]) -> Path:
    """Optimizer, epoch and history for ``--resume`` (torch format, loaded weights_only)."""
    return atomic_write(path, lambda p: torch.save(state, p))


def load_resume_state(path: str | Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)
