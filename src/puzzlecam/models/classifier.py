"""The CAM classifier: backbone -> bias-free 1x1 conv -> class maps; logits = GAP(maps)."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from puzzlecam.models.backbone import (
    BackboneConfig,
    ImageNormalizer,
    backbone_normalization,
    create_backbone,
    freeze_batchnorm_stats,
)

__all__ = ["ClassifierOutput", "CamClassifier"]


class ClassifierOutput(NamedTuple):
    logits: torch.Tensor  # (B, C)
    cams: torch.Tensor  # (B, C, h, w) raw class maps, before ReLU


class CamClassifier(nn.Module):
    """Multi-label classifier whose class maps are the CAMs.

    Takes uint8 (or 0..255 float) images (B, 3, H, W) and normalises them itself with
    the backbone's statistics. ``stride``: the class maps' output stride, read from the
    backbone's ``feature_info`` (16 for the paper's backbones).
    """

    def __init__(self, backbone: BackboneConfig, num_classes: int) -> None:
        super().__init__()
        self.norm_mode = backbone.norm
        self.normalize = ImageNormalizer(*backbone_normalization(backbone.name))
        self.backbone = create_backbone(backbone)
        channels = self.backbone.feature_info.channels()[-1]
        self.stride: int = self.backbone.feature_info.reduction()[-1]
        self.classifier = nn.Conv2d(channels, num_classes, kernel_size=1, bias=False)
        nn.init.kaiming_normal_(self.classifier.weight)
        self.train()

    @property
    def new_modules(self) -> list[nn.Module]:
        """Modules trained from scratch (10x learning rate in the reference)."""
        return [self.classifier]

    def train(self, mode: bool = True) -> CamClassifier:
        super().train(mode)
        if self.norm_mode == "fix":
            freeze_batchnorm_stats(self.backbone)
        return self

    def forward(self, images: torch.Tensor) -> ClassifierOutput:
        features = self.backbone(self.normalize(images))[-1]  # (B, F, h, w)
        cams = self.classifier(features)  # (B, C, h, w)
        return ClassifierOutput(logits=cams.mean(dim=(2, 3)), cams=cams)
