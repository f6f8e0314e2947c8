"""AffinityNet's training step as a module the training loop (and DDP) can wrap."""

from __future__ import annotations

import torch
from torch import nn

from puzzlecam.affinity.loss import affinity_labels, affinity_loss
from puzzlecam.affinity.paths import boundary_to_affinity
from puzzlecam.models.affinitynet import AffinityNet
from puzzlecam.training.loop import LossOutput

__all__ = ["AffinityTrainer"]


class AffinityTrainer(nn.Module):
    """forward(images (B,3,S,S) uint8, labels (B,S/4,S/4) int, progress) -> LossOutput."""

    def __init__(self, model: AffinityNet, radius: int = 10) -> None:
        super().__init__()
        self.model, self.radius = model, radius

    def forward(
        self, images: torch.Tensor, labels: torch.Tensor, progress: float = 0.0
    ) -> LossOutput:
        boundary = torch.sigmoid(self.model(images)[:, 0].float())  # (B, h, w)
        if boundary.shape[-2:] != labels.shape[-2:]:
            raise ValueError(
                f"boundary map {tuple(boundary.shape[-2:])} and label map {tuple(labels.shape[-2:])} "
                "differ: use a crop size divisible by 4 (train_aff.augment.crop_size)"
            )
        affinity = boundary_to_affinity(boundary, self.radius).affinity
        losses = affinity_loss(affinity, affinity_labels(labels, self.radius))
        parts = {
            "loss": losses.loss.detach(),
            "bg_loss": losses.bg_loss.detach(),
            "fg_loss": losses.fg_loss.detach(),
            "neg_loss": losses.neg_loss.detach(),
        }
        return LossOutput(losses.loss, parts)
