"""DeepLabV3+ from segmentation-models-pytorch over a timm encoder."""

from __future__ import annotations

from typing import Literal

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from puzzlecam.models.backbone import (
    BackboneConfig,
    ImageNormalizer,
    backbone_normalization,
    check_model_name,
    freeze_batchnorm_stats,
)
from puzzlecam.models.pretrained import download_failed, load_pretrained

__all__ = ["Segmenter", "batchnorm_to_groupnorm"]


def batchnorm_to_groupnorm(module: nn.Module, groups: int = 4) -> nn.Module:
    """Replace every BatchNorm2d below ``module`` by GroupNorm(groups, C) (the reference's head)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, nn.GroupNorm(groups, child.num_features))
        else:
            batchnorm_to_groupnorm(child, groups)
    return module


class Segmenter(nn.Module):
    """uint8 images (B, 3, H, W) -> class logits (B, C+1, H, W), any H and W.

    Images are padded to a multiple of 32 for the encoder and the logits cropped back.
    """

    def __init__(
        self,
        backbone: BackboneConfig,
        num_labels: int,
        head_norm: Literal["batch", "group"] = "group",
    ) -> None:
        super().__init__()
        check_model_name(backbone.name)  # smp's "Unknown model" is a bare RuntimeError
        self.norm_mode = backbone.norm
        mean, std = backbone_normalization(backbone.name)
        self.normalize = ImageNormalizer(mean, std)
        try:
            self.network = smp.DeepLabV3Plus(
                encoder_name=f"tu-{backbone.name}",
                encoder_weights=True if backbone.pretrained == "timm" else None,
                encoder_output_stride=backbone.output_stride,
                classes=num_labels,
            )
        except OSError as error:  # the hub's and urllib's network errors are OSErrors
            if backbone.pretrained != "timm":
                raise
            raise download_failed(backbone.name, error) from error
        if backbone.pretrained not in ("timm", "none"):
            load_pretrained(self.network.encoder.model, backbone.name, backbone.pretrained)
        if head_norm == "group":
            batchnorm_to_groupnorm(self.network.decoder)
        self.train()

    @property
    def new_modules(self) -> list[nn.Module]:
        return [self.network.decoder, self.network.segmentation_head]

    def train(self, mode: bool = True) -> Segmenter:
        super().train(mode)
        if self.norm_mode == "fix":
            freeze_batchnorm_stats(self.network.encoder)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        x = self.normalize(images)
        pad_h, pad_w = (-height) % 32, (-width) % 32
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        return self.network(x)[..., :height, :width]
