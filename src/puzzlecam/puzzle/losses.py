"""Puzzle-CAM losses: L = L_cls + L_pcls + alpha * L_re, each term switchable.

Plain CAM is the same code with the puzzle terms switched off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from puzzlecam.cams.inference import normalize_cams
from puzzlecam.dataclass_yaml import FINGERPRINTED_UNLESS_DEFAULT, require
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.puzzle.tiling import merge_onto, scale_tiles, tile

__all__ = [
    "PuzzleConfig",
    "PuzzleLosses",
    "classification_loss",
    "reconstruction_loss",
    "first_puzzle_step",
    "alpha_schedule",
    "puzzle_losses",
]


@dataclass(frozen=True)
class PuzzleConfig:
    """Which loss terms are on, and how the reconstruction weight alpha ramps up.

    alpha rises linearly from 0 to ``alpha_max`` over the first ``alpha_ramp`` fraction
    of training, then stays (``alpha_ramp`` = 0: constant ``alpha_max``).

    ``start`` (not in the paper, 0 there): the fraction of training done as plain CAM
    before the puzzle terms switch on, a warm start for short schedules where the puzzle
    terms from step 0 keep a freshly initialised classifier from learning; alpha's ramp
    then begins at ``start``.

    ``reconstruction_level``: ``raw`` compares the class maps themselves (the paper and
    the reference's default); ``normalized`` compares them after ReLU and division by
    each map's maximum, i.e. the CAMs' shapes. Raw maps can satisfy L_re by shrinking
    (all maps towards one value), which on small images with small tiles wins over
    classification; normalised maps cannot.

    ``tile_scale`` (not in the paper, 1 there): each tile is resized by this factor
    before the encoder, and its merged maps are resized back onto the full image's map
    grid. On small images the paper's tiles give maps of a few cells (4 x 4 for a
    128-px image at stride 16), coarser than the full image's; larger tiles give the
    tiles' maps the cells the full image has, at tile_scale² times the tiles' cost. It
    also shows the classifier the items zoomed: on the demo its gain is the zoom's, the
    whole image zoomed without tiles gains as much (docs/experiments.md, E46).
    """

    grid: int = 2
    puzzle_classification: bool = True
    reconstruction: bool = True
    reconstruction_loss: Literal["l1", "l2"] = "l1"
    alpha_max: float = 4.0
    alpha_ramp: float = 0.5
    start: float = 0.0
    reconstruction_level: Literal["raw", "normalized"] = "raw"
    # added after runs existed: at 1 it leaves their fingerprints as they were
    tile_scale: float = field(default=1.0, metadata=FINGERPRINTED_UNLESS_DEFAULT)

    @property
    def uses_tiles(self) -> bool:
        return self.puzzle_classification or self.reconstruction

    def __post_init__(self) -> None:
        require(self.grid >= 1, "grid", f"must be at least 1, got {self.grid}")
        require(
            0.0 <= self.alpha_max < math.inf,
            "alpha_max",
            f"must be 0 or more, got {self.alpha_max}",
        )
        require(
            0.0 <= self.alpha_ramp <= 1.0,
            "alpha_ramp",
            f"is a fraction of training, in [0, 1], got {self.alpha_ramp}",
        )
        require(
            0.0 <= self.start < 1.0,
            "start",
            f"is a fraction of training, in [0, 1), got {self.start}",
        )
        require(
            0.0 < self.tile_scale < math.inf,
            "tile_scale",
            f"must be above 0, got {self.tile_scale}",
        )


class PuzzleLosses(NamedTuple):
    total: torch.Tensor
    classification: torch.Tensor
    puzzle_classification: torch.Tensor
    reconstruction: torch.Tensor
    alpha: float


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Multi-label soft margin loss. logits, targets: (B, C) -> scalar (mean over batch)."""
    return F.multilabel_soft_margin_loss(logits, targets)


def reconstruction_loss(
    cams: torch.Tensor,
    merged_cams: torch.Tensor,
    targets: torch.Tensor,
    kind: Literal["l1", "l2"] = "l1",
) -> torch.Tensor:
    """Mean of |A - A_re| (or its square) masked by the present classes.

    cams, merged_cams: (B, C, h, w); targets: (B, C) multi-hot. The mean runs over all
    B*C*h*w entries, absent classes counting as zeros, as the reference.
    """
    difference = cams - merged_cams
    error = difference.abs() if kind == "l1" else difference.square()
    return (error * targets[:, :, None, None]).mean()


def first_puzzle_step(start: float, total_steps: int) -> int:
    """The first training step (0-based) at which the puzzle terms are on: the steps before
    it are plain CAM's (``progress = step / total_steps`` < ``start``, as the loop feeds
    ``puzzle_losses``); 0 when ``start`` is 0."""
    return next((s for s in range(total_steps + 1) if s / max(total_steps, 1) >= start), 0)


def alpha_schedule(progress: float, alpha_max: float, ramp: float) -> float:
    """alpha at ``progress`` in [0, 1] of training: linear from 0 over ``ramp``, then flat."""
    if ramp <= 0.0:
        return alpha_max if progress >= 0.0 else 0.0
    return min(max(alpha_max * progress / ramp, 0.0), alpha_max)


def puzzle_losses(
    model: CamClassifier,
    images: torch.Tensor,
    targets: torch.Tensor,
    config: PuzzleConfig,
    progress: float,
) -> PuzzleLosses:
    """One forward pass of the full images (and of their tiles when a puzzle term is on).

    images: (B, 3, S, S); targets: (B, C); progress in [0, 1] drives alpha.
    """
    full = model(images)
    cls_loss = classification_loss(full.logits, targets)
    zero = cls_loss.new_zeros(())
    pcls_loss, re_loss = zero, zero
    alpha = alpha_schedule(progress - config.start, config.alpha_max, config.alpha_ramp)
    if config.uses_tiles and progress >= config.start:
        tiled = model(scale_tiles(tile(images, config.grid), config.tile_scale))
        merged = merge_onto(tiled.cams, config.grid, full.cams.shape[-2:])
        if config.puzzle_classification:
            pcls_loss = classification_loss(merged.mean(dim=(2, 3)), targets)
        if config.reconstruction:
            full_maps, merged_maps = full.cams, merged
            if config.reconstruction_level == "normalized":
                full_maps = normalize_cams(F.relu(full_maps))  # as the CAM files are
                merged_maps = normalize_cams(F.relu(merged_maps))
            re_loss = reconstruction_loss(
                full_maps, merged_maps, targets, config.reconstruction_loss
            )
    total = cls_loss + pcls_loss + alpha * re_loss
    return PuzzleLosses(total, cls_loss, pcls_loss, re_loss, alpha)
