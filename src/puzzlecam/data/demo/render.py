"""One demo image: items sized and placed, tinted and painted on a background, distractors
under them; its labels (with the ignore band) and annotation objects."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from puzzlecam.constants import IGNORE_INDEX
from puzzlecam.data.demo.config import DemoDataConfig
from puzzlecam.data.demo.items import _distractor_item, _Item
from puzzlecam.data.demo.textures import _background, _grid, _random_colour
from puzzlecam.visualize import resize_array

_MAX_PLACEMENT_TRIES = 50


@dataclass(frozen=True)
class _Placed:
    item: _Item
    top: int
    left: int
    alpha: np.ndarray  # (h, w) float32, soft edge
    hard: np.ndarray  # (h, w) bool, alpha >= 0.5: the item's pixels in the mask
    intensity: np.ndarray  # (h, w) float32 in [0, 1]


@dataclass(frozen=True)
class _Rendered:
    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (H, W) uint8
    objects: list[dict[str, Any]]
    distractors: list[dict[str, Any]]
    uncovered: np.ndarray  # (H, W) float32: the share of each pixel the items leave uncovered


@dataclass(frozen=True)
class _Scaled:
    alpha: np.ndarray  # (h, w) float32, soft edge
    hard: np.ndarray  # (h, w) bool, alpha >= 0.5: the item's pixels in the mask
    size: tuple[int, int]  # size of the whole upscaled item array, margins included
    window: tuple[slice, slice]  # where alpha and hard lie in it (alpha > 0 rows and columns)


def _scaled_item(item: _Item, long_side: int) -> _Scaled:
    """Item upscaled so that the long side of its tight box is ``long_side`` pixels.

    The 28x28 mask is upscaled bilinearly and smoothed (Gaussian, sigma 0.35 source pixels)
    so that its 0.5 contour is round instead of a staircase of source pixels.
    """
    scale = long_side / item.extent
    height, width = item.mask.shape
    size = (max(2, round(height * scale)), max(2, round(width * scale)))
    coverage = Image.fromarray((item.mask * 255.0).astype(np.uint8), mode="L")
    coverage = coverage.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    coverage = coverage.filter(ImageFilter.GaussianBlur(0.35 * scale))
    mask = np.asarray(coverage, dtype=np.float32) / 255.0
    # a ramp about 1 px wide around the 0.5 contour: anti-aliased, and the hard mask
    # (alpha >= 0.5) is exactly where the item covers at least half of the pixel colour
    alpha = np.clip((mask - 0.5) * 2.0 + 0.5, 0.0, 1.0)
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:  # cannot happen for long_side >= 8; keep the whole array to be safe
        rows, cols = np.arange(size[0]), np.arange(size[1])
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return _Scaled(alpha[window], alpha[window] >= 0.5, size, window)


def _place(
    rng: np.random.Generator,
    items: Sequence[_Item],
    config: DemoDataConfig,
    above: np.ndarray | None = None,
) -> tuple[list[_Placed], np.ndarray]:
    """Sizes and positions such that every earlier item keeps ``min_visible`` of its area.

    ``above`` (H, W) bool: pixels of something that lies on top of all of these (the items,
    when distractors are placed); it hides them too, the new one included. An item that
    finds no such place in 50 tries is left out. Returns the placed items (bottom to top) and
    the owner map (H, W) int16: 0 background, k + 1 where item k is on top of the others.
    """
    height, width = config.image_size
    owner = np.zeros((height, width), dtype=np.int16)
    placed: list[_Placed] = []
    areas: list[int] = []
    for item in items:
        for _ in range(_MAX_PLACEMENT_TRIES):
            long_side = int(rng.integers(config.item_size[0], config.item_size[1] + 1))
            scaled = _scaled_item(item, long_side)
            while scaled.hard.shape[0] > height or scaled.hard.shape[1] > width:
                # the soft edge made it a pixel or two larger than the image: shrink it
                excess = max(scaled.hard.shape[0] - height, scaled.hard.shape[1] - width)
                long_side = max(long_side - excess, 1)
                scaled = _scaled_item(item, long_side)
            if not scaled.hard.any():
                continue
            item_h, item_w = scaled.hard.shape
            top = int(rng.integers(0, height - item_h + 1))
            left = int(rng.integers(0, width - item_w + 1))
            trial = owner.copy()
            trial[top : top + item_h, left : left + item_w][scaled.hard] = len(placed) + 1
            seen = trial if above is None else trial[~above]
            visible = np.bincount(seen.ravel(), minlength=len(placed) + 2)[1:]
            area = int(scaled.hard.sum())
            # (without ``above`` the new one is wholly visible: only the earlier ones can fail)
            if all(
                v >= config.min_visible * a for v, a in zip(visible, [*areas, area], strict=True)
            ):
                owner = trial
                intensity = np.clip(resize_array(item.intensity, scaled.size, "bicubic"), 0.0, 1.0)
                placed.append(
                    _Placed(item, top, left, scaled.alpha, scaled.hard, intensity[scaled.window])
                )
                areas.append(area)
                break
    return placed, owner


def _ignore_band(owner: np.ndarray, width: int) -> np.ndarray:
    """Pixels with a differently-owned pixel within ``width`` px (Chebyshev): (H, W) bool.

    Both sides of every boundary are marked (object/background and object/object), so the
    band is ``2 * width`` px wide, centred on the contour like VOC's.
    """
    if width == 0:
        return np.zeros(owner.shape, dtype=bool)
    height, wide = owner.shape
    padded = np.pad(owner, width, mode="edge")  # the image frame is no boundary
    span = range(2 * width + 1)
    row_max = np.maximum.reduce([padded[:, d : d + wide] for d in span])
    row_min = np.minimum.reduce([padded[:, d : d + wide] for d in span])
    high = np.maximum.reduce([row_max[d : d + height] for d in span])
    low = np.minimum.reduce([row_min[d : d + height] for d in span])
    return high != low


def _contrasting_colour(rng: np.random.Generator, references: Sequence[np.ndarray]) -> np.ndarray:
    """A saturated random colour, redrawn (up to 8 times) while too close to a reference."""
    best, best_distance = None, -1.0
    for _ in range(8):
        colour = _random_colour(rng, (0.35, 1.0), (0.5, 1.0))
        distance = min(float(np.linalg.norm(colour - reference)) for reference in references)
        if distance > best_distance:
            best, best_distance = colour, distance
        if distance >= 0.4:
            break
    assert best is not None
    return best


def _shading(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Mild directional light across an item: (h, w) float32 around 1 (+-15%)."""
    ys, xs = _grid(size)
    angle = rng.uniform(0.0, 2 * math.pi)
    ramp = xs * math.cos(angle) + ys * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    return (0.85 + 0.3 * ramp).astype(np.float32)


