import pytest
import torch

from hashret.models import ModelConfig, create_model, get_backbone_spec, list_backbones, list_methods


def make(backbone="convnet-small", bits=16, channels=3, size=(16, 16), method="dlbhc", **kw):
    return create_model(method, backbone=backbone, bits=bits, num_classes=5,
                        in_channels=channels, input_size=size, **kw)


SMALL = ["convnet", "convnet-small", "lenet"]  # cheap enough to check every combination


@pytest.mark.parametrize("method,backbone,channels", [
    *[("dlbhc", b, 3) for b in list_backbones()],  # every backbone
    *[("dlbhc", b, 1) for b in SMALL],  # grey input
    *[(m, "convnet-small", c) for m in list_methods() if m != "dlbhc" for c in (1, 3)],  # every head
])
def test_contract_shapes_finite_and_gradients(method, backbone, channels):
    torch.manual_seed(0)
    side = max(16, get_backbone_spec(backbone).min_input_size)  # the smallest input it takes
    m = make(backbone, bits=12, channels=channels, size=(side, side), method=method)
    out = m(torch.rand(2, channels, side, side))
    assert out.features.shape == (2, m.feature_dim)
    assert out.latent.shape == (2, 12)
    if method == "dlbhc":
        assert out.logits.shape == (2, 5)
        assert ((out.latent > 0) & (out.latent < 1)).all()  # sigmoid
        (out.logits.sum() + out.latent.sum()).backward()
    else:
        assert out.logits is None
        if method == "triplet":
            assert ((out.latent > -1) & (out.latent < 1)).all()  # tanh
        out.latent.sum().backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_input_smaller_than_the_backbone_takes_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 63 px.*--input-size"):
        make("alexnet", size=(32, 32))


@pytest.mark.parametrize("size", [(8, 8), (28, 28), (32, 32), (45, 30)])
def test_any_input_size_is_resized(size):
    m = make(size=(16, 16)).eval()
    assert m(torch.rand(2, 3, *size)).latent.shape == (2, 16)


def test_wrong_channels_is_a_clear_error():
    with pytest.raises(ValueError, match="channel"):
        make(channels=1)(torch.rand(1, 3, 16, 16))


@pytest.mark.parametrize("bits", [8, 12, 16, 32, 48, 64, 128, 256])
def test_code_lengths(bits):
    assert make(bits=bits).latent.out_features == bits


def test_config_validation_and_round_trip():
    cfg = ModelConfig("dlbhc", "convnet", 48, 10, 3, (32, 32), (0.5,) * 3, (0.2,) * 3,
                      tuple("abcdefghij"))
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="between 8 and 256"):
        ModelConfig("dlbhc", "convnet", 300, 10, 3, (32, 32))
    with pytest.raises(ValueError, match="unknown backbone"):
        make(backbone="nope")
    with pytest.raises(ValueError, match="unknown method"):
        create_model("nope", backbone="convnet", bits=8, num_classes=2, in_channels=1,
                      input_size=(16, 16))


def test_whitening_init_whitens_patches():
    torch.manual_seed(0)
    m = make(channels=1)
    x = torch.randn(64, 1, 16, 16).cumsum(3)  # strongly correlated neighbouring pixels
    m.backbone.init_from_data(x)
    y = m.backbone.whiten(x - x.mean())[:, :4]  # the positive half of the filters
    cov = torch.cov(y.permute(1, 0, 2, 3).reshape(4, -1))
    assert torch.allclose(cov, torch.eye(4), atol=0.05)
