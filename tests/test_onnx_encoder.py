"""ONNX export of an Encoder's forward pass: ONNX Runtime gives torch fp32's codes and features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from hashret.encoder import Encoder  # noqa: E402
from hashret.models import create_model  # noqa: E402
from hashret.onnx_encoder import OnnxEncoder, code_agreement, export_onnx, read_metadata  # noqa: E402
from hashret.run import load_run_dataset, open_run  # noqa: E402


def _torch_fp32(encoder: Encoder) -> Encoder:
    return dataclasses.replace(encoder, precision="fp32")


@pytest.fixture(scope="module")
def digits_onnx(digits_run, tmp_path_factory):
    """The digits run's model exported once (the export takes seconds)."""
    run = open_run(digits_run, device="cpu")
    path = tmp_path_factory.mktemp("onnx") / "digits.onnx"
    return export_onnx(run.encoder, path, model_sha256=run.model_sha256)


def test_digits_export_gives_torch_fp32_codes_and_features(digits_run, digits_onnx):
    run = open_run(digits_run, device="cpu")
    encoder = run.encoder
    images = load_run_dataset(run).test.images[:128]  # uint8[128, 8, 8, 1], resized to 16x16 in the graph
    onnx = OnnxEncoder(digits_onnx)
    got, ref = onnx.encode(images, batch_size=50), _torch_fp32(encoder).encode(images)
    assert np.array_equal(got.codes, ref.codes)
    np.testing.assert_allclose(got.features, ref.features, atol=1e-4)
    np.testing.assert_allclose(got.latent, ref.latent, atol=1e-5)
    assert (onnx.bits, onnx.image_shape, onnx.threshold, onnx.classes) == (
        encoder.bits, encoder.image_shape, encoder.threshold, encoder.classes)
    assert read_metadata(onnx.path)["model_sha256"] == run.model_sha256
    one = onnx.encode(images[:1])  # the batch axis is dynamic: 1 works as 50 does
    assert np.array_equal(one.codes, got.codes[:1])


def test_flip_averaging_and_resize_happen_inside_the_graph(tmp_path):
    """An RGB model at 16x16 fed 20x24 images with tta_flip: the graph resizes (antialiased)
    and averages the image and its mirror, as torch does."""
    import torch

    torch.manual_seed(0)
    model = create_model("dlbhc", backbone="convnet-small", bits=24, num_classes=3, in_channels=3,
                         input_size=(16, 16), mean=(0.4, 0.5, 0.6), std=(0.2, 0.25, 0.3)).eval()
    encoder = Encoder(model, 24, (20, 24, 3), True, "fp32", "cpu", ("a", "b", "c"))
    images = np.random.default_rng(0).integers(0, 256, (40, 20, 24, 3), dtype=np.uint8)
    got = OnnxEncoder.from_encoder(encoder, tmp_path / "rgb.onnx").encode(images)
    ref = encoder.encode(images)
    assert np.array_equal(got.codes, ref.codes)
    np.testing.assert_allclose(got.features, ref.features, atol=1e-4)
    unflipped = dataclasses.replace(encoder, tta_flip=False).encode(images)
    assert np.abs(unflipped.features - ref.features).max() > 1e-3  # the flip does change the features


def test_translate_averaging_happens_inside_the_graph(tmp_path):
    """tta_translate (airbench94's shifted views, reflect padding) with the mirror: 6 weighted views."""
    import torch

    torch.manual_seed(1)
    model = create_model("dlbhc", backbone="convnet-small", bits=16, num_classes=2, in_channels=3,
                         input_size=(12, 12)).eval()
    encoder = Encoder(model, 16, (12, 12, 3), True, "fp32", "cpu", ("a", "b"), tta_translate=2)
    images = np.random.default_rng(1).integers(0, 256, (24, 12, 12, 3), dtype=np.uint8)
    onnx = OnnxEncoder.from_encoder(encoder, tmp_path / "t.onnx")
    got, ref = onnx.encode(images), encoder.encode(images)
    assert onnx.tta_translate == 2 and np.array_equal(got.codes, ref.codes)
    np.testing.assert_allclose(got.features, ref.features, atol=1e-4)
    np.testing.assert_allclose(got.latent, ref.latent, atol=1e-5)


def test_bf16_encoder_differs_from_the_fp32_graph_only_near_the_threshold(digits_run, digits_onnx):
    """A bf16 Encoder (the training arithmetic on CPUs with native bf16) against ONNX Runtime's fp32:
    the bits that differ are those whose activation lies within bf16's rounding of the threshold."""
    run = open_run(digits_run, device="cpu")
    encoder = dataclasses.replace(run.encoder, precision="bf16")
    images = load_run_dataset(run).test.images[:200]
    got, ref = OnnxEncoder(digits_onnx).encode(images), encoder.encode(images)
    diff = code_agreement(got, ref, encoder.bits)
    assert diff["max_hamming"] <= 2 and diff["bit_fraction"] < 0.01
    flipped = got.latent[(got.latent > 0.5) != (ref.latent > 0.5)]
    assert np.all(np.abs(flipped - 0.5) < 0.02)  # bf16 keeps 8 bits of mantissa


def test_onnx_encoder_refuses_other_shapes_and_foreign_files(digits_onnx, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    enc = OnnxEncoder(digits_onnx)
    with pytest.raises(ValueError, match=r"uint8 \[n, 8, 8, 1\]"):
        enc.encode(np.zeros((2, 8, 8, 3), np.uint8))
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    identity = helper.make_node("Identity", ["x"], ["y"])
    foreign = helper.make_model(helper.make_graph([identity], "g", [x], [y]))
    onnx.save(foreign, str(tmp_path / "foreign.onnx"))
    with pytest.raises(ValueError, match="hashret export-onnx"):
        OnnxEncoder(tmp_path / "foreign.onnx")
    with pytest.raises(FileNotFoundError, match="hashret export-onnx"):
        OnnxEncoder(tmp_path / "missing.onnx")


@pytest.mark.slow
def test_export_onnx_command_from_a_run(digits_run, tmp_path, capsys):
    from hashret.cli import main

    out = tmp_path / "m.onnx"
    assert main(["export-onnx", str(digits_run), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert f"wrote {out}" in text and "0 codes differ from torch fp32's" in text
    assert OnnxEncoder(out).bits == 16
