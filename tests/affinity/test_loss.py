"""Pair labels from label maps and the AffinityNet loss."""

import math

import pytest
import torch

from puzzlecam.affinity import (
    AffinityLabels,
    affinity_labels,
    affinity_loss,
    boundary_to_affinity,
    pair_validity,
    search_directions,
)

# Radius 2 has four directions: (0, 1), (1, -1), (1, 0), (1, 1).
RIGHT, DOWN_LEFT, DOWN, DOWN_RIGHT = range(4)


def test_radius_two_directions():
    assert search_directions(2) == ((0, 1), (1, -1), (1, 0), (1, 1))


def test_one_row_example():
    # Class 30 is above the reference's hard-coded "< 21": it must still count.
    labels = torch.tensor([[[0, 0, 30, 30, 255, 7]]], dtype=torch.uint8)  # (1, 1, 6)
    bg, fg, neg = affinity_labels(labels, radius=2)
    assert bg.shape == fg.shape == neg.shape == (1, 4, 1, 6)
    # Pairs to the right: 0-0 bg, 0-30 neg, 30-30 fg, 30-255 none, 255-7 none, 7-out none.
    assert bg[0, RIGHT, 0].tolist() == [1, 0, 0, 0, 0, 0]
    assert neg[0, RIGHT, 0].tolist() == [0, 1, 0, 0, 0, 0]
    assert fg[0, RIGHT, 0].tolist() == [0, 0, 1, 0, 0, 0]
    # A single row has no pair going down.
    for target in (bg, fg, neg):
        assert target[0, DOWN_LEFT:].sum() == 0


def test_two_by_three_example():
    labels = torch.tensor([[[1, 1, 0], [2, 255, 0]]], dtype=torch.uint8)  # (1, 2, 3)
    bg, fg, neg = (t[0] for t in affinity_labels(labels, radius=2))  # each (4, 2, 3)
    expected_bg = torch.zeros(4, 2, 3)
    expected_fg = torch.zeros(4, 2, 3)
    expected_neg = torch.zeros(4, 2, 3)
    expected_fg[RIGHT, 0, 0] = 1  # (0,0)=1 - (0,1)=1
    expected_neg[RIGHT, 0, 1] = 1  # (0,1)=1 - (0,2)=0
    expected_neg[DOWN_LEFT, 0, 1] = 1  # (0,1)=1 - (1,0)=2
    expected_neg[DOWN, 0, 0] = 1  # (0,0)=1 - (1,0)=2
    expected_bg[DOWN, 0, 2] = 1  # (0,2)=0 - (1,2)=0
    expected_neg[DOWN_RIGHT, 0, 1] = 1  # (0,1)=1 - (1,2)=0
    # Everything else touches the 255 at (1,1) or leaves the image.
    assert torch.equal(bg, expected_bg)
    assert torch.equal(fg, expected_fg)
    assert torch.equal(neg, expected_neg)


def test_labels_are_binary_disjoint_and_zero_off_image_or_ignored():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (2, 9, 12), generator=generator, dtype=torch.uint8)
    labels[torch.rand(2, 9, 12, generator=generator) < 0.2] = 255
    before = labels.clone()
    targets = affinity_labels(labels, radius=4)
    assert torch.equal(labels, before)
    stacked = torch.stack(list(targets))  # (3, B, D, h, w)
    assert set(stacked.unique().tolist()) <= {0.0, 1.0}
    assert stacked.sum(0).max() <= 1  # one kind per pair at most
    valid = pair_validity(9, 12, 4)
    assert stacked[:, :, ~valid].sum() == 0

    # Zero wherever one end is ignored, and a kind for every other in-image pair.
    for d, (dy, dx) in enumerate(search_directions(4)):
        for b in range(2):
            for y in range(9):
                for x in range(12):
                    if not valid[d, y, x]:
                        continue
                    ends = labels[b, y, x], labels[b, y + dy, x + dx]
                    total = stacked[:, b, d, y, x].sum()
                    assert total == (0 if 255 in ends else 1)


def test_labels_reject_float_maps():
    with pytest.raises(ValueError, match="integer"):
        affinity_labels(torch.zeros(1, 4, 4))


def _targets(bg, fg, neg):
    return AffinityLabels(
        *(torch.tensor(t, dtype=torch.float32).view(1, 1, 1, -1) for t in (bg, fg, neg))
    )


def test_loss_by_hand():
    affinity = torch.tensor([0.9, 0.5, 0.2, 0.8]).view(1, 1, 1, 4)
    targets = _targets([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 1])
    eps = 1e-5
    bg = -math.log(0.9 + eps) / (1 + eps)  # one background pair
    fg = -math.log(0.5 + eps) / (1 + eps)  # one foreground pair
    neg = (-math.log(1 + eps - 0.2) - math.log(1 + eps - 0.8)) / (2 + eps)  # two negatives
    # bg = 0.105348, fg = 0.693120, neg = (0.223131 + 1.609388) / 2.00001 = 0.916255
    total = (bg / 2 + fg / 2 + neg) / 2  # (0.052674 + 0.346560 + 0.916255) / 2 = 0.657745
    result = affinity_loss(affinity, targets)
    assert result.bg_loss.item() == pytest.approx(bg, rel=1e-5)
    assert result.fg_loss.item() == pytest.approx(fg, rel=1e-5)
    assert result.neg_loss.item() == pytest.approx(neg, rel=1e-5)
    assert result.loss.item() == pytest.approx(total, rel=1e-5)
    assert result.loss.item() == pytest.approx(0.657745, abs=1e-6)


def test_loss_parts_without_pairs_are_zero():
    affinity = torch.tensor([0.3, 0.6]).view(1, 1, 1, 2)
    result = affinity_loss(affinity, _targets([1, 1], [0, 0], [0, 0]))
    assert result.fg_loss.item() == 0 and result.neg_loss.item() == 0
    assert result.loss.item() == pytest.approx(result.bg_loss.item() / 4)


def test_loss_trains_the_boundary_and_leaves_inputs_alone():
    labels = torch.zeros(1, 8, 8, dtype=torch.uint8)
    labels[:, :, 4:] = 1  # a vertical class edge between columns 3 and 4
    logits = torch.zeros(1, 8, 8, requires_grad=True)
    targets = affinity_labels(labels, radius=3)
    affinity = boundary_to_affinity(torch.sigmoid(logits), radius=3).affinity
    before = affinity.detach().clone()
    result = affinity_loss(affinity, targets)
    result.loss.backward()
    assert torch.equal(affinity.detach(), before)
    # Descending the gradient raises the boundary on the class edge more than elsewhere.
    step = -logits.grad[0]
    assert step[:, 3:5].mean() > 0
    assert step[:, 3:5].mean() > step[:, :2].mean()
    assert step[:, 3:5].mean() > step[:, 6:].mean()


def test_loss_rejects_mismatched_shapes():
    targets = affinity_labels(torch.zeros(1, 5, 5, dtype=torch.uint8), radius=3)
    with pytest.raises(ValueError, match="radius"):
        affinity_loss(torch.rand(1, 3, 5, 5), targets)
