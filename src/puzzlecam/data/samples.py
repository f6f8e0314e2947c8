"""The one record every data format produces: an image, its tags and its optional mask."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from puzzlecam.constants import IGNORE_INDEX
from puzzlecam.errors import DataError
from puzzlecam.io import load_label_png

__all__ = [
    "Sample",
    "SplitData",
    "tags_to_vector",
    "load_mask",
    "check_mask",
    "mask_size_problem",
    "mask_values_problem",
]


@dataclass(frozen=True)
class Sample:
    """One image of a split. ``tags`` are 0-based foreground class indices, sorted, unique."""

    image_id: str
    image_path: Path
    tags: tuple[int, ...]
    mask_path: Path | None = None

    @property
    def keys(self) -> np.ndarray:
        """Label values (1..C) of the tagged classes: the channels of this image's score files."""
        return np.asarray(self.tags, dtype=np.int64) + 1


@dataclass(frozen=True)
class SplitData:
    """A named list of samples with the class list they refer to.

    ``skipped`` holds ``(image_id, reason)`` for listed images left out (e.g. no tags),
    so callers can report them instead of losing them silently.
    """

    name: str
    classes: tuple[str, ...]
    samples: tuple[Sample, ...]
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def with_masks(self) -> SplitData:
        """Only the samples that have a ground-truth mask."""
        return SplitData(
            self.name, self.classes, tuple(s for s in self.samples if s.mask_path), self.skipped
        )


def tags_to_vector(tags: tuple[int, ...], num_classes: int) -> np.ndarray:
    """Multi-hot float32 vector (C,) from 0-based tag indices."""
    vector = np.zeros(num_classes, dtype=np.float32)
    vector[list(tags)] = 1.0
    return vector


def mask_size_problem(shape: tuple[int, ...], size: tuple[int, int]) -> str | None:
    """Why a mask of (H, W) ``shape`` does not fit its image of (H, W) ``size`` (None: it does)."""
    if tuple(shape) == tuple(size):
        return None
    return (
        f"mask is {shape[1]}x{shape[0]} (WxH) but its image is "
        f"{size[1]}x{size[0]}; masks must have their image's size"
    )


def mask_values_problem(values: Iterable[int], num_classes: int) -> str | None:
    """Why a mask holding ``values`` is not a label map of ``num_classes`` (None: it is)."""
    bad = sorted(int(v) for v in values if v > num_classes and v != IGNORE_INDEX)
    if not bad:
        return None
    return (
        f"mask has values {bad} outside the classes (valid: 0 = background, "
        f"1..{num_classes}, {IGNORE_INDEX} = ignore)"
    )


def check_mask(
    mask: np.ndarray, num_classes: int, path: str | Path, size: tuple[int, int] | None = None
) -> np.ndarray:
    """Validate an (H, W) label map: values in {0..C, 255}, and (H, W) == size when given."""
    problem = (mask_size_problem(mask.shape, size) if size is not None else None) or (
        mask_values_problem(np.unique(mask).tolist(), num_classes)
    )
    if problem:
        raise DataError(path, problem)
    return mask


def load_mask(sample: Sample, num_classes: int, size: tuple[int, int]) -> np.ndarray:
    """The sample's ground-truth mask, validated against its image's (H, W) ``size``."""
    if sample.mask_path is None:
        raise DataError(sample.image_path, "image has no ground-truth mask")
    return check_mask(load_label_png(sample.mask_path), num_classes, sample.mask_path, size)
