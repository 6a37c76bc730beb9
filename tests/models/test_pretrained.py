"""ImageNet weight loading: files the test writes itself, the offline error, wrong architectures."""

import urllib.error

import pytest
import torch

from hashret.models import AlexNet, create_model, load_pretrained, resnet18
from hashret.models.pretrained import DOWNLOAD, weights_url


def _model(backbone="resnet18", channels=3, size=32):
    return create_model("triplet", backbone=backbone, bits=16, num_classes=3,
                        in_channels=channels, input_size=(size, size))


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    """A torchvision-layout resnet18 weight file (with its 1000-class fc), as torch.save writes it."""
    torch.manual_seed(0)
    net = resnet18(num_classes=1000)
    for m in net.modules():  # non-trivial BatchNorm statistics, so they are checked too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    path = tmp_path_factory.mktemp("weights") / "resnet18-test.pth"
    torch.save(net.state_dict(), path)
    return path, net.state_dict()


def test_weight_file_round_trip(resnet18_file):
    path, saved = resnet18_file
    model = _model()
    assert load_pretrained(model.backbone, "resnet18", path) == []
    loaded = model.backbone.state_dict()
    assert set(loaded) == {k for k in saved if not k.startswith("fc.")}
    for k, v in loaded.items():
        assert torch.equal(v, saved[k]), k


def test_grey_model_sums_the_rgb_filters(resnet18_file):
    path, saved = resnet18_file
    model = _model(channels=1)
    load_pretrained(model.backbone, "resnet18", path)
    assert torch.allclose(model.backbone.conv1.weight, saved["conv1.weight"].sum(1, keepdim=True))


def test_small_input_variant_keeps_its_own_stem(resnet18_file):
    path, saved = resnet18_file
    model = _model("resnet18-cifar")
    stem = model.backbone.conv1.weight.detach().clone()
    assert load_pretrained(model.backbone, "resnet18-cifar", path) == ["conv1.weight"]
    assert torch.equal(model.backbone.conv1.weight, stem)
    assert torch.equal(model.backbone.layer4[1].conv2.weight, saved["layer4.1.conv2.weight"])


def test_weight_file_of_another_architecture_is_refused(tmp_path):
    path = tmp_path / "alexnet-features.pth"  # the convolutions of an AlexNet file (small to write)
    with torch.device("meta"):
        net = AlexNet(num_classes=1000)
    torch.save(net.features.to_empty(device="cpu").state_dict(prefix="features."), path)
    with pytest.raises(ValueError, match=r"does not fit backbone 'resnet18' \(it looks like alexnet.*"
                                         r"resnet18-f37072fd\.pth"):
        load_pretrained(_model().backbone, "resnet18", path)


def test_missing_or_unreadable_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_pretrained(_model().backbone, "resnet18", tmp_path / "nope.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a weight file")
    with pytest.raises(ValueError, match="not a readable weight file"):
        load_pretrained(_model().backbone, "resnet18", tmp_path / "junk.pth")


def test_offline_download_names_the_file_to_fetch(monkeypatch):
    calls = []

    def offline(url, **kwargs):
        calls.append(url)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"could not download .*resnet18-f37072fd\.pth.*"
                                           r"--pretrained /path/to/resnet18-f37072fd\.pth"):
        load_pretrained(_model().backbone, "resnet18", DOWNLOAD)
    assert calls == ["https://download.pytorch.org/models/resnet18-f37072fd.pth"]


def test_backbone_without_published_weights():
    assert weights_url("alexnet").endswith("alexnet-owt-7be5be79.pth")
    with pytest.raises(ValueError, match="no published pretrained weights.*resnet18"):
        load_pretrained(_model("convnet-small", size=16).backbone, "convnet-small", DOWNLOAD)
