"""Random-walk refinement of class maps over boundary-aware affinities (AffinityNet / IRNet).

The reference (``propagate_to_edge``) builds the dense (hw, hw) transition matrix and
squares it ``exp_times`` times: O((hw)^3) time and (hw)^2 memory, about 0.5 GB and
minutes per VOC image on a CPU, and it fails above 512x512 images. The transition has
only ``2 D + 1`` non-zeros per column (pairs within the radius), so we apply it
``2 ** exp_times`` times as a neighbour propagation instead: linear time and memory in
the number of pixels, any image size, the same result up to float rounding.

With ``A[i, j] = 1 - max(boundary on the path i..j)`` for pairs within the radius
(symmetric, ``A[i, i] = 1``) and ``T[i, j] = A[i, j]**beta / sum_k A[k, j]**beta``
(column-stochastic), the walk computes ``x @ T ** (2 ** exp_times)`` for the rows
``x = cams * (1 - boundary)`` flattened to (C, hw).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from puzzlecam.affinity.paths import boundary_to_affinity, search_directions

__all__ = ["SparseTransition", "apply_transition", "random_walk", "sparse_transition"]


class SparseTransition(NamedTuple):
    """The transition matrix T of a random walk, stored by neighbour offset.

    offsets: (K, 2) long, ``(oy, ox)``: ``(0, 0)``, then the D directions of
        :func:`~puzzlecam.affinity.paths.search_directions`, then their negations
        (K = 2 D + 1).
    weights: (K, h, w), ``weights[k, y, x] = T[(y, x) + offsets[k], (y, x)]``: how much
        of the neighbour's mass flows into ``(y, x)`` in one step; 0 where the neighbour
        is outside the image. Each pixel's weights sum to 1 (T's columns sum to 1).
    """

    offsets: Tensor
    weights: Tensor


def _check_boundary(boundary: Tensor) -> None:
    if boundary.ndim != 2 or not boundary.is_floating_point():
        raise ValueError(
            f"boundary must be a floating (h, w) map in [0, 1], got {tuple(boundary.shape)} "
            f"{boundary.dtype}"
        )


@torch.no_grad()
def sparse_transition(boundary: Tensor, beta: float = 10, radius: int = 5) -> SparseTransition:
    """Column-stochastic transition ``T = A**beta / column sums`` of a boundary map.

    boundary: (h, w) floating, in [0, 1]; not modified. Returns :class:`SparseTransition`
    with weights (K, h, w) in the boundary's dtype and on its device.
    """
    _check_boundary(boundary)
    if beta < 0:
        raise ValueError(f"beta must be >= 0 (the reference uses 10), got {beta}")
    height, width = boundary.shape
    # Build the weights in float64 (where the device has it), round them once at the end:
    # T ** 256 is sensitive to the rounding of T itself. Measured against a float64 oracle
    # at exp_times 8: float32-built weights leave up to 1.3e-4 of the max on the result,
    # float64-built ones 1.9e-5. The build runs once per image, so it costs nothing.
    precise = torch.float32 if boundary.device.type == "mps" else torch.float64
    affinity, valid = boundary_to_affinity(boundary[None].to(precise), radius)  # (1, D, h, w)
    # Pair (p, p + o_d) is stored at p. Masking by `valid` (not relying on 0 ** beta = 0)
    # keeps pairs leaving the image out for any beta, including 0.
    forward = torch.where(valid, affinity[0] ** beta, 0.0)  # (D, h, w): A[p + o_d, p] ** beta
    # The same pair seen from its other end q = p + o_d has offset -o_d and lives at q.
    backward = torch.zeros_like(forward)  # (D, h, w): A[q - o_d, q] ** beta
    directions = search_directions(radius)
    for d, (dy, dx) in enumerate(directions):
        if dy >= height or abs(dx) >= width:
            continue  # no such pair fits in this image
        # Shift by (dy, dx): backward[d, y, x] = forward[d, y - dy, x - dx]; dy >= 0.
        x0, x1 = max(dx, 0), width + min(dx, 0)
        backward[d, dy:, x0:x1] = forward[d, : height - dy, x0 - dx : x1 - dx]
    self_weight = torch.ones_like(forward[:1])  # A[p, p] = 1
    weights = torch.cat([self_weight, forward, backward])  # (K, h, w)
    # The column sum is >= 1 (the self pair), so the division is always safe.
    weights = (weights / weights.sum(0, keepdim=True)).to(boundary.dtype)

    half = torch.tensor(directions, dtype=torch.long, device=boundary.device)  # (D, 2)
    offsets = torch.cat([half.new_zeros(1, 2), half, -half])  # (K, 2)
    return SparseTransition(offsets, weights)


@torch.no_grad()
def apply_transition(x: Tensor, transition: SparseTransition, steps: int = 1) -> Tensor:
    """``x @ T ** steps`` for rows x (C, h, w) and a :class:`SparseTransition` T.

    Returns (C, h, w) in the promoted dtype of ``x`` and the weights. Each step is one
    multiply-add per neighbour offset: x_new[:, p] = sum_k weights[k, p] x[:, p + o_k].

    The maps live in a flat buffer whose rows are padded by the largest offset on both
    sides and which has zero margins above and below: a 2-D neighbour offset is then one
    constant shift of a flat index, so every term is a contiguous slice (no roll, no
    gather), and reads past the image edge land on zeros. Weights are zero on the padding
    columns, so the padding stays zero from step to step.
    """
    offsets, weights = transition
    if x.ndim != 3 or x.shape[1:] != weights.shape[1:]:
        raise ValueError(
            f"x must be (C, h, w) with (h, w) = {tuple(weights.shape[1:])} as the transition, "
            f"got {tuple(x.shape)}"
        )
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    channels, height, width = x.shape
    dtype = torch.promote_types(x.dtype, weights.dtype)
    shifts = offsets.tolist()  # a handful of ints, read once, not in the loop
    pad = max(max(abs(oy), abs(ox)) for oy, ox in shifts)
    row = width + 2 * pad
    length = height * row  # the image rows, padding columns included
    margin = pad * row + pad  # the largest flat shift
    flat_shifts = [oy * row + ox for oy, ox in shifts]

    flat_weights = weights.new_zeros((len(shifts), height, row), dtype=dtype)
    flat_weights[:, :, pad : pad + width] = weights
    flat_weights = flat_weights.reshape(len(shifts), length)  # (K, h (w + 2 pad))

    current = x.new_zeros((channels, length + 2 * margin), dtype=dtype)
    following = torch.zeros_like(current)
    image = current[:, margin : margin + length].view(channels, height, row)
    image[:, :, pad : pad + width] = x
    # Sum the neighbours first and the self term last: the self weight is usually the
    # largest, and adding the big term last keeps float32 rounding ~5x lower after 256
    # steps (as low as accumulating in float64, which runs 3x slower here).
    order = [*range(1, len(flat_shifts)), 0] if len(flat_shifts) > 1 else [0]
    for _ in range(steps):
        out = following[:, margin : margin + length]  # (C, length) view, rows contiguous
        start = margin + flat_shifts[order[0]]
        torch.mul(current[:, start : start + length], flat_weights[order[0]], out=out)
        for k in order[1:]:
            start = margin + flat_shifts[k]
            out.addcmul_(current[:, start : start + length], flat_weights[k])
        current, following = following, current
    image = current[:, margin : margin + length].view(channels, height, row)
    return image[:, :, pad : pad + width].clone()


@torch.no_grad()
def random_walk(
    cams: Tensor, boundary: Tensor, beta: float = 10, exp_times: int = 8, radius: int = 5
) -> Tensor:
    """Propagate class maps along affinities: ``(cams * (1 - boundary)) @ T ** (2 ** exp_times)``.

    cams: (C, h, w) floating, e.g. stride-4 CAMs; boundary: (h, w) in [0, 1], the boundary
    map at the same size (AffinityNet's edge output after the sigmoid). Neither is modified.
    Returns (C, h, w), unnormalised (as the reference's ``propagate_to_edge``; divide by the
    global max afterwards). Runs on the inputs' device; float16/bfloat16 inputs are
    computed in float32 (256 averaging steps would lose too much in half precision) and
    returned in their dtype. Not differentiable (an inference step).

    Cost: 2 ** exp_times steps of (2 D + 1) multiply-adds per pixel and class, D = 34 at
    radius 5; memory (2 D + 1) weights per pixel. On a CPU each step's operations are
    too small for intra-op threads to help, and when other processes hold the cores,
    OpenMP's waits make 2 threads several times slower than 1: to refine many images,
    run one image per process or thread with ``torch.set_num_threads(1)``.
    """
    if cams.ndim != 3 or not cams.is_floating_point():
        raise ValueError(
            f"cams must be a floating (C, h, w) tensor, got {tuple(cams.shape)} {cams.dtype}"
        )
    _check_boundary(boundary)
    if cams.shape[1:] != boundary.shape:
        raise ValueError(
            f"cams {tuple(cams.shape)} and boundary {tuple(boundary.shape)} differ in (h, w); "
            "resize the CAMs to the boundary map's stride-4 size first"
        )
    if cams.device != boundary.device:
        raise ValueError(f"cams are on {cams.device} but boundary is on {boundary.device}")
    if isinstance(exp_times, bool) or not isinstance(exp_times, int) or exp_times < 0:
        raise ValueError(f"exp_times must be an int >= 0 (the reference uses 8), got {exp_times!r}")
    result_dtype = torch.promote_types(cams.dtype, boundary.dtype)
    dtype = torch.promote_types(result_dtype, torch.float32)
    boundary = boundary.to(dtype)
    x = cams.to(dtype) * (1.0 - boundary)  # (C, h, w)
    transition = sparse_transition(boundary, beta=beta, radius=radius)
    return apply_transition(x, transition, steps=2**exp_times).to(result_dtype)
