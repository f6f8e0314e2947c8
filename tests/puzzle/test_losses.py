import math

import pytest
import torch

from puzzlecam.errors import ConfigError
from puzzlecam.puzzle.losses import (
    PuzzleConfig,
    alpha_schedule,
    classification_loss,
    puzzle_losses,
    reconstruction_loss,
)


def test_classification_loss_hand_computed():
    logits = torch.tensor([[0.0, 2.0]])
    targets = torch.tensor([[1.0, 0.0]])
    # per class: -[y log s(x) + (1-y) log(1-s(x))]; class 0: log 2; class 1: -log(1 - s(2)) = log(1+e^2)
    expected = (math.log(2.0) + math.log(1 + math.e**2)) / 2
    assert classification_loss(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_reconstruction_loss_l1_masked_hand_computed():
    cams = torch.tensor([[[[1.0, 2.0]], [[5.0, 5.0]]]])  # (1, 2, 1, 2)
    merged = torch.tensor([[[[0.0, 4.0]], [[0.0, 0.0]]]])
    targets = torch.tensor([[1.0, 0.0]])  # class 1 absent: its large error is masked out
    # |1-0| + |2-4| = 3 over 1*2*1*2 = 4 entries
    assert reconstruction_loss(cams, merged, targets, "l1").item() == pytest.approx(0.75)
    # squared: 1 + 4 = 5 over 4
    assert reconstruction_loss(cams, merged, targets, "l2").item() == pytest.approx(1.25)


def test_alpha_ramp():
    assert alpha_schedule(0.0, 4.0, 0.5) == 0.0
    assert alpha_schedule(0.25, 4.0, 0.5) == pytest.approx(2.0)
    assert alpha_schedule(0.5, 4.0, 0.5) == pytest.approx(4.0)
    assert alpha_schedule(0.9, 4.0, 0.5) == pytest.approx(4.0)
    assert alpha_schedule(0.1, 4.0, 0.0) == 4.0  # no ramp: constant


class _LinearMaps(torch.nn.Module):
    """A 'model' whose class maps are a fixed linear function of the image, so merged
    tile maps equal the full maps exactly (no receptive field crosses tiles)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))

    def forward(self, images):
        from puzzlecam.models.classifier import ClassifierOutput

        cams = torch.einsum("ck,bkhw->bchw", self.weight, images.float())
        return ClassifierOutput(cams.mean(dim=(2, 3)), cams)


def test_plain_cam_is_puzzle_with_terms_off():
    model = _LinearMaps()
    images = torch.rand(2, 3, 4, 4)
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    plain = puzzle_losses(
        model, images, targets, PuzzleConfig(puzzle_classification=False, reconstruction=False), 0.5
    )
    assert plain.puzzle_classification.item() == 0 and plain.reconstruction.item() == 0
    assert plain.total.item() == pytest.approx(plain.classification.item())
    full = puzzle_losses(model, images, targets, PuzzleConfig(), progress=0.5)
    # a pixel-wise model reconstructs perfectly: L_re = 0 and L_pcls = L_cls
    assert full.reconstruction.item() == pytest.approx(0.0, abs=1e-7)
    assert full.puzzle_classification.item() == pytest.approx(full.classification.item(), rel=1e-6)
    assert full.alpha == pytest.approx(4.0)


def test_warm_start_keeps_puzzle_terms_off_until_start():
    model = _LinearMaps()
    images = torch.rand(2, 3, 4, 4)
    targets = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    config = PuzzleConfig(start=0.4, alpha_max=2.0, alpha_ramp=0.2)
    early = puzzle_losses(model, images, targets, config, progress=0.3)
    assert early.puzzle_classification.item() == 0 and early.alpha == 0.0
    later = puzzle_losses(model, images, targets, config, progress=0.5)  # 0.1 into a 0.2 ramp
    assert later.puzzle_classification.item() > 0 and later.alpha == pytest.approx(1.0)
    assert alpha_schedule(-0.1, 4.0, 0.0) == 0.0


class _RecordingMaps(_LinearMaps):
    def __init__(self) -> None:
        super().__init__()
        self.input_sizes: list[tuple[int, ...]] = []

    def forward(self, images):
        self.input_sizes.append(tuple(images.shape))
        return super().forward(images)


def test_tile_scale_feeds_larger_tiles_and_merges_onto_the_full_grid():
    model = _RecordingMaps()
    images = torch.zeros(1, 3, 4, 4)
    images[0, 0, :2, :2] = torch.tensor([[0.0, 2.0], [4.0, 6.0]])  # class 0, tile (0, 0) only
    targets = torch.tensor([[1.0, 0.0]])
    config = PuzzleConfig(tile_scale=2.0, alpha_max=1.0, alpha_ramp=0.0)
    losses = puzzle_losses(model, images, targets, config, progress=0.5)
    assert model.input_sizes == [(1, 3, 4, 4), (4, 3, 4, 4)]  # 2x2 tiles seen at 4x4
    # tile (0, 0)'s map upsampled (the values of test_tiling's scale_tiles test), its 2x2
    # blocks averaged back: [[0.75, 2.25], [3.75, 5.25]] against [[0, 2], [4, 6]]:
    # |error| 2.0 over 1*2*4*4 entries
    assert losses.reconstruction.item() == pytest.approx(2.0 / 32)
    plain_tiles = puzzle_losses(model, images, targets, PuzzleConfig(), progress=0.5)
    assert plain_tiles.reconstruction.item() == pytest.approx(0.0, abs=1e-7)


def test_tile_scale_must_be_positive():
    with pytest.raises(ConfigError, match="tile_scale"):
        PuzzleConfig(tile_scale=0.0)
