"""The airbench94 recipe: its defaults and schedule by hand, alternating flips, translate TTA."""

import numpy as np
import pytest
import torch

from hashret.encode import encode_images, tta_views
from hashret.models import create_model
from hashret.run import open_run
from hashret.training import TrainConfig, train
from hashret.training.augment import alternating_flips, augment
from hashret.training.inputs import PixelInputs
from hashret.training.recipes import make_lookahead, make_optimizer
from hashret.training.schedule import one_cycle


def test_airbench94_defaults_and_overrides():
    cfg = TrainConfig(dataset="cifar10", recipe="airbench94", device="cpu").resolved(natural=True)
    assert (cfg.batch_size, cfg.epochs, cfg.lr, cfg.momentum) == (512, 10, 11.5, 0.85)
    assert cfg.weight_decay == 0.0153
    assert (cfg.backbone, cfg.alternate_flip, cfg.flip, cfg.tta_flip, cfg.tta_translate, cfg.pad) == (
        "convnet-airbench94", True, True, True, 1, 2)
    assert cfg.label_smoothing == 0.2
    mine = TrainConfig(dataset="cifar10", recipe="airbench94", batch_size=1024, epochs=3, backbone="convnet",
                       alternate_flip=False, tta_translate=0).resolved(natural=True)
    assert (mine.batch_size, mine.epochs, mine.backbone, mine.alternate_flip, mine.tta_translate) == (
        1024, 3, "convnet", False, 0)
    assert TrainConfig(dataset="cifar10", tta_translate=1).resolved(natural=True).tta_translate == 1
    with pytest.raises(ValueError, match="--tta-translate"):
        TrainConfig(dataset="cifar10", tta_translate=-1).resolved(natural=True)
    grey = TrainConfig(dataset="digits", recipe="airbench94").resolved(natural=False)
    assert (grey.flip, grey.tta_translate) == (False, 0)
    # the older recipes keep their behaviour
    old = TrainConfig(dataset="cifar10", recipe="airbench").resolved(natural=True)
    assert (old.batch_size, old.epochs, old.backbone, old.alternate_flip, old.tta_translate) == (
        512, 12, "convnet", False, 0)
    assert make_lookahead("airbench94") is not None and make_lookahead("sgd") is None


def test_saved_config_without_new_options_reads_as_before():
    d = TrainConfig(dataset="cifar10", recipe="airbench").resolved(natural=True).to_dict()
    del d["alternate_flip"], d["tta_translate"]
    back = TrainConfig.from_dict(d)
    assert (back.alternate_flip, back.tta_translate) == (False, 0)


def test_airbench94_step_values_by_hand():
    # 47,500 training images (5% validation) in batches of 512: 93 steps, 930 in 10 epochs
    m = create_model("dlbhc", backbone="convnet-airbench94", bits=48, num_classes=10, in_channels=3,
                     input_size=(32, 32))
    opt = make_optimizer(m, "airbench94", lr=11.5, momentum=0.85, weight_decay=0.0153, batch_size=512)
    bias_group, other_group = opt.param_groups
    # 11.5 / (1024 (1 + 1 / 0.15)) per example, times 512 = 11.5 / 7.6667 / 2 = 0.75
    assert other_group["lr"] == pytest.approx(0.75)
    assert bias_group["lr"] == pytest.approx(48.0)
    # decay per step 0.0153 / 7.6667 / 2, whatever the group's rate
    assert other_group["lr"] * other_group["weight_decay"] == pytest.approx(0.0153 * 0.15 / 1.15 / 2)
    assert bias_group["lr"] * bias_group["weight_decay"] == pytest.approx(0.0153 * 0.15 / 1.15 / 2)
    total = 930  # warm-up ends at int(0.23 * 930) = 213
    assert one_cycle(0, total) == pytest.approx(0.2)
    assert one_cycle(71, total) == pytest.approx(0.2 + 0.8 / 3)
    assert one_cycle(213, total) == pytest.approx(1.0)
    assert one_cycle(571, total) == pytest.approx(1 - 358 / 717 * 0.93)
    assert one_cycle(930, total) == pytest.approx(0.07)


def test_alternating_flips_mirror_what_the_epoch_before_did_not():
    n = 1000
    first = alternating_flips(n, 0, seed=3)
    assert torch.equal(first, alternating_flips(n, 0, seed=3))  # deterministic
    assert 400 < int(first.sum()) < 600
    for e in range(1, 5):
        assert torch.equal(alternating_flips(n, e, seed=3), ~alternating_flips(n, e - 1, seed=3))
    assert not torch.equal(first, alternating_flips(n, 0, seed=4))


def test_pixel_inputs_follow_the_flip_schedule():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 4, 5), dtype=torch.uint8, generator=g)
    inputs = PixelInputs(images, device="cpu", precision="fp32", channels_last=False, flip=True,
                         alternate_flip=True, seed=1)
    idx = torch.tensor([4, 0, 2])
    x = images[idx].float() / 255
    for epoch in (0, 1):
        inputs.start_epoch(epoch)
        mask = alternating_flips(6, epoch, seed=1)[idx]
        got = augment(x, pad=0, flip=True, generator=g, flip_mask=mask)
        for row, flipped in enumerate(mask.tolist()):
            assert torch.equal(got[row], x[row].flip(2) if flipped else x[row])
        assert torch.equal(inputs.flip_mask[idx], mask)


