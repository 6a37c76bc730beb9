"""Training: the loop, checkpoints, schedules, augmentation."""

from hashret.training.checkpoint import (
    MODEL_FILE,
    load_model,
    load_weights,
    read_checkpoint_config,
    save_checkpoint,
)
from hashret.training.config import DATASET_DEFAULTS, TrainConfig
from hashret.training.loop import TrainResult, train

__all__ = [
    "DATASET_DEFAULTS", "MODEL_FILE", "TrainConfig", "TrainResult", "load_model", "load_weights",
    "read_checkpoint_config", "save_checkpoint", "train",
]
