"""The triplet method's model: tanh codes, sign quantization without a third value."""

import numpy as np
import torch

from hashret.codes import unpack
from hashret.encode import encode_images
from hashret.models import create_model, sign_codes


def test_sign_codes_never_give_zero():
    z = torch.tensor([[0.5, -0.2, 0.0, -0.0], [1e-8, -1e-8, 0.0, 0.99]])
    s = sign_codes(z)
    assert torch.equal(s, torch.tensor([[1.0, -1.0, -1.0, -1.0], [1.0, -1.0, -1.0, 1.0]]))


def test_encoded_bits_are_the_sign_and_zero_maps_to_bit_0():
    torch.manual_seed(0)
    m = create_model("triplet", backbone="lenet", bits=8, num_classes=2, in_channels=1,
                     input_size=(16, 16)).eval()
    assert m.threshold == 0.0
    with torch.no_grad():  # make two latent units exactly 0: zero weights and biases
        m.latent.weight[:2] = 0
        m.latent.bias[:2] = 0
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 1), dtype=np.uint8)
    enc = encode_images(m, images)
    bits = unpack(enc.codes, 8)
    assert set(np.unique(bits)) <= {0, 1}
    assert (enc.latent[:, :2] == 0).all() and (bits[:, :2] == 0).all()  # sign(0) -> -1 -> bit 0
    np.testing.assert_array_equal(bits, (enc.latent > 0).astype(np.uint8))
    np.testing.assert_array_equal(2 * bits.astype(np.float32) - 1, sign_codes(torch.from_numpy(enc.latent)))
