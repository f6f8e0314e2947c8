"""The puzzle module of Puzzle-CAM: tiling, merging and the losses.

- :func:`tile` / :func:`merge`: cut images into a g x g grid of tiles and put the tiles'
  class maps back (:mod:`~puzzlecam.puzzle.tiling`).
- :func:`puzzle_losses` and its terms (:mod:`~puzzlecam.puzzle.losses`):
  ``L = L_cls + L_pcls + alpha * L_re``, each term switchable.
"""

from puzzlecam.puzzle.losses import (
    PuzzleConfig,
    PuzzleLosses,
    alpha_schedule,
    classification_loss,
    puzzle_losses,
    reconstruction_loss,
)
from puzzlecam.puzzle.tiling import merge, tile

__all__ = [
    "PuzzleConfig",
    "PuzzleLosses",
    "alpha_schedule",
    "classification_loss",
    "merge",
    "puzzle_losses",
    "reconstruction_loss",
    "tile",
]
