"""Hashing losses, one method per file."""

from hashret.losses.base import HashLoss
from hashret.losses.softmax import SoftmaxLoss
from hashret.losses.triplet import TripletRankingLoss, default_margin

__all__ = ["HashLoss", "SoftmaxLoss", "TripletRankingLoss", "default_margin"]
