"""Pair directions, paths and affinities from a boundary map."""

import pytest
import torch

from puzzlecam.affinity import (
    boundary_to_affinity,
    direction_path,
    pair_validity,
    search_directions,
)


@pytest.mark.parametrize("radius", [2, 3, 5, 10])
def test_directions_are_a_half_disc(radius):
    directions = search_directions(radius)
    assert all(dy * dy + dx * dx < radius * radius for dy, dx in directions)
    both_halves = list(directions) + [(-dy, -dx) for dy, dx in directions]
    disc = [
        (dy, dx)
        for dy in range(-radius, radius + 1)
        for dx in range(-radius, radius + 1)
        if 0 < dy * dy + dx * dx < radius * radius
    ]
    # Every offset of the disc (but the centre) exactly once, counting both halves.
    assert len(both_halves) == len(set(both_halves)) == len(disc)
    assert set(both_halves) == set(disc)


def test_direction_counts_and_order():
    assert len(search_directions(5)) == 34
    assert len(search_directions(10)) == 152
    assert search_directions(5)[:5] == ((0, 1), (0, 2), (0, 3), (0, 4), (1, -4))


def test_hand_checked_paths():
    assert direction_path(0, 3) == ((0, 0), (0, 1), (0, 2), (0, 3))
    assert direction_path(2, 0) == ((0, 0), (1, 0), (2, 0))
    # Diagonal (2, 2): |2 px - 2 py|^2 < 8 <=> |px - py| <= 1 in the 3x3 box.
    assert set(direction_path(2, 2)) == {(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (2, 1), (2, 2)}
    # (1, -2): (px + 2 py)^2 < 5 <=> |px + 2 py| <= 2, true for the whole 2x3 box.
    assert set(direction_path(1, -2)) == {(0, 0), (0, -1), (0, -2), (1, 0), (1, -1), (1, -2)}
    # (3, 1): (3 px - py)^2 < 10 <=> |3 px - py| <= 3, true for the whole 4x2 box.
    assert len(direction_path(3, 1)) == 8
    # (4, 2): (4 px - 2 py)^2 < 20 <=> |2 px - py| <= 2; the 5x3 box loses 4 corners.
    assert set(direction_path(4, 2)) == {
        (0, 0), (1, 0), (2, 0),
        (0, 1), (1, 1), (2, 1), (3, 1), (4, 1),
        (2, 2), (3, 2), (4, 2),
    }  # fmt: skip


@pytest.mark.parametrize("radius", [3, 5, 10])
def test_paths_run_from_end_to_end_and_are_symmetric(radius):
    for dy, dx in search_directions(radius):
        path = direction_path(dy, dx)
        assert path[0] == (0, 0) and path[-1] == (dy, dx)
        assert len(set(path)) == len(path)
        # Seen from the other end the path is the same set of pixels.
        assert {(dy - py, dx - px) for py, px in path} == set(path)
        assert set(direction_path(-dy, -dx)) == {(-py, -px) for py, px in path}


def test_radius_below_two_is_refused():
    with pytest.raises(ValueError, match="radius"):
        search_directions(1)
    with pytest.raises(ValueError, match="radius"):
        boundary_to_affinity(torch.rand(1, 4, 4), radius=1)


def _brute_force_affinity(boundary, radius):
    """Affinity and validity by the definition, one pixel pair at a time."""
    batch, height, width = boundary.shape
    directions = search_directions(radius)
    affinity = torch.zeros(batch, len(directions), height, width, dtype=boundary.dtype)
    valid = torch.zeros(len(directions), height, width, dtype=torch.bool)
    for d, (dy, dx) in enumerate(directions):
        for y in range(height):
            for x in range(width):
                if 0 <= y + dy < height and 0 <= x + dx < width:
                    valid[d, y, x] = True
                    points = [boundary[:, y + py, x + px] for py, px in direction_path(dy, dx)]
                    affinity[:, d, y, x] = 1 - torch.stack(points, 1).amax(1)
    return affinity, valid


@pytest.mark.parametrize(("height", "width", "radius"), [(6, 9, 4), (3, 2, 3), (7, 5, 5)])
def test_affinity_matches_brute_force(height, width, radius):
    boundary = torch.rand(2, height, width, generator=torch.Generator().manual_seed(0))
    expected_aff, expected_valid = _brute_force_affinity(boundary, radius)
    affinity, valid = boundary_to_affinity(boundary, radius)
    assert affinity.shape == (2, len(search_directions(radius)), height, width)
    assert torch.equal(valid, expected_valid)
    assert torch.equal(valid, pair_validity(height, width, radius))
    assert torch.equal(affinity, expected_aff)  # a max and one subtraction: exact
    assert torch.all(affinity[:, ~valid] == 0)  # pairs leaving the image: the padding wall


def test_affinity_gradient_is_that_of_the_path_max():
    generator = torch.Generator().manual_seed(1)
    boundary = torch.rand(2, 6, 7, generator=generator, dtype=torch.float64)
    weights = torch.randn(2, len(search_directions(4)), 6, 7, generator=generator)
    leaf = boundary.clone().requires_grad_(True)
    (boundary_to_affinity(leaf, 4).affinity * weights).sum().backward()

    # Reference: d(1 - max)/d b = -1 at the (unique, random data) argmax of each valid path.
    expected = torch.zeros_like(boundary)
    for d, (dy, dx) in enumerate(search_directions(4)):
        path = direction_path(dy, dx)
        for y in range(6 - dy):
            for x in range(max(0, -dx), min(7, 7 - dx)):
                for b in range(2):
                    values = [boundary[b, y + py, x + px] for py, px in path]
                    py, px = path[int(torch.stack(values).argmax())]
                    expected[b, y + py, x + px] -= weights[b, d, y, x].double()
    torch.testing.assert_close(leaf.grad, expected)


def test_affinity_training_shapes_and_no_mutation():
    boundary = torch.rand(3, 20, 24)
    before = boundary.clone()
    affinity, valid = boundary_to_affinity(boundary, radius=10)
    assert affinity.shape == (3, 152, 20, 24) and valid.shape == (152, 20, 24)
    assert affinity.dtype == boundary.dtype and valid.dtype == torch.bool
    assert torch.equal(boundary, before)
    assert affinity.min() >= 0 and affinity.max() <= 1


def test_affinity_rejects_unbatched_input():
    with pytest.raises(ValueError, match="batch"):
        boundary_to_affinity(torch.rand(8, 8))
