"""Hashing losses, one method per file."""

from hashret.losses.base import HashLoss
from hashret.losses.softmax import SoftmaxLoss

__all__ = ["HashLoss", "SoftmaxLoss"]
