"""The sparse random walk against a dense oracle built from the definitions alone."""

from functools import cache

import numpy as np
import pytest
import torch

from puzzlecam.affinity import apply_transition, random_walk, sparse_transition

# ---------------------------------------------------------------------------------------
# Dense oracle (tests only): every pixel pair of the full disc, the path enumerated in
# absolute coordinates from the definition, the (hw, hw) matrix, float64 matrix powers.
# It shares no code with the package (no search_directions, no direction_path).
# ---------------------------------------------------------------------------------------


@cache
def _pairs_and_paths(height, width, radius):
    """[(i, j, flat indices of the path between pixels i and j)] for 0 < |i - j| < radius."""
    pairs = []
    for y1 in range(height):
        for x1 in range(width):
            for y2 in range(max(0, y1 - radius), min(height, y1 + radius + 1)):
                for x2 in range(max(0, x1 - radius), min(width, x1 + radius + 1)):
                    dy, dx = y2 - y1, x2 - x1
                    length_sq = dy * dy + dx * dx
                    if not 0 < length_sq < radius * radius:
                        continue
                    path = [
                        qy * width + qx
                        for qy in range(min(y1, y2), max(y1, y2) + 1)
                        for qx in range(min(x1, x2), max(x1, x2) + 1)
                        if (dy * (qx - x1) - dx * (qy - y1)) ** 2 < length_sq
                    ]
                    pairs.append((y1 * width + x1, y2 * width + x2, np.array(path)))
    return pairs


def dense_transition(boundary, beta, radius):
    """(hw, hw) float64 T[i, j] = A[i, j]^beta / sum_k A[k, j]^beta."""
    height, width = boundary.shape
    flat = boundary.double().flatten().numpy()
    affinity = np.eye(height * width)
    for i, j, path in _pairs_and_paths(height, width, radius):
        affinity[i, j] = 1.0 - flat[path].max()
    scaled = affinity**beta
    return torch.from_numpy(scaled / scaled.sum(0, keepdims=True))


def dense_random_walk(cams, boundary, beta, exp_times, radius):
    channels, height, width = cams.shape
    transition = dense_transition(boundary, beta, radius)
    for _ in range(exp_times):
        transition = transition @ transition
    x = (cams.double() * (1 - boundary.double())).reshape(channels, -1)
    return (x @ transition).reshape(channels, height, width)


def _inputs(channels, height, width, seed):
    generator = torch.Generator().manual_seed(seed)
    cams = torch.rand(channels, height, width, generator=generator)
    boundary = torch.rand(height, width, generator=generator)
    return cams, boundary


def _normalised(x):
    return x.double() / x.max()


# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(7, 11), (13, 9), (16, 16)])
@pytest.mark.parametrize(("radius", "beta"), [(3, 1), (5, 10), (5, 1), (3, 10)])
@pytest.mark.parametrize("exp_times", [3, 8])
def test_matches_dense_oracle(size, radius, beta, exp_times):
    cams, boundary = _inputs(3, *size, seed=size[0] * 100 + radius * 10 + beta)
    expected = _normalised(dense_random_walk(cams, boundary, beta, exp_times, radius))
    result = random_walk(cams, boundary, beta=beta, exp_times=exp_times, radius=radius)
    assert result.shape == cams.shape and result.dtype == torch.float32
    assert (_normalised(result) - expected).abs().max() <= 1e-4