def _paint(
    rng: np.random.Generator,
    canvas: np.ndarray,
    spot: _Placed,
    avoid: Sequence[np.ndarray] = (),
) -> tuple[tuple[slice, slice], np.ndarray]:
    """Tint ``spot`` against what lies under it (and the colours ``avoid``) and paint it on
    ``canvas`` (H, W, 3), in place. Returns the box painted (rows, columns) and the colour.
    """
    item_h, item_w = spot.hard.shape
    box = (slice(spot.top, spot.top + item_h), slice(spot.left, spot.left + item_w))
    region = canvas[box]
    colour = _contrasting_colour(rng, [region[spot.hard].mean(axis=0), *avoid])
    # colour x the item's own intensity keeps its texture (folds, prints, seams)
    # (a gamma below 1 lifts the dim, anti-aliased outermost pixels of the source image)
    texture = (0.2 + 0.8 * spot.intensity**0.75) * _shading(rng, (item_h, item_w))
    rgb = np.clip(colour * texture[:, :, None], 0.0, 1.0)
    alpha = spot.alpha[:, :, None]
    canvas[box] = region * (1 - alpha) + rgb * alpha
    return box, colour


def _voc_box(visible: np.ndarray) -> list[int]:
    """VOC box of the pixels of ``visible`` (H, W) bool: 1-based, inclusive [x0, y0, x1, y1]."""
    rows, cols = np.nonzero(visible)
    return [int(cols.min()) + 1, int(rows.min()) + 1, int(cols.max()) + 1, int(rows.max()) + 1]


