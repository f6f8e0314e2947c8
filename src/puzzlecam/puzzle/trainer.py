"""The classifier's training step as a module the training loop (and DDP) can wrap."""

from __future__ import annotations

import torch
from torch import nn

from puzzlecam.models.classifier import CamClassifier
from puzzlecam.puzzle.losses import PuzzleConfig, puzzle_losses
from puzzlecam.training.loop import LossOutput

__all__ = ["PuzzleCamTrainer"]


class PuzzleCamTrainer(nn.Module):
    """forward(images (B,3,S,S) uint8, targets (B,C), progress) -> LossOutput."""

    def __init__(self, model: CamClassifier, config: PuzzleConfig) -> None:
        super().__init__()
        self.model, self.config = model, config

    def forward(
        self, images: torch.Tensor, targets: torch.Tensor, progress: float = 0.0
    ) -> LossOutput:
        losses = puzzle_losses(self.model, images, targets, self.config, progress)
        parts = {
            "loss": losses.total.detach(),
            "cls_loss": losses.classification.detach(),
            "pcls_loss": losses.puzzle_classification.detach(),
            "re_loss": losses.reconstruction.detach(),
            "alpha": torch.tensor(losses.alpha),
        }
        return LossOutput(losses.total, parts)
