"""The puzzle module's tiling: cut images into a g x g grid of tiles and put maps back."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["tile", "scale_tiles", "merge", "merge_onto"]


def tile(x: torch.Tensor, grid: int = 2) -> torch.Tensor:
    """Cut every image of a batch into a ``grid`` x ``grid`` grid of tiles.

    x: (B, C, H, W) -> (B * g², C, ceil(H/g), ceil(W/g)). The order is the reference's:
    tile (0, 0) of every image, then tile (0, 1) of every image, ... row-major, so
    ``out[t * B + b]`` is tile ``t`` of image ``b``. A size not divisible by ``g`` is
    zero-padded at the bottom/right, never cropped.
    """
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    batch, channels, height, width = x.shape
    tile_h, tile_w = -(-height // grid), -(-width // grid)
    pad_h, pad_w = tile_h * grid - height, tile_w * grid - width
    if pad_h or pad_w:
        x = F.pad(x, (0, pad_w, 0, pad_h))
    tiles = x.reshape(batch, channels, grid, tile_h, grid, tile_w)
    tiles = tiles.permute(2, 4, 0, 1, 3, 5)  # (g, g, B, C, th, tw)
    return tiles.reshape(grid * grid * batch, channels, tile_h, tile_w)


def scale_tiles(tiles: torch.Tensor, factor: float) -> torch.Tensor:
    """Resize every tile by ``factor`` (bilinear; 1 returns the tiles unchanged).

    tiles: (N, C, h, w) -> (N, C, round(h * factor), round(w * factor)).
    """
    if factor == 1.0:
        return tiles
    size = (round(tiles.shape[-2] * factor), round(tiles.shape[-1] * factor))
    return F.interpolate(tiles, size=size, mode="bilinear", align_corners=False)


def merge(tiles: torch.Tensor, grid: int = 2, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Inverse of :func:`tile`: put tile maps back where their tiles came from.

    tiles: (B * g², C, h, w) in ``tile``'s order -> (B, C, g*h, g*w), cropped to
    ``size`` = (H, W) when given (so ``merge(tile(x, g), g, x.shape[-2:]) == x``).
    """
    count, channels, tile_h, tile_w = tiles.shape
    if count % (grid * grid):
        raise ValueError(f"{count} tiles cannot come from a {grid}x{grid} grid")
    batch = count // (grid * grid)
    merged = tiles.reshape(grid, grid, batch, channels, tile_h, tile_w)
    merged = merged.permute(2, 3, 0, 4, 1, 5)  # (B, C, g, h, g, w)
    merged = merged.reshape(batch, channels, grid * tile_h, grid * tile_w)
    if size is not None:
        merged = merged[..., : size[0], : size[1]]
    return merged


def merge_onto(tiles: torch.Tensor, grid: int, size: tuple[int, int]) -> torch.Tensor:
    """:func:`merge` the tile maps, then bring them to the full image's map grid ``size``
    (h, w) by bilinear resizing where they differ (crop sizes not divisible by
    grid * stride). tiles: (B * g², C, h', w') -> (B, C, h, w)."""
    merged = merge(tiles, grid)
    if merged.shape[-2:] != tuple(size):
        merged = F.interpolate(merged, size=tuple(size), mode="bilinear", align_corners=False)
    return merged
