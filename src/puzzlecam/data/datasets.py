"""torch Datasets over a SplitData. Images leave here as uint8 (3, H, W) tensors.

Training views are random but reproducible: each sample's generator is seeded from
(seed, epoch, index), so a resumed run sees exactly the views an uninterrupted one would,
whatever the number of loader workers or processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from puzzlecam.data.ids import id_path
from puzzlecam.data.samples import Sample, SplitData, check_mask, load_mask, tags_to_vector
from puzzlecam.data.transforms import AugmentConfig, augment
from puzzlecam.io import load_image, load_label_png

__all__ = [
    "ClassificationDataset",
    "SegmentationDataset",
    "InferenceDataset",
    "image_to_tensor",
]


def image_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 array -> (3, H, W) uint8 tensor."""
    # writable too: a decoded image's array is read-only, and for a 1-pixel-wide image the
    # transposed view is already contiguous, which torch would share and warn about
    return torch.from_numpy(np.require(pixels.transpose(2, 0, 1), requirements=["C", "W"]))


class _EpochSeeded(Dataset):
    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, self.epoch, index))


class ClassificationDataset(_EpochSeeded):
    """(image uint8 (3, S, S), multi-hot target float (C,)) training pairs."""

    def __init__(
        self,
        split: SplitData,
        augment_config: AugmentConfig,
        pad_value: tuple[int, int, int],
        seed: int,
    ) -> None:
        super().__init__(seed)
        self.split, self.config, self.pad_value = split, augment_config, pad_value

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.split.samples[index]
        pixels, _ = augment(
            load_image(sample.image_path), None, self.config, self._rng(index), self.pad_value
        )
        target = tags_to_vector(sample.tags, self.split.num_classes)
        return image_to_tensor(pixels), torch.from_numpy(target)


class SegmentationDataset(_EpochSeeded):
    """(image uint8 (3, S, S), labels int64 (S/stride, S/stride)) training pairs.

    Labels come from the ground truth (``label_dir=None``) or from ``label_dir/{id}.png``
    (pseudo labels, affinity labels). ``label_stride`` > 1 shrinks the label map by
    nearest-neighbour sampling (AffinityNet trains at stride 4).
    """

    def __init__(
        self,
        split: SplitData,
        augment_config: AugmentConfig,
        pad_value: tuple[int, int, int],
        seed: int,
        label_dir: str | Path | None = None,
        label_stride: int = 1,
    ) -> None:
        super().__init__(seed)
        self.split, self.config, self.pad_value = split, augment_config, pad_value
        self.label_dir = None if label_dir is None else Path(label_dir)
        self.label_stride = label_stride
        if augment_config.crop_size % label_stride:
            raise ValueError("crop_size must be a multiple of label_stride")

    def __len__(self) -> int:
        return len(self.split)

    def _labels(self, sample: Sample, size: tuple[int, int]) -> np.ndarray:
        if self.label_dir is None:
            return load_mask(sample, self.split.num_classes, size)
        path = id_path(self.label_dir, sample.image_id, ".png")
        return check_mask(load_label_png(path), self.split.num_classes, path, size)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.split.samples[index]
        image = load_image(sample.image_path)
        labels = self._labels(sample, (image.size[1], image.size[0]))
        pixels, labels = augment(image, labels, self.config, self._rng(index), self.pad_value)
        if self.label_stride > 1:
            size = self.config.crop_size // self.label_stride
            labels = np.asarray(Image.fromarray(labels).resize((size, size), Image.NEAREST))
        return image_to_tensor(pixels), torch.from_numpy(labels.astype(np.int64))


class InferenceDataset(Dataset):
    """(index, image uint8 (3, H, W)) at the image's own size, for CAMs, boundaries, predict."""

    def __init__(self, samples: tuple[Sample, ...] | list[Sample]) -> None:
        self.samples = tuple(samples)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        pixels = np.asarray(load_image(self.samples[index].image_path), dtype=np.uint8)
        return index, image_to_tensor(pixels)
