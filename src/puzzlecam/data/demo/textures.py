"""Procedural textures of the demo images: backgrounds (noise, stripes, checkers, gradients
in random colours) and the random colours and noise that items and distractors use too."""

from __future__ import annotations

import colorsys
import math

import numpy as np

from puzzlecam.visualize import resize_array


def _random_colour(
    rng: np.random.Generator,
    saturation: tuple[float, float],
    value: tuple[float, float] = (0.25, 0.95),
) -> np.ndarray:
    """An RGB colour (3,) float32 of random hue, saturation and value in the given ranges."""
    hue = rng.random()
    sat = rng.uniform(*saturation)
    val = rng.uniform(*value)
    return np.array(colorsys.hsv_to_rgb(hue, sat, val), dtype=np.float32)


def _value_noise(rng: np.random.Generator, size: tuple[int, int], cells: int) -> np.ndarray:
    """Smooth noise in [0, 1]: a random ``cells``-wide grid upscaled bicubically."""
    height, width = size
    grid_h = max(2, round(cells * height / max(size)))
    grid_w = max(2, round(cells * width / max(size)))
    field_ = resize_array(
        rng.random((grid_h + 2, grid_w + 2), dtype=np.float32), (height + 8, width + 8), "bicubic"
    )
    field_ = field_[4:-4, 4:-4]
    low, high = float(field_.min()), float(field_.max())
    return (field_ - low) / max(high - low, 1e-6)


def _grid(size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row (H, 1) and column (1, W) coordinates, float32, broadcasting to (H, W)."""
    ys = np.arange(size[0], dtype=np.float32)[:, None]
    xs = np.arange(size[1], dtype=np.float32)[None, :]
    return ys, xs


def _pattern(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """One procedural texture in [0, 1], (H, W) float32."""
    height, width = size
    ys, xs = _grid(size)
    angle = rng.uniform(0.0, math.pi)
    along = xs * math.cos(angle) + ys * math.sin(angle)  # (H, W)
    kind = rng.integers(4)
    if kind == 0:  # value noise, one or two octaves
        pattern = _value_noise(rng, size, int(rng.integers(3, 9)))
        if rng.random() < 0.5:
            pattern = 0.7 * pattern + 0.3 * _value_noise(rng, size, int(rng.integers(10, 20)))
    elif kind == 1:  # stripes, soft or sharp
        period = rng.uniform(6.0, 22.0)
        wave = np.sin(2 * math.pi * along / period + rng.uniform(0, 2 * math.pi))
        pattern = 0.5 + 0.5 * np.clip(wave * rng.uniform(1.0, 4.0), -1.0, 1.0)
    elif kind == 2:  # checkers, possibly rotated
        cell = rng.uniform(8.0, 28.0)
        across = ys * math.cos(angle) - xs * math.sin(angle)
        wave = np.sin(math.pi * along / cell) * np.sin(math.pi * across / cell)
        pattern = 0.5 + 0.5 * np.clip(wave * 4.0, -1.0, 1.0)
    else:  # linear or radial gradient
        if rng.random() < 0.5:
            pattern = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
        else:
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            radius = np.hypot(ys - cy, xs - cx)
            pattern = radius / max(float(radius.max()), 1e-6)
    return pattern.astype(np.float32)


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A textured background, (H, W, 3) float32 in [0, 1]: one or two patterns, lit unevenly."""
    colours = [_random_colour(rng, (0.1, 0.8)), _random_colour(rng, (0.1, 0.8))]
    first = _pattern(rng, size)
    weights = [1 - first, first]  # per colour, (H, W) each
    if rng.random() < 0.4:  # a second texture in other colours, blended through smooth noise
        colours.append(_random_colour(rng, (0.1, 0.8)))
        second = _pattern(rng, size)
        blend = _value_noise(rng, size, 3)
        weights = [
            weights[0] * (1 - blend),
            weights[1] * (1 - blend) + second * blend,
            (1 - second) * blend,
        ]
    light = 0.8 + 0.4 * _value_noise(rng, size, 2)
    canvas = (np.stack(weights, axis=-1) * light[:, :, None]) @ np.stack(colours)  # (H, W, 3)
    return np.clip(canvas, 0.0, 1.0).astype(np.float32)
