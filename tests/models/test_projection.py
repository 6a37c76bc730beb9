"""The unsupervised hash head (PCA-sign, ITQ, LSH): codes against numpy references, checkpoint round trip."""

import numpy as np
import pytest
import torch

from hashret.baselines.itq import ITQ
from hashret.baselines.lsh import LSH
from hashret.codes import encode
from hashret.models import ModelConfig, ProjectionHash, create_model
from hashret.training.checkpoint import load_model, save_checkpoint
from hashret.unsupervised import fit_model, fit_projection


def features(n=300, d=128, seed=0):  # convnet-small has 128 features
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, 6)) @ rng.standard_normal((6, d)) * 3
            + rng.standard_normal((n, d)) + 5).astype(np.float32)


def pca_sign_reference(x, bits):
    """sign of the centred projection on the top principal directions (numpy eigh, largest entry > 0)."""
    x = x.astype(np.float64)
    c = x - x.mean(0)
    vals, vecs = np.linalg.eigh(c.T @ c / (len(x) - 1))
    top = vecs[:, np.argsort(vals)[::-1][:bits]]
    top = top * np.sign(top[np.argmax(np.abs(top), 0), np.arange(bits)])
    return encode(c @ top, threshold=0.0)


def head_codes(method, x, bits, seed=0):
    model = create_model(method, backbone="convnet-small", bits=bits, num_classes=0, in_channels=3,
                         input_size=(16, 16))
    assert isinstance(model, ProjectionHash) and model.threshold == 0.0
    fit_model(model, x, seed=seed)
    with torch.no_grad():
        latent = model.forward_latent(torch.from_numpy(x)).numpy()
    return encode(latent, threshold=0.0)


def test_pca_sign_is_the_sign_of_the_centred_principal_components():
    x = features()
    np.testing.assert_array_equal(head_codes("pca-sign", x, 16), pca_sign_reference(x, 16))


@pytest.mark.parametrize("method,baseline", [("itq", ITQ), ("lsh", LSH)])
def test_itq_and_lsh_heads_give_the_baselines_codes(method, baseline):
    x = features(seed=1)
    np.testing.assert_array_equal(head_codes(method, x, 16, seed=3), baseline(16, seed=3).fit(x).encode(x))


def test_constant_feature_columns_get_no_weight():
    x = features(d=20)
    x[:, 4] = 1.5  # a dead ReLU unit: the same for every image
    mean, proj = fit_projection(x, "itq", 8)
    assert (proj[4] == 0).all() and proj.shape == (20, 8)
    assert np.isfinite(mean).all()


def test_checkpoint_round_trip_gives_identical_codes(tmp_path):
    torch.manual_seed(0)
    model = create_model("itq", backbone="convnet-small", bits=12, num_classes=0, in_channels=3,
                         input_size=(16, 16)).eval()
    imgs = torch.rand(40, 3, 16, 16)
    with torch.no_grad():
        fit_model(model, model.forward_features(imgs).numpy())
        before = model(imgs)
    save_checkpoint(tmp_path / "model.safetensors", model, model.config)
    loaded, cfg = load_model(tmp_path / "model.safetensors")
    assert cfg == model.config and isinstance(loaded, ProjectionHash)
    with torch.no_grad():
        after = loaded(imgs)
    assert after.logits is None
    np.testing.assert_array_equal(encode(before.latent.numpy(), 0.0), encode(after.latent.numpy(), 0.0))
    assert torch.equal(loaded.head.projection, model.head.projection)


def test_only_label_free_methods_may_have_no_classes():
    ModelConfig("pca-sign", "convnet", 32, 0, 3, (32, 32))
    with pytest.raises(ValueError, match="needs >= 2 classes"):
        ModelConfig("dlbhc", "convnet", 32, 0, 3, (32, 32))


def test_a_projection_of_the_wrong_shape_is_refused():
    model = create_model("itq", backbone="convnet-small", bits=8, num_classes=0, in_channels=3,
                         input_size=(16, 16))
    with pytest.raises(ValueError, match="projection"):
        model.set_projection(np.zeros(3), np.zeros((3, 8)))


def test_too_few_images_for_the_bits_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 16 images"):
        fit_projection(features(n=10), "itq", 16)