def _render(
    rng: np.random.Generator,
    items: Sequence[_Item],
    config: DemoDataConfig,
    clutter: tuple[np.random.Generator, Sequence[_Item]] | None = None,
) -> _Rendered:
    """Image, labels, annotation objects and distractors of one demo image.

    ``clutter``: the distractors' own generator and the items lending them their intensities
    (see :func:`_distractor_item`). The items are rendered exactly as without distractors
    (same draws; colours chosen against the image without them), and the distractors, painted
    on the bare background, show through wherever the items leave it uncovered.
    """
    background = _background(rng, config.image_size)  # (H, W, 3)
    canvas = background.copy()
    placed, owner = _place(rng, items, config)
    uncovered = np.ones(config.image_size, dtype=np.float32)  # (H, W)
    colours = []
    for spot in placed:
        box, colour = _paint(rng, canvas, spot)
        uncovered[box] *= 1 - spot.alpha
        colours.append(colour)
    # sensor-like grain, the same on all channels (uniform, std ~1.4% of the range)
    grain = (rng.random(canvas.shape[:2], dtype=np.float32)[:, :, None] - 0.5) * 0.05
    distractors: list[dict[str, Any]] = []
    if clutter is not None and clutter[1]:
        under, distractors = _clutter(*clutter, background, owner > 0, colours, config)
        canvas += (under - background) * uncovered[:, :, None]  # what shows of the change
    image = np.clip((canvas + grain) * 255.0 + 0.5, 0, 255).astype(np.uint8)

    class_of_owner = np.zeros(len(placed) + 1, dtype=np.uint8)
    class_of_owner[1:] = [spot.item.label + 1 for spot in placed]
    labels = class_of_owner[owner]
    band = _ignore_band(owner, config.border_width)
    labels[band] = IGNORE_INDEX

    objects = []
    for number, spot in enumerate(placed, start=1):
        visible = owner == number
        if not (visible & ~band).any():  # only ignore band left: neither a tag nor an object
            continue
        objects.append(
            {
                "class": config.class_names[spot.item.label],
                "item": spot.item.index,
                "bbox": _voc_box(visible),  # of the visible part
                "visible": round(float(visible.sum()) / float(spot.hard.sum()), 4),
            }
        )
    return _Rendered(
        image=image,
        labels=labels,
        objects=objects,
        distractors=distractors,
        uncovered=uncovered,
    )


def _clutter(
    rng: np.random.Generator,
    sources: Sequence[_Item],
    background: np.ndarray,
    items: np.ndarray,
    item_colours: Sequence[np.ndarray],
    config: DemoDataConfig,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Distractors made from ``sources`` painted on a copy of ``background`` (H, W, 3).

    Placed like items (sizes from ``item_size``, each keeping ``min_visible`` of its area)
    under the items, whose pixels ``items`` (H, W) bool hide them too; tinted like items, the
    colour chosen against the background under it and also against ``item_colours``, so that
    no distractor passes for a part of an item it touches. Returns the painted copy and a
    record per distractor: the item lending its intensities, the box of its visible part and
    its visible share.
    """
    blobs = [_distractor_item(rng, source) for source in sources]
    placed, owner = _place(rng, blobs, config, above=items)
    canvas = background.copy()
    for spot in placed:
        _paint(rng, canvas, spot, item_colours)
    records = []
    for number, spot in enumerate(placed, start=1):
        visible = (owner == number) & ~items
        records.append(
            {
                "item": spot.item.index,
                "bbox": _voc_box(visible),
                "visible": round(float(visible.sum()) / float(spot.hard.sum()), 4),
            }
        )
    return canvas, records
