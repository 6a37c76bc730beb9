"""quality.py's records for issue 15: where the epochs' time went, TTA levels on validation."""

from types import SimpleNamespace

import pytest
import torch

from hashret.data import load_dataset
from hashret.models import create_model
from hashret.training import TrainConfig


@pytest.fixture
def quality(benchmark_module):
    return benchmark_module("quality")


def test_time_split_sums_the_epochs_and_reads_old_histories(quality):
    history = [{"data_seconds": 1.25, "step_seconds": 100.0, "val_seconds": 2.0},
               {"data_seconds": 0.75, "step_seconds": 98.5, "val_seconds": 2.5},
               {"seconds": 50.0}]  # an epoch written before the split existed
    assert quality.time_split(history) == {"data_seconds": 2.0, "step_seconds": 198.5, "val_seconds": 4.5}


def test_rows_differ_by_tta_shift_and_old_rows_read_as_no_shift(quality):
    old = {"bits": 48, "recipe": "airbench", "epochs": 15, "val_fraction": 0.05}
    assert quality.row_key(old) == (48, "airbench", 15, 0.05, 0)
    assert quality.curve_label(old) == "48 bits, airbench, 15 ep, val 5%"
    shifted = old | {"tta_translate": 1}
    assert quality.row_key(shifted) != quality.row_key(old)
    assert quality.curve_label(shifted) == "48 bits, airbench, 15 ep, val 5%, TTA shift 1"


@pytest.mark.slow
def test_tta_on_validation_scores_every_level(quality):
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = create_model("dlbhc", backbone="convnet-small", bits=12, num_classes=10, in_channels=1,
                         input_size=(16, 16)).eval()
    cfg = TrainConfig(dataset="digits", val_fraction=0.2, precision="fp32").resolved(natural=False)
    res = SimpleNamespace(train_config=cfg, model=model, model_config=model.config)
    out = quality.tta_on_validation(res, data)
    assert sorted(out) == ["flip", "flip+translate1", "none"]
    for v in out.values():
        assert 0.0 <= v["val_map"] <= 1.0 and v["encode_s_per_1000"] > 0
