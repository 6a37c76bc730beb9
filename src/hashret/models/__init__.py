"""Hashing models: backbones, hash heads and the registry."""

from hashret.models.alexnet import AlexNet
from hashret.models.backbones import (
    BackboneSpec,
    create_backbone,
    get_backbone_spec,
    list_backbones,
    register_backbone,
)
from hashret.models.config import ModelConfig
from hashret.models.efficientnet_lite import EfficientNetLite, efficientnet_lite
from hashret.models.hashnet import DLBHC, HashModel, HashOutput, Preprocess
from hashret.models.pretrained import load_pretrained
from hashret.models.projection import PROJECTION_METHODS, ProjectionHash
from hashret.models.registry import METHODS, build_model, create_model, list_methods
from hashret.models.resnet import ResNet, resnet18, resnet50
from hashret.models.triplet import TripletHash, sign_codes

__all__ = [
    "DLBHC", "METHODS", "AlexNet", "BackboneSpec", "EfficientNetLite", "HashModel", "HashOutput",
    "ModelConfig", "PROJECTION_METHODS", "Preprocess", "ProjectionHash", "ResNet", "TripletHash",
    "build_model", "create_backbone",
    "create_model", "efficientnet_lite", "get_backbone_spec", "list_backbones", "list_methods",
    "load_pretrained", "register_backbone", "resnet18", "resnet50", "sign_codes",
]
