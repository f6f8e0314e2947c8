"""AffinityNet in the IRNet form: a frozen backbone and a small boundary head at stride 4."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from puzzlecam.constants import AFFINITY_STRIDE
from puzzlecam.models.backbone import (
    BackboneConfig,
    ImageNormalizer,
    backbone_normalization,
    create_backbone,
    freeze_batchnorm_stats,
)

__all__ = ["AffinityNet"]


def _edge_branch(in_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, 32, kernel_size=1, bias=False),
        nn.GroupNorm(4, 32),
        nn.ReLU(inplace=True),
    )


class AffinityNet(nn.Module):
    """Boundary logits (B, 1, ceil(H/4), ceil(W/4)) from uint8 images (B, 3, H, W).

    Each backbone stage goes through 1x1 conv + GroupNorm + ReLU to 32 channels, is
    resized to the stride-4 grid, and the concatenation is mapped to one boundary map.
    The backbone is frozen (weights and BatchNorm statistics); only the head trains.
    """

    def __init__(self, backbone: BackboneConfig) -> None:
        super().__init__()
        self.normalize = ImageNormalizer(*backbone_normalization(backbone.name))
        self.backbone = create_backbone(backbone)
        for parameter in self.backbone.parameters():
            parameter.requires_grad_(False)
        info = self.backbone.feature_info
        reductions = info.reduction()
        if AFFINITY_STRIDE not in reductions:
            raise ValueError(
                f"backbone {backbone.name} has no stride-{AFFINITY_STRIDE} stage "
                f"(reductions {reductions})"
            )
        self.stride4_index = reductions.index(AFFINITY_STRIDE)
        self.stride: int = reductions[self.stride4_index]  # of the boundary map
        self.branches = nn.ModuleList(_edge_branch(c) for c in info.channels())
        self.fuse = nn.Conv2d(32 * len(self.branches), 1, kernel_size=1, bias=True)
        self.train()

    @property
    def new_modules(self) -> list[nn.Module]:
        return [self.branches, self.fuse]

    def train(self, mode: bool = True) -> AffinityNet:
        super().train(mode)
        self.backbone.eval()
        freeze_batchnorm_stats(self.backbone)
        return self

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            features = self.backbone(self.normalize(images))
        target = features[self.stride4_index].shape[-2:]
        maps = []
        for branch, feature in zip(self.branches, features, strict=True):
            edge = branch(feature.detach())
            if edge.shape[-2:] != target:
                edge = F.interpolate(edge, size=target, mode="bilinear", align_corners=False)
            maps.append(edge)
        return self.fuse(torch.cat(maps, dim=1))
