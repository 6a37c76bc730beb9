"""The ImageNet backbones have torchvision's state_dict keys, shapes and parameter counts.

The expected layouts are written out from torchvision's ``models/resnet.py`` and
``models/alexnet.py`` (torchvision is not a dependency), so torchvision's weight files load.
"""

import pytest
import torch

from hashret.models import AlexNet, create_backbone, resnet18, resnet50

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix, c):
    return [(f"{prefix}.{k}", () if k == "num_batches_tracked" else (c,)) for k in BN]


def _resnet18_layout():
    """torchvision resnet18: conv1/bn1, 4 stages of 2 BasicBlocks, fc (1000 classes)."""
    keys = [("conv1.weight", (64, 3, 7, 7)), *_bn("bn1", 64)]
    cin = 64
    for stage, c in zip((1, 2, 3, 4), (64, 128, 256, 512), strict=True):
        for block in (0, 1):
            p = f"layer{stage}.{block}"
            keys += [(f"{p}.conv1.weight", (c, cin, 3, 3)), *_bn(f"{p}.bn1", c),
                     (f"{p}.conv2.weight", (c, c, 3, 3)), *_bn(f"{p}.bn2", c)]
            if block == 0 and stage > 1:
                keys += [(f"{p}.downsample.0.weight", (c, cin, 1, 1)), *_bn(f"{p}.downsample.1", c)]
            cin = c
    return keys + [("fc.weight", (1000, 512)), ("fc.bias", (1000,))]


ALEXNET_LAYOUT = [
    ("features.0.weight", (64, 3, 11, 11)), ("features.0.bias", (64,)),
    ("features.3.weight", (192, 64, 5, 5)), ("features.3.bias", (192,)),
    ("features.6.weight", (384, 192, 3, 3)), ("features.6.bias", (384,)),
    ("features.8.weight", (256, 384, 3, 3)), ("features.8.bias", (256,)),
    ("features.10.weight", (256, 256, 3, 3)), ("features.10.bias", (256,)),
    ("classifier.1.weight", (4096, 9216)), ("classifier.1.bias", (4096,)),
    ("classifier.4.weight", (4096, 4096)), ("classifier.4.bias", (4096,)),
    ("classifier.6.weight", (1000, 4096)), ("classifier.6.bias", (1000,)),
]


def _layout(net):
    return [(k, tuple(v.shape)) for k, v in net.state_dict().items()]


def _n_params(net):
    return sum(p.numel() for p in net.parameters())


@pytest.fixture
def meta():
    """Build on the meta device: shapes without memory or initialisation (layouts only)."""
    with torch.device("meta"):
        yield


def test_resnet18_matches_torchvision(meta):
    net = resnet18(num_classes=1000)
    assert _layout(net) == _resnet18_layout()
    assert _n_params(net) == 11_689_512


def test_alexnet_matches_torchvision(meta):
    net = AlexNet(num_classes=1000)
    assert _layout(net) == ALEXNET_LAYOUT
    assert _n_params(net) == 61_100_840


def test_resnet50_parameter_count_and_bottleneck_keys(meta):
    net = resnet50(num_classes=1000)
    assert _n_params(net) == 25_557_032
    sd = net.state_dict()
    assert sd["layer1.0.conv3.weight"].shape == (256, 64, 1, 1)
    assert sd["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert sd["layer4.2.bn3.running_var"].shape == (2048,)


@pytest.mark.parametrize("name,dim,drop", [("resnet18", 512, "fc."), ("alexnet", 4096, "classifier.6.")])
def test_backbones_are_the_nets_without_their_classifier(name, dim, drop, meta):
    layout = _resnet18_layout() if name == "resnet18" else ALEXNET_LAYOUT
    net = create_backbone(name, 3)
    assert _layout(net) == [kv for kv in layout if not kv[0].startswith(drop)]
    assert net.feature_dim == dim
    assert net.eval()(torch.rand(1, 3, 64, 64)).shape == (1, dim)  # on meta: shapes only


def test_small_input_variant_keeps_the_keys_and_the_resolution():
    net = create_backbone("resnet18-cifar", 3)
    layout = dict(_layout(net))
    assert layout.keys() == {k for k, _ in _resnet18_layout() if not k.startswith("fc.")}
    assert layout["conv1.weight"] == (64, 3, 3, 3)  # the 3x3 stride-1 stem
    shapes = []
    net.layer4.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)) and None)
    net.eval()(torch.rand(1, 3, 32, 32))
    assert shapes == [(1, 512, 4, 4)]  # 32 px -> 4x4 (the ImageNet stem would give 1x1)
