"""The triplet ranking loss against hand-worked values and a loop over every triplet."""

import itertools

import pytest
import torch

from hashret.losses import TripletRankingLoss, default_margin
from hashret.models import HashOutput

# four 2-bit relaxed codes, classes 0, 0, 1, 1; d(u, v) = ||z_u - z_v||^2 / 4:
# d01 = 0.25, d02 = 0.25, d03 = 2, d12 = 0.5, d13 = 1.25, d23 = 1.25
Z = torch.tensor([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
Y = torch.tensor([0, 0, 1, 1])


def _out(z):
    return HashOutput(z, z, None)


def test_hand_worked_batch_all():
    # margin 1: (a,p,n) -> max(0, 1 + d_ap - d_an)
    # (0,1,2) 1   (0,1,3) 0   (1,0,2) 0.75   (1,0,3) 0
    # (2,3,0) 2   (2,3,1) 1.75   (3,2,0) 0.25   (3,2,1) 1  -> 6.75 over the 6 active ones
    loss = TripletRankingLoss(bits=2, margin=1.0)(_out(Z), Y)
    assert loss.item() == pytest.approx(6.75 / 6)


def test_hand_worked_semi_hard():
    # semi-hard: d_ap < d_an < d_ap + 1 -> only (1,0,2) with 0.75 and (3,2,0) with 0.25
    loss = TripletRankingLoss(bits=2, margin=1.0, mining="semi-hard")(_out(Z), Y)
    assert loss.item() == pytest.approx((0.75 + 0.25) / 2)


def test_hand_worked_quantization_penalty():
    # sum_j (|z_ij| - 1)^2 / 4 per code: 0, 0.25, 0.25, 0 -> mean 0.125, weight 2
    loss = TripletRankingLoss(bits=2, margin=1.0, quant_weight=2.0)(_out(Z), Y)
    assert loss.item() == pytest.approx(6.75 / 6 + 0.25)


def _reference(z, y, margin, mining):
    """Every triplet in a Python loop; the mean over those with a positive loss."""
    d = ((z[:, None] - z[None]) ** 2).sum(-1) / 4
    terms = []
    for a, p, n in itertools.permutations(range(len(y)), 3):
        if y[a] != y[p] or y[a] == y[n]:
            continue
        if mining == "semi-hard" and not d[a, p] < d[a, n] < d[a, p] + margin:
            continue
        if margin + d[a, p] - d[a, n] > 0:
            terms.append(margin + d[a, p] - d[a, n])
    return torch.stack(terms).mean() if terms else z.sum() * 0


@pytest.mark.parametrize("mining", ["all", "semi-hard"])
def test_matches_the_loop_reference_with_gradients(mining):
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])
    x = torch.randn(9, 6, generator=g)
    z1 = torch.tanh(x).requires_grad_()
    z2 = z1.detach().clone().requires_grad_()
    fast = TripletRankingLoss(bits=6, margin=2.0, mining=mining)(_out(z1), y)
    ref = _reference(z2, y, 2.0, mining)
    fast.backward()
    ref.backward()
    assert fast.item() == pytest.approx(ref.item(), rel=1e-5)
    torch.testing.assert_close(z1.grad, z2.grad, rtol=1e-4, atol=1e-6)


def test_default_margin_is_a_quarter_of_the_bits():
    assert default_margin(16) == 4 and default_margin(64) == 16  # a quarter of the bits
    assert TripletRankingLoss(bits=32).margin == 8


def test_batches_without_a_valid_triplet_are_clear_errors():
    loss = TripletRankingLoss(bits=2)
    with pytest.raises(ValueError, match="1 class.*class-balanced sampler"):
        loss(_out(Z), torch.tensor([3, 3, 3, 3]))
    with pytest.raises(ValueError, match="one image per class.*--images-per-class"):
        loss(_out(Z), torch.tensor([0, 1, 2, 3]))


def test_bad_options():
    with pytest.raises(ValueError, match="margin"):
        TripletRankingLoss(bits=16, margin=0)
    with pytest.raises(ValueError, match="mining"):
        TripletRankingLoss(bits=16, mining="hardest")