@pytest.mark.parametrize("size", [(7, 11), (16, 16)])
def test_matches_dense_oracle_in_float64(size):
    cams, boundary = _inputs(2, *size, seed=3)
    expected = dense_random_walk(cams, boundary, 10, 8, 5)
    result = random_walk(cams.double(), boundary.double(), beta=10, exp_times=8, radius=5)
    assert result.dtype == torch.float64
    # Unnormalised: the walk is the reference's result itself, not just up to scale.
    torch.testing.assert_close(result, expected, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("size", [(1, 5), (2, 3), (4, 1), (3, 3)])
def test_images_smaller_than_the_radius(size):
    cams, boundary = _inputs(2, *size, seed=4)
    expected = _normalised(dense_random_walk(cams, boundary, 10, 4, 5))
    result = _normalised(random_walk(cams, boundary, exp_times=4))
    assert (result - expected).abs().max() <= 1e-5


@pytest.mark.parametrize(("size", "radius"), [((7, 11), 5), ((9, 6), 3), ((2, 3), 5)])
def test_transition_equals_dense_transition(size, radius):
    _, boundary = _inputs(1, *size, seed=5)
    offsets, weights = sparse_transition(boundary.double(), beta=10, radius=radius)
    height, width = size
    # Scatter the sparse weights into a dense matrix: T[p + o_k, p] = weights[k, p].
    dense = torch.zeros(height * width, height * width, dtype=torch.float64)
    for k, (oy, ox) in enumerate(offsets.tolist()):
        for y in range(height):
            for x in range(width):
                if 0 <= y + oy < height and 0 <= x + ox < width:
                    dense[(y + oy) * width + x + ox, y * width + x] = weights[k, y, x]
                else:
                    assert weights[k, y, x] == 0  # no weight on a neighbour off the image
    torch.testing.assert_close(dense, dense_transition(boundary, 10, radius), rtol=1e-12, atol=0)


@pytest.mark.parametrize("radius", [3, 5])
def test_transition_columns_sum_to_one(radius):
    _, boundary = _inputs(1, 12, 17, seed=6)
    offsets, weights = sparse_transition(boundary, beta=10, radius=radius)
    directions = offsets.shape[0] // 2
    assert offsets.shape == (2 * directions + 1, 2) and weights.shape == (len(offsets), 12, 17)
    assert offsets[0].tolist() == [0, 0]
    assert torch.equal(offsets[1 : directions + 1], -offsets[directions + 1 :])
    assert ((offsets**2).sum(1) < radius**2).all()
    assert len({tuple(o) for o in offsets.tolist()}) == len(offsets)  # each offset once
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(0), torch.ones(12, 17))


def test_one_step_is_a_product_with_the_transition():
    cams, boundary = _inputs(3, 6, 8, seed=7)
    transition = sparse_transition(boundary.double(), beta=2, radius=4)
    step = apply_transition(cams.double(), transition, steps=1)
    expected = cams.double().reshape(3, -1) @ dense_transition(boundary, 2, 4)
    torch.testing.assert_close(step, expected.reshape(3, 6, 8))
    assert torch.equal(apply_transition(cams, transition, steps=0), cams.double())


def test_large_image_is_fine_and_averages():
    # Larger than the reference's 512 / 4 = 128 limit. Column-stochastic T averages
    # neighbours, so a constant map stays constant and values stay within the input range.
    height, width = 150, 133
    generator = torch.Generator().manual_seed(8)
    boundary = torch.rand(height, width, generator=generator)
    constant = torch.full((1, height, width), 0.5) / (1 - boundary)  # x = cams * (1 - b) = 0.5
    result = random_walk(constant, boundary, exp_times=2)
    torch.testing.assert_close(result, torch.full_like(result, 0.5))

    cams = torch.rand(2, height, width, generator=generator)
    x = cams * (1 - boundary)
    result = random_walk(cams, boundary, exp_times=2)
    assert result.shape == (2, height, width)
    assert (result >= x.amin((1, 2), keepdim=True) - 1e-6).all()
    assert (result <= x.amax((1, 2), keepdim=True) + 1e-6).all()


def test_a_wall_stops_the_walk():
    # A full-height boundary column cuts the image in two: nothing crosses it.
    boundary = torch.zeros(9, 12)
    boundary[:, 5] = 1.0
    cams = torch.zeros(1, 9, 12)
    cams[0, 4, 1] = 1.0
    result = random_walk(cams, boundary, exp_times=6)
    assert result[0, :, 6:].abs().max() == 0
    assert result[0, :, :5].min() > 0  # and it spreads over the whole left side


def test_inputs_untouched_dtype_kept():
    cams, boundary = _inputs(2, 9, 10, seed=9)
    cams_before, boundary_before = cams.clone(), boundary.clone()
    result = random_walk(cams, boundary, exp_times=3)
    assert torch.equal(cams, cams_before) and torch.equal(boundary, boundary_before)
    half = random_walk(cams.half(), boundary.half(), exp_times=3)
    assert half.dtype == torch.float16
    torch.testing.assert_close(half.float(), result, rtol=2e-3, atol=2e-3)


def test_bad_inputs_say_what_is_wrong():
    cams, boundary = _inputs(2, 6, 7, seed=10)
    with pytest.raises(ValueError, match="differ"):
        random_walk(cams, boundary[:5])
    with pytest.raises(ValueError, match=r"\(C, h, w\)"):
        random_walk(cams[0], boundary)
    with pytest.raises(ValueError, match="exp_times"):
        random_walk(cams, boundary, exp_times=-1)
    with pytest.raises(ValueError, match="radius"):
        random_walk(cams, boundary, radius=1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu():
    cams, boundary = _inputs(3, 40, 37, seed=11)
    expected = random_walk(cams, boundary)
    result = random_walk(cams.cuda(), boundary.cuda())
    assert result.device.type == "cuda"
    assert (_normalised(result.cpu()) - _normalised(expected)).abs().max() <= 1e-4
