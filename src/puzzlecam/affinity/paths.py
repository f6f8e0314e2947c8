"""Pixel pairs and the paths between them (IRNet geometry), and affinities from a boundary map.

Two pixels within ``radius`` of each other form a *pair*. Only half of the disc is
enumerated: a pair is stored at its first end ``p`` with direction ``(dy, dx)`` from
:func:`search_directions`; the same pair seen from its other end is the opposite
direction, which the random walk adds back (symmetric affinities).

The affinity of a pair is ``1 - max(boundary)`` over its *path*: the pixels that lie
within distance 1 of the straight line between the two ends (:func:`direction_path`).
A strong boundary anywhere between two pixels therefore cuts them apart.

Pair tensors have a direction axis ``D`` in :func:`search_directions` order (not the
reference's order grouped by path length); every function of :mod:`puzzlecam.affinity`
uses that order, so affinities and pair labels line up.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "PairAffinity",
    "boundary_to_affinity",
    "direction_path",
    "pair_validity",
    "search_directions",
]


class PairAffinity(NamedTuple):
    """Affinities of all pairs of a batch of boundary maps.

    affinity: (B, D, h, w), ``affinity[b, d, y, x]`` for the pair ``(y, x)`` and
        ``(y + dy, x + dx)``; 0 where the pair does not exist.
    valid: (D, h, w) bool, True where ``(y + dy, x + dx)`` is inside the image.
    """

    affinity: Tensor
    valid: Tensor


def _check_radius(radius: int) -> None:
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 2:
        raise ValueError(
            f"radius must be an int >= 2 (radius 1 has no pairs; IRNet uses 10 for "
            f"training and 5 for the random walk), got {radius!r}"
        )


@lru_cache(maxsize=32)
def search_directions(radius: int) -> tuple[tuple[int, int], ...]:
    """Pair directions ``(dy, dx)`` of a half disc of the given radius.

    ``(0, x)`` for ``1 <= x < radius``, then ``(y, x)`` for ``1 <= y < radius`` and
    ``-radius < x < radius`` with ``x**2 + y**2 < radius**2``. The other half of the disc
    is the negation of these, i.e. the same pairs seen from their other end. Returns
    ``D`` directions; D = 34 for radius 5 and 152 for radius 10.
    """
    _check_radius(radius)
    directions = [(0, x) for x in range(1, radius)]
    for y in range(1, radius):
        directions += [(y, x) for x in range(-radius + 1, radius) if x * x + y * y < radius**2]
    return tuple(directions)


@lru_cache(maxsize=1024)
def direction_path(dy: int, dx: int) -> tuple[tuple[int, int], ...]:
    """Offsets ``(py, px)`` of the pixels on the path from ``(0, 0)`` to ``(dy, dx)``.

    The integer points of the bounding box of the two ends whose squared distance to the
    line through them, ``(dy * px - dx * py)**2 / (dy**2 + dx**2)``, is below 1. Both ends
    are included. Ordered from ``(0, 0)`` to ``(dy, dx)`` along the line.
    """
    if dy == 0 and dx == 0:
        raise ValueError("a path needs two distinct ends; direction (0, 0) has none")
    length_sq = dy * dy + dx * dx
    points = [
        (py, px)
        for py in range(min(0, dy), max(0, dy) + 1)
        for px in range(min(0, dx), max(0, dx) + 1)
        # Compare integers (cross**2 < length_sq) rather than a float ratio with 1.
        if (dy * px - dx * py) ** 2 < length_sq
    ]
    # Sort by the projection on the line; ties (two pixels side by side across the line)
    # by coordinates, so the order is deterministic.
    points.sort(key=lambda q: (q[0] * dy + q[1] * dx, q))
    return tuple(points)


def pair_validity(
    height: int, width: int, radius: int, device: torch.device | str | None = None
) -> Tensor:
    """(D, h, w) bool: True where the pair ``(y, x)``, ``(y + dy, x + dx)`` lies in the image."""
    directions = torch.tensor(search_directions(radius), dtype=torch.long, device=device)
    ys = torch.arange(height, device=device)[None, :, None]  # (1, h, 1)
    xs = torch.arange(width, device=device)[None, None, :]  # (1, 1, w)
    dy, dx = directions[:, 0, None, None], directions[:, 1, None, None]  # (D, 1, 1)
    # dy >= 0 for every direction, so the first end's row bounds the pair from above.
    return (ys + dy < height) & (xs + dx >= 0) & (xs + dx < width)


class _PathPlan(NamedTuple):
    inverse: tuple[int, ...]  # (D,) position in `order` of each search-order direction
    paths: tuple[tuple[tuple[int, int], ...], ...]  # (D, L, 2) paths padded to the longest
    active: tuple[int, ...]  # (L,) how many leading directions have a point at position k


@lru_cache(maxsize=32)
def _path_plan(radius: int) -> _PathPlan:
    """Paths of all directions as one padded block, longest first.

    Padding repeats a path's last point (a max is unchanged by a repeat), so position
    ``k`` of all paths is one slice; sorting longest first makes the directions that
    still have a real point at position ``k`` a prefix, so the loop does no padded work.
    """
    paths = [direction_path(dy, dx) for dy, dx in search_directions(radius)]
    order = sorted(range(len(paths)), key=lambda d: -len(paths[d]))
    longest = len(paths[order[0]])
    inverse = [0] * len(order)
    for position, d in enumerate(order):
        inverse[d] = position
    return _PathPlan(
        inverse=tuple(inverse),
        paths=tuple(paths[d] + (paths[d][-1],) * (longest - len(paths[d])) for d in order),
        active=tuple(sum(len(p) > k for p in paths) for k in range(longest)),
    )


def boundary_to_affinity(boundary: Tensor, radius: int = 10) -> PairAffinity:
    """Affinity ``1 - max(boundary on the path)`` of every pair within ``radius``.

    boundary: (B, h, w) floating, in [0, 1] (after the sigmoid); not modified.
    Returns :class:`PairAffinity` with affinity (B, D, h, w) in the boundary's dtype and
    device, and valid (D, h, w). Pairs leaving the image get affinity 0 and valid False.

    Differentiable: the gradient of each affinity goes to the one boundary pixel that
    attains the path's max (as with max pooling). The max is found without autograd and
    the winning pixels are gathered once with it, so the graph holds one index per pair
    instead of one value per path pixel (at radius 10: one int64 per pair against ~14
    path values per pair, about 7x less memory than max-reducing stacked path copies).
    """
    if boundary.ndim != 3 or not boundary.is_floating_point():
        raise ValueError(
            f"boundary must be a floating (B, h, w) tensor, got {tuple(boundary.shape)} "
            f"{boundary.dtype}; add a batch axis with boundary[None]"
        )
    _check_radius(radius)
    batch, height, width = boundary.shape
    pad = radius - 1
    padded_width = width + 2 * pad
    # Directions have dy >= 0 and |dx| <= pad, so pads below and on both sides hold every
    # path; value 1 (a wall) makes pairs leaving the image affinity 0, as the reference.
    padded = F.pad(boundary, (pad, pad, 0, pad), value=1.0)  # (B, h + pad, w + 2 pad)
    flat = padded.reshape(batch, -1)

    device = boundary.device
    ys = torch.arange(height, device=device)[:, None]
    xs = torch.arange(width, device=device)[None, :]
    first_end = (ys * padded_width + xs + pad).reshape(-1)  # (hw,) flat index in `padded`
    plan = _path_plan(radius)
    table = torch.tensor(plan.paths, dtype=torch.long, device=device)  # (D, L, 2)
    shifts = table[..., 0] * padded_width + table[..., 1]  # (D, L) flat offsets

    track = torch.is_grad_enabled() and boundary.requires_grad
    with torch.no_grad():
        index = first_end[None, :] + shifts[:, 0, None]  # (D, hw)
        best = flat[:, index]  # (B, D, hw) running max over the path, in plan order
        best_index = index.expand(batch, -1, -1).clone() if track else None  # (B, D, hw)
        for k, n in enumerate(plan.active[1:], start=1):
            index = first_end[None, :] + shifts[:n, k, None]  # (n, hw)
            value = flat[:, index]  # (B, n, hw)
            if best_index is not None:
                better = value > best[:, :n]
                best_index[:, :n] = torch.where(better, index, best_index[:, :n])
            best[:, :n] = torch.maximum(best[:, :n], value)
        inverse = torch.tensor(plan.inverse, dtype=torch.long, device=device)

    if best_index is not None:
        # Gather the winners again, with autograd: back to search order at the same time.
        best = flat.gather(1, best_index[:, inverse].reshape(batch, -1))
    else:
        best = best[:, inverse]
    affinity = (1.0 - best).reshape(batch, -1, height, width)
    return PairAffinity(affinity, pair_validity(height, width, radius, device))
