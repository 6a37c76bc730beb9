import numpy as np
import pytest
import torch

from hashret.models import create_model
from hashret.training.augment import random_crop, random_flip
from hashret.training.checkpoint import load_model, load_weights, read_checkpoint_config, save_checkpoint
from hashret.training.schedule import one_cycle


def _model(bits=16):
    torch.manual_seed(0)
    return create_model("dlbhc", backbone="convnet-small", bits=bits, num_classes=3,
                        in_channels=1, input_size=(16, 16), classes=("a", "b", "c"))


def test_checkpoint_alone_rebuilds_the_model(tmp_path):
    m = _model().eval()
    save_checkpoint(tmp_path / "model.safetensors", m, m.config, {"epoch": 3})
    m2, cfg = load_model(tmp_path / "model.safetensors")
    assert cfg == m.config
    x = torch.rand(3, 1, 16, 16)
    torch.testing.assert_close(m(x).latent, m2(x).latent, rtol=0, atol=0)
    assert read_checkpoint_config(tmp_path)[1] == {"epoch": 3}


def test_checkpoint_of_another_model_is_refused(tmp_path):
    m = _model(bits=16)
    save_checkpoint(tmp_path / "model.safetensors", m, m.config)
    with pytest.raises(ValueError, match="another model"):
        load_weights(_model(bits=32), tmp_path / "model.safetensors")


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="safetensors"):
        load_model(tmp_path)
    with pytest.raises(FileNotFoundError, match="hashret train"):
        load_model(tmp_path / "missing")


def test_random_crop_is_a_shift_of_the_padded_image():
    g = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6)
    y = random_crop(x, 2, g)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(2):
        assert any(torch.equal(y[i], padded[i, :, a:a + 6, b:b + 6])
                   for a in range(5) for b in range(5))
    assert torch.equal(random_crop(x, 0, g), x)


def test_random_flip_flips_about_half():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 1, 4, 4)
    y = random_flip(x, g)
    flipped = np.array([torch.equal(y[i], x[i].flip(2)) for i in range(400)])
    assert 150 < flipped.sum() < 250
    assert all(torch.equal(y[i], x[i]) for i in np.flatnonzero(~flipped))


def test_one_cycle_hand_values():
    assert one_cycle(0, 100) == pytest.approx(0.2)
    assert one_cycle(23, 100) == pytest.approx(1.0)
    assert one_cycle(99, 100) == pytest.approx(1 + (0.07 - 1) * 76 / 77)
