"""Pair labels from a label map, and the AffinityNet (IRNet) affinity loss.

Labels follow the package convention: 0 = background, 1..C = classes, 255 = ignore.
Every value other than 255 is a real label, so any number of classes works (the
reference compares with ``< 21``, which silently ignores every class above 20).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from puzzlecam.affinity.paths import search_directions
from puzzlecam.constants import IGNORE_INDEX

__all__ = ["AffinityLabels", "AffinityLoss", "affinity_labels", "affinity_loss"]

_EPS = 1e-5  # the reference's: keeps log() finite at affinity 0 or 1 and empty sums at 0


class AffinityLabels(NamedTuple):
    """Targets of every pair, each (B, D, h, w) float32 in {0, 1}, disjoint.

    bg_pos: both ends background (label 0). fg_pos: both ends the same class (> 0).
    neg: the ends have different labels. All zero for pairs leaving the image or with an
    ignored end.
    """

    bg_pos: Tensor
    fg_pos: Tensor
    neg: Tensor


class AffinityLoss(NamedTuple):
    """``loss = (bg_loss / 2 + fg_loss / 2 + neg_loss) / 2`` and its parts, all scalars."""

    loss: Tensor
    bg_loss: Tensor
    fg_loss: Tensor
    neg_loss: Tensor


def affinity_labels(labels: Tensor, radius: int = 10) -> AffinityLabels:
    """Pair targets for the pairs of :func:`~puzzlecam.affinity.paths.boundary_to_affinity`.

    labels: (B, h, w) integer label map at the affinity stride (4), 255 = ignore; not
    modified. Returns :class:`AffinityLabels`, each (B, D, h, w) float32 on the labels'
    device, D = len(search_directions(radius)).

    Every pair with both ends inside the image gets a target. The reference scores only
    pairs whose first end lies at least ``radius - 1`` pixels from the bottom and side
    edges (its precomputed index crop), so it never learns affinities near the border.
    """
    if labels.ndim != 3 or labels.is_floating_point() or labels.dtype == torch.bool:
        raise ValueError(
            f"labels must be an integer (B, h, w) map (uint8, 255 = ignore), got "
            f"{tuple(labels.shape)} {labels.dtype}; add a batch axis with labels[None]"
        )
    if labels.dtype == torch.int8:
        labels = labels.to(torch.int16)  # int8 cannot hold the ignore value 255
    directions = search_directions(radius)
    batch, height, width = labels.shape
    pad = radius - 1
    # Outside the image counts as ignored, so pairs leaving it get no target at all.
    padded = labels.new_full((batch, height + pad, width + 2 * pad), IGNORE_INDEX)
    padded[:, :height, pad : pad + width] = labels
    first = labels[:, None]  # (B, 1, h, w)
    second = torch.stack(
        [padded[:, dy : dy + height, pad + dx : pad + dx + width] for dy, dx in directions],
        dim=1,
    )  # (B, D, h, w): the label at (y + dy, x + dx)
    valid = (first != IGNORE_INDEX) & (second != IGNORE_INDEX)
    same = (first == second) & valid
    return AffinityLabels(
        bg_pos=(same & (first == 0)).float(),
        fg_pos=(same & (first != 0)).float(),
        neg=(valid & ~same).float(),
    )


def affinity_loss(affinity: Tensor, targets: AffinityLabels) -> AffinityLoss:
    """AffinityNet loss of pair affinities against pair targets.

    affinity: (B, D, h, w) in [0, 1] (from ``boundary_to_affinity``); targets from
    :func:`affinity_labels` with the same shape. Positive pairs cost ``-log(aff + eps)``,
    negative pairs ``-log(1 + eps - aff)``; background and foreground positives are
    averaged separately so that the far more numerous background pairs do not drown the
    foreground ones. Every part is a mean over its own pairs, 0 when it has none.
    """
    if affinity.shape != targets.bg_pos.shape:
        raise ValueError(
            f"affinity {tuple(affinity.shape)} and targets {tuple(targets.bg_pos.shape)} "
            "differ; build both with the same radius and label-map size"
        )
    positive_cost = -torch.log(affinity + _EPS)
    negative_cost = -torch.log(1.0 + _EPS - affinity)

    def mean_over(mask: Tensor, cost: Tensor) -> Tensor:
        return (mask * cost).sum() / (mask.sum() + _EPS)

    bg_loss = mean_over(targets.bg_pos, positive_cost)
    fg_loss = mean_over(targets.fg_pos, positive_cost)
    neg_loss = mean_over(targets.neg, negative_cost)
    loss = (bg_loss / 2 + fg_loss / 2 + neg_loss) / 2
    return AffinityLoss(loss, bg_loss, fg_loss, neg_loss)
