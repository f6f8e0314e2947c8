"""The segmentation model's training step: cross-entropy, 255 ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from puzzlecam.constants import IGNORE_INDEX
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.training.loop import LossOutput

__all__ = ["SegmentationTrainer"]


class SegmentationTrainer(nn.Module):
    """forward(images (B,3,S,S) uint8, labels (B,S,S) int64, progress) -> LossOutput."""

    def __init__(self, model: Segmenter) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor, progress: float = 0.0
    ) -> LossOutput:
        logits = self.model(images)
        loss = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)
        return LossOutput(loss, {"loss": loss.detach()})
