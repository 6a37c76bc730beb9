"""Hashing models: backbones, hash heads and the registry."""

from hashret.models.backbones import create_backbone, list_backbones, register_backbone
from hashret.models.config import ModelConfig
from hashret.models.hashnet import DLBHC, HashOutput, Preprocess
from hashret.models.registry import METHODS, build_model, create_model, list_methods

__all__ = [
    "DLBHC", "METHODS", "HashOutput", "ModelConfig", "Preprocess", "build_model",
    "create_backbone", "create_model", "list_backbones", "list_methods", "register_backbone",
]
