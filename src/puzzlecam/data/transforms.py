"""Training augmentation as the reference: random long-side resize, horizontal flip,
random crop with padding. Normalisation is not done here: models take uint8 images and
normalise inside (so predict, export and training can never disagree about it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from puzzlecam.constants import IGNORE_INDEX
from puzzlecam.dataclass_yaml import require

__all__ = ["AugmentConfig", "augment", "random_crop_box", "resize_long_side"]


@dataclass(frozen=True)
class AugmentConfig:
    """Sizes in pixels. The long side is drawn uniformly from [min_long_side, max_long_side]."""

    min_long_side: int = 320
    max_long_side: int = 640
    crop_size: int = 512
    hflip: bool = True

    def __post_init__(self) -> None:
        require(
            self.min_long_side > 0,
            "min_long_side",
            f"must be a positive size in pixels, got {self.min_long_side}",
        )
        require(
            self.max_long_side >= self.min_long_side,
            "max_long_side",
            f"{self.max_long_side} is below min_long_side {self.min_long_side}",
        )
        require(self.crop_size > 0, "crop_size", f"must be a positive size, got {self.crop_size}")


def resize_long_side(
    image: Image.Image, mask: np.ndarray | None, long_side: int
) -> tuple[Image.Image, np.ndarray | None]:
    """Scale so the longer side becomes ``long_side`` (bicubic image, nearest mask)."""
    width, height = image.size
    scale = long_side / max(width, height)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if size == (width, height):
        return image, mask
    image = image.resize(size, Image.BICUBIC)
    if mask is not None:
        mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
    return image, mask


def random_crop_box(
    height: int, width: int, crop: int, rng: np.random.Generator
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """Where a crop x crop window meets an (H, W) image, drawn at random.

    Returns ``(src_top, src_left), (dst_top, dst_left), (rows, cols)``: the image block
    ``[src_top:src_top+rows, src_left:src_left+cols]`` goes to the same-sized block at
    ``(dst_top, dst_left)`` of the canvas. A side longer than the crop is cut at a random
    offset; a shorter one is placed at a random offset in the padded canvas.
    """

    def axis(size: int) -> tuple[int, int, int]:
        if size >= crop:
            return int(rng.integers(0, size - crop + 1)), 0, crop
        return 0, int(rng.integers(0, crop - size + 1)), size

    src_top, dst_top, rows = axis(height)
    src_left, dst_left, cols = axis(width)
    return (src_top, src_left), (dst_top, dst_left), (rows, cols)


def augment(
    image: Image.Image,
    mask: np.ndarray | None,
    config: AugmentConfig,
    rng: np.random.Generator,
    pad_value: tuple[int, int, int],
) -> tuple[np.ndarray, np.ndarray | None]:
    """One random training view: (crop, crop, 3) uint8 image and (crop, crop) uint8 mask.

    Padding uses ``pad_value`` (the backbone's mean colour, i.e. zero after
    normalisation, as the reference) and IGNORE_INDEX for the mask.
    """
    long_side = int(rng.integers(config.min_long_side, config.max_long_side + 1))
    image, mask = resize_long_side(image, mask, long_side)
    pixels = np.asarray(image, dtype=np.uint8)
    if config.hflip and rng.random() < 0.5:
        pixels = pixels[:, ::-1]
        mask = None if mask is None else mask[:, ::-1]

    crop = config.crop_size
    (src_top, src_left), (dst_top, dst_left), (rows, cols) = random_crop_box(
        pixels.shape[0], pixels.shape[1], crop, rng
    )
    canvas = np.empty((crop, crop, 3), dtype=np.uint8)
    canvas[:] = np.asarray(pad_value, dtype=np.uint8)
    canvas[dst_top : dst_top + rows, dst_left : dst_left + cols] = pixels[
        src_top : src_top + rows, src_left : src_left + cols
    ]
    if mask is None:
        return canvas, None
    mask_canvas = np.full((crop, crop), IGNORE_INDEX, dtype=np.uint8)
    mask_canvas[dst_top : dst_top + rows, dst_left : dst_left + cols] = mask[
        src_top : src_top + rows, src_left : src_left + cols
    ]
    return canvas, mask_canvas
