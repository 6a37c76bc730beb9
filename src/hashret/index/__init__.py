"""Hamming index backends behind one interface."""

from hashret.index.flat import FlatIndex

__all__ = ["FlatIndex"]
