"""Learning-rate schedule: linear warm-up then linear decay (one-cycle, as in airbench)."""

from __future__ import annotations


def one_cycle(step: int, total: int, warmup: float = 0.23, start: float = 0.2,
              end: float = 0.07) -> float:
    """LR multiplier at ``step`` of ``total``: ``start -> 1`` over the first ``warmup`` fraction,
    then ``1 -> end`` linearly to the last step."""
    if total <= 0:
        raise ValueError("total steps must be positive")
    w = max(1, int(total * warmup))
    if step < w:
        f = step / w
        return start * (1 - f) + f
    f = min(1.0, (step - w) / max(1, total - w))
    return (1 - f) + end * f
