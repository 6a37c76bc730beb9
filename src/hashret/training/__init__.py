"""Training: the loop, checkpoints, schedules, augmentation, per-method parts, samplers."""

from hashret.training.checkpoint import (
    MODEL_FILE,
    load_model,
    load_weights,
    read_checkpoint_config,
    save_checkpoint,
)
from hashret.training.config import DATASET_DEFAULTS, TrainConfig
from hashret.training.loop import TrainResult, train
from hashret.training.methods import TRAINING_METHODS, TrainingMethod, create_loss
from hashret.training.sampler import ClassBalancedBatches, RandomBatches

__all__ = [
    "DATASET_DEFAULTS", "MODEL_FILE", "TRAINING_METHODS", "ClassBalancedBatches", "RandomBatches",
    "TrainConfig", "TrainResult", "TrainingMethod", "create_loss", "load_model", "load_weights",
    "read_checkpoint_config", "save_checkpoint", "train",
]
