import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from hashret.models import create_model
from hashret.training import TrainConfig, train
from hashret.training.recipes import Lookahead, make_optimizer


def test_airbench_groups_freeze_and_scale():
    m = create_model("dlbhc", backbone="convnet-small", bits=16, num_classes=3, in_channels=1,
                     input_size=(16, 16))
    opt = make_optimizer(m, "airbench", lr=11.5, momentum=0.85, weight_decay=0.0153, batch_size=512)
    assert not m.backbone.whiten.weight.requires_grad
    assert all(not bn.weight.requires_grad for bn in m.modules()
               if isinstance(bn, torch.nn.BatchNorm2d))
    bias_group, other_group = opt.param_groups
    kilostep = 1024 * (1 + 1 / 0.15)
    assert other_group["lr"] == pytest.approx(11.5 / kilostep * 512)
    assert bias_group["lr"] == pytest.approx(64 * other_group["lr"])
    # decoupled decay: lr * weight_decay is the same per-step decay in both groups
    for g in opt.param_groups:
        assert g["lr"] * g["weight_decay"] == pytest.approx(0.0153 / kilostep * 512)


def test_lookahead_hand_values():
    m = torch.nn.Linear(1, 1, bias=False)
    la = Lookahead()
    with torch.no_grad():
        m.weight.fill_(1.0)
        la.step(m, epoch=3, step=5, total=10)  # first call: the average starts at the model
        m.weight.fill_(3.0)
        la.step(m, epoch=3, step=10, total=10)
    rho = 0.95 ** 5 * 1.0 ** 3
    expected = rho * 1.0 + (1 - rho) * 3.0
    assert m.weight.item() == pytest.approx(expected)  # the average was copied back
    with torch.no_grad():
        m.weight.fill_(0.0)
    la.step(m, epoch=2, step=15, total=20)  # before the start epoch: nothing happens
    assert m.weight.item() == 0.0


def test_airbench_recipe_resumes_exactly(tmp_path):
    cfg = TrainConfig(dataset="digits", bits=12, epochs=5, seed=2, recipe="airbench",
                      backbone="convnet-small", precision="fp32")
    full = train(cfg, tmp_path / "full", progress=False)

    def interrupt(stats):  # after epoch 4: the lookahead average is already running
        if stats["epoch"] == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg, tmp_path / "resumed", progress=False, on_epoch_end=interrupt)
    train(cfg, tmp_path / "resumed", resume=True, progress=False)
    wf, wr = load_file(str(tmp_path / "full/last.safetensors")), load_file(
        str(tmp_path / "resumed/last.safetensors"))
    for k in wf:
        np.testing.assert_allclose(wf[k], wr[k], rtol=0, atol=1e-5, err_msg=k)
    assert full.history[-1]["val_acc"] > 0.8  # it learns: 5 short epochs on the digits
    scales = [bn.weight for bn in full.model.modules() if isinstance(bn, torch.nn.BatchNorm2d)]
    assert scales and all(torch.equal(w, torch.ones_like(w)) for w in scales)  # frozen at 1
