"""The triplet ranking loss of DNNH (Lai et al., CVPR 2015) on tanh-relaxed codes.

For an anchor ``a``, a positive ``p`` (same class, ``p != a``) and a negative ``n`` (another
class) of one batch, with relaxed codes ``z`` in ``(-1, 1)^bits``:

    d(u, v) = ||z_u - z_v||^2 / 4        (the Hamming distance when z is +/-1)
    l(a, p, n) = max(0, margin + d(a, p) - d(a, n))

``d`` is measured in bits, so the margin is a number of bits: the negative should be at
least ``margin`` bits further from the anchor than the positive. The loss is the mean of
``l`` over the valid in-batch triplets whose hinge is active (``l > 0``), the "batch all"
of Hermans et al. (2017): the remaining violations, not the many satisfied triplets, set
the gradient's scale (on MNIST this beat the mean over all triplets at 16 and 64 bits).
With ``mining="semi-hard"`` only the semi-hard triplets count,
``d(a, p) < d(a, n) < d(a, p) + margin`` (all of them active), and the loss is their mean.
An optional quantization penalty ``quant_weight * mean_i sum_j (|z_ij| - 1)^2 / 4`` pulls
the relaxed codes towards their signs (it is the squared distance, in the same bit units,
from each relaxed code to its binary code).

The sum over negatives is computed without the ``[n, n, n]`` tensor: per anchor, the
negatives' distances are sorted once and, for each positive, the hinge sum over them is
``count * (margin + d_ap) - sum(d_an)`` over the negatives below ``margin + d_ap``
(cumulative sums and a binary search). Memory is ``O(n^2)``, time ``O(n^2 log n)``.
"""

from __future__ import annotations

import math

import torch

from hashret.losses.base import HashLoss
from hashret.models.hashnet import HashOutput

MINING = ("all", "semi-hard")


def default_margin(bits: int) -> float:
    """``bits / 4``: a quarter of the code length (4 at 16 bits, 16 at 64 bits).

    The seed advises "a bit more than a quarter" (8 at 16 bits, 20 at 64 bits) for training
    of 1000+ epochs; in short runs the larger margin trained much worse at 16 bits (MNIST,
    2 epochs on 20k images: validation mAP 0.70 with margin 8 against 0.98 with margin 4),
    where it asks for half of all bits between classes.
    """
    return bits / 4


def relaxed_hamming(z: torch.Tensor) -> torch.Tensor:
    """Pairwise ``||z_i - z_j||^2 / 4``: ``float[n, bits] -> float[n, n]`` (>= 0, 0 diagonal).

    Equals the Hamming distance for ``z`` in ``{-1, +1}^bits``.
    """
    sq = (z * z).sum(1)
    d = (sq[:, None] + sq[None, :] - 2 * z @ z.T) / 4
    eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
    return d.clamp_min(0).masked_fill(eye, 0.0)


class TripletRankingLoss(HashLoss):
    """Triplet ranking loss over all valid triplets of a batch (see the module docstring).

    Args:
        bits: code length (sets the default margin).
        margin: in bits of Hamming distance; ``None`` for :func:`default_margin`.
        mining: ``"all"`` valid triplets or only the ``"semi-hard"`` ones.
        quant_weight: weight of the quantization penalty (0 turns it off). Keep it small
            (0.01-0.1): early in training it is easiest to satisfy by one shared saturated code.

    ``forward(out, labels)``: ``out.latent`` float ``[n, bits]``, ``labels`` int64 ``[n]``
    -> scalar. A batch needs at least two classes and a class with two images (the
    class-balanced sampler of :mod:`hashret.training.sampler` provides them).
    """

    def __init__(self, bits: int, margin: float | None = None, mining: str = "all",
                 quant_weight: float = 0.0) -> None:
        super().__init__()
        self.margin = default_margin(bits) if margin is None else float(margin)
        if not math.isfinite(self.margin) or self.margin <= 0:
            raise ValueError(f"margin must be a positive number of bits, got {margin}")
        if mining not in MINING:
            raise ValueError(f"mining must be one of {', '.join(MINING)}, got {mining!r}")
        if not quant_weight >= 0:
            raise ValueError(f"quant_weight must be >= 0, got {quant_weight}")
        self.mining = mining
        self.quant_weight = float(quant_weight)

    def compute(self, out: HashOutput, labels: torch.Tensor) -> torch.Tensor:
        z = out.latent.float()
        check_triplet_batch(labels)
        d = relaxed_hamming(z)  # [n, n]
        same = labels[:, None] == labels[None, :]
        pos = same & ~torch.eye(len(labels), dtype=torch.bool, device=z.device)  # [n, n]
        # each anchor's distances to its negatives, ascending; +inf marks "not a negative"
        dn, _ = d.masked_fill(same, math.inf).sort(dim=1)  # [n, n]
        finite = torch.isfinite(dn)
        csum = torch.cat([dn.new_zeros(len(dn), 1), dn.where(finite, 0.0).cumsum(1)], 1)  # [n, n + 1]
        thresh = d + self.margin  # [n(anchor), n(positive)]: the hinge is active below it
        hi = torch.searchsorted(dn.detach(), thresh.detach())  # negatives with d_an < thresh
        if self.mining == "semi-hard":
            lo = torch.searchsorted(dn.detach(), d.detach(), right=True)  # d_an <= d_ap: hard
        else:
            lo = torch.zeros_like(hi)
        count = (hi - lo).clamp_min(0)
        hinge_sum = count * thresh - (csum.gather(1, hi) - csum.gather(1, torch.minimum(lo, hi)))  # [n, n]
        n_active = count[pos].sum()  # triplets with a positive hinge (or the semi-hard ones)
        loss = hinge_sum[pos].sum() / n_active.clamp_min(1)
        if self.quant_weight:
            loss = loss + self.quant_weight * ((z.abs() - 1) ** 2).sum(1).mean() / 4
        return loss


def check_triplet_batch(labels: torch.Tensor) -> None:
    """A batch must hold a valid triplet: two classes, and a class with two images.

    Raises:
        ValueError: otherwise, saying how to batch the data.
    """
    classes, counts = labels.unique(return_counts=True)
    if len(classes) < 2:
        raise ValueError(
            f"triplet loss on a batch with {len(classes)} class: a triplet needs a negative "
            "from another class; batch with the class-balanced sampler (P >= 2 classes x K >= 2 "
            "images, --classes-per-batch / --images-per-class)"
        )
    if int(counts.max()) < 2:
        raise ValueError(
            "triplet loss on a batch with one image per class: a triplet needs a positive of "
            "the anchor's class; batch with the class-balanced sampler (K >= 2 images per class, "
            "--images-per-class)"
        )
