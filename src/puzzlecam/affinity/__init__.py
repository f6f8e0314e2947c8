"""Affinities between nearby pixels, AffinityNet's loss and the random-walk refinement.

- :mod:`~puzzlecam.affinity.paths`: which pixel pairs exist (within a radius), the path
  between them, and pair affinities ``1 - max(boundary on the path)``.
- :mod:`~puzzlecam.affinity.loss`: pair labels from a label map and the AffinityNet loss.
- :mod:`~puzzlecam.affinity.random_walk`: the sparse random walk over those affinities.
"""

from puzzlecam.affinity.loss import AffinityLabels, AffinityLoss, affinity_labels, affinity_loss
from puzzlecam.affinity.paths import (
    PairAffinity,
    boundary_to_affinity,
    direction_path,
    pair_validity,
    search_directions,
)
from puzzlecam.affinity.random_walk import (
    SparseTransition,
    apply_transition,
    random_walk,
    sparse_transition,
)

__all__ = [
    "AffinityLabels",
    "AffinityLoss",
    "PairAffinity",
    "SparseTransition",
    "affinity_labels",
    "affinity_loss",
    "apply_transition",
    "boundary_to_affinity",
    "direction_path",
    "pair_validity",
    "random_walk",
    "search_directions",
    "sparse_transition",
]