def test_convnet_airbench94_shapes_scale_and_batchnorm():
    net = create_model("dlbhc", backbone="convnet-airbench94-scaled", bits=16, num_classes=10, in_channels=3,
                       input_size=(32, 32)).backbone.eval()
    sizes = []
    hooks = [g.register_forward_hook(lambda mod, i, o: sizes.append(o.shape[-1])) for g in net.groups]
    x = torch.rand(2, 3, 32, 32)
    f = net(x)
    for h in hooks:
        h.remove()
    assert sizes == [15, 7, 3]  # airbench94's floor pools after the 2x2 whitening conv (31 px)
    unscaled = net.pool(net.groups(net.act(net.whiten(x)))).flatten(1)
    torch.testing.assert_close(f, unscaled / 9)
    assert all(m.eps == 1e-12 for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    plain = create_model("dlbhc", backbone="convnet-airbench94", bits=16, num_classes=10, in_channels=3,
                         input_size=(32, 32)).backbone
    assert plain.feature_scale == 1.0 and not plain.center_patches


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = create_model("dlbhc", backbone="convnet-small", bits=16, num_classes=3, in_channels=3,
                     input_size=(12, 12))
    return m.eval()


def test_translate_tta_equals_hand_mean_and_is_the_same_for_queries_and_database():
    m = _tiny_model()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (7, 12, 12, 3), dtype=np.uint8)
    db = encode_images(m, images, batch_size=4, tta_flip=True, tta_translate=1)
    queries = encode_images(m, images[[5, 1]], batch_size=500, tta_flip=True, tta_translate=1)
    np.testing.assert_array_equal(queries.codes, db.codes[[5, 1]])
    np.testing.assert_allclose(queries.latent, db.latent[[5, 1]], rtol=0, atol=1e-6)
    # by hand: 0.5 (x, mirror) + 0.25 (shift up-left, mirror) + 0.25 (shift down-right, mirror)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    pad = torch.nn.functional.pad(x, (1, 1, 1, 1), mode="reflect")
    views = [(0.25, x), (0.25, x.flip(3)), (0.125, pad[..., :12, :12]), (0.125, pad[..., :12, :12].flip(3)),
             (0.125, pad[..., 2:, 2:]), (0.125, pad[..., 2:, 2:].flip(3))]
    with torch.no_grad():
        feats = [m.forward_features(v) for _, v in views]
        latent = sum(w * m.forward_latent(f) for (w, _), f in zip(views, feats, strict=True))
        features = sum(w * f for (w, _), f in zip(views, feats, strict=True))
    np.testing.assert_allclose(db.latent, latent.numpy(), rtol=0, atol=1e-5)
    np.testing.assert_allclose(db.features, features.numpy(), rtol=0, atol=1e-5)
    assert sum(w for w, _ in tta_views(x, tta_flip=True, tta_translate=1)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="--tta-translate 12"):
        encode_images(m, images, tta_translate=12)
    # no translation: the flip-only encoding, unchanged
    flip_only = encode_images(m, images, tta_flip=True)
    with torch.no_grad():
        z = (m.forward_latent(m.forward_features(x)) + m.forward_latent(m.forward_features(x.flip(3)))) / 2
    np.testing.assert_allclose(flip_only.latent, z.numpy(), rtol=0, atol=1e-6)


def test_one_digits_epoch_with_the_recipe_records_its_timing_and_tta(tmp_path):
    cfg = TrainConfig(dataset="digits", recipe="airbench94", epochs=1, batch_size=256, bits=12,
                      tta_translate=1, precision="fp32", threads=1)
    res = train(cfg, tmp_path / "run", progress=False)
    h = res.history[0]
    for key in ("data_seconds", "step_seconds", "val_seconds", "seconds"):
        assert h[key] >= 0
    assert h["data_seconds"] + h["step_seconds"] + h["val_seconds"] <= h["seconds"] + 0.05
    assert res.model_config.backbone == "convnet-airbench94"
    assert res.train_config.alternate_flip and res.train_config.tta_translate == 1
    enc = open_run(tmp_path / "run", device="cpu").encoder
    assert enc.tta_translate == 1
    record = enc.record(tmp_path / "run" / "model.safetensors")
    assert record["tta_translate"] == 1


def test_onnx_export_reproduces_translate_tta(tmp_path):
    pytest.importorskip("onnxruntime")
    from hashret.encoder import Encoder
    from hashret.onnx_encoder import OnnxEncoder

    enc = Encoder(_tiny_model(), 16, (12, 12, 3), True, "fp32", "cpu", ("a", "b", "c"), tta_translate=1)
    images = np.random.default_rng(0).integers(0, 256, (16, 12, 12, 3), dtype=np.uint8)
    onnx = OnnxEncoder.from_encoder(enc, tmp_path / "m.onnx")  # the 6 weighted views inside the graph
    assert onnx.tta_translate == 1 and np.array_equal(onnx.encode(images).codes, enc.encode(images).codes)
