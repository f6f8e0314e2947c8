"""Pictures for people: label colours, label and heat-map overlays, resizing arrays."""

from __future__ import annotations

from typing import Literal

import numpy as np
from matplotlib import colormaps
from PIL import Image

from puzzlecam.io import voc_palette

__all__ = ["label_colour", "colorize_labels", "overlay_labels", "overlay_heatmap", "resize_array"]

_PALETTE = np.asarray(voc_palette(), dtype=np.uint8).reshape(256, 3)  # (256, 3) uint8
_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
}


def label_colour(label: int) -> tuple[int, int, int]:
    """The (r, g, b) of a label value in label maps' VOC colours (255 = ignore is cream)."""
    red, green, blue = _PALETTE[label]
    return int(red), int(green), int(blue)


def colorize_labels(labels: np.ndarray) -> np.ndarray:
    """(H, W) uint8 labels -> (H, W, 3) uint8 VOC colours (255 = ignore is cream)."""
    return _PALETTE[labels]


def overlay_labels(image: np.ndarray, labels: np.ndarray, opacity: float = 0.6) -> np.ndarray:
    """Blend label colours over (H, W, 3) uint8; background (0) leaves the image as is."""
    colours = colorize_labels(labels).astype(np.float32)
    weight = np.where(labels[..., None] == 0, 0.0, opacity)
    return (image * (1 - weight) + colours * weight).round().astype(np.uint8)


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, opacity: float = 0.5) -> np.ndarray:
    """Blend a (H, W) map in [0, 1] over (H, W, 3) uint8 with the jet colour map."""
    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    return (image * (1 - opacity) + colours * opacity).round().astype(np.uint8)


def resize_array(
    array: np.ndarray,
    size: tuple[int, int],
    resample: Literal["nearest", "bilinear", "bicubic"] = "bilinear",
) -> np.ndarray:
    """``array`` resized by Pillow to ``size`` = (H, W).

    array: (h, w) or (h, w, 3) uint8 -> uint8 of (H, W[, 3]); (h, w) of another dtype ->
    float32 (H, W) (Pillow's mode F). An array already at ``size`` comes back as is
    (float ones as float32). ``array`` is not modified.
    """
    if array.dtype != np.uint8:
        array = array.astype(np.float32, copy=False)
    if array.shape[:2] == tuple(size):
        return array
    image = Image.fromarray(array).resize((size[1], size[0]), _RESAMPLE[resample])
    return np.asarray(image)
