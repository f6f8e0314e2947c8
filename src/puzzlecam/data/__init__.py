"""Data: readers for each format, augmentation and torch datasets.

Every format yields a :class:`SplitData` of :class:`Sample` records; the rest of the
pipeline never looks at the format again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from puzzlecam.data.folder import read_folder
from puzzlecam.data.samples import Sample, SplitData, load_mask, tags_to_vector
from puzzlecam.data.voc import read_voc, voc_split_exists
from puzzlecam.errors import ConfigError

if TYPE_CHECKING:
    from puzzlecam.pipeline.config import DataConfig

__all__ = ["Sample", "SplitData", "load_mask", "tags_to_vector", "load_split", "split_name"]


def split_name(config: DataConfig, role: str) -> str:
    """The split a role ("train" or "val") reads: ``auto`` train is train_aug when listed."""
    if role == "val":
        return config.val_split
    if role != "train":
        raise ConfigError(f"unknown split role {role!r}; use 'train' or 'val'")
    if config.train_split != "auto":
        return config.train_split
    if config.format in ("voc", "demo") and voc_split_exists(config.root, "train_aug"):
        return "train_aug"
    return "train2014" if config.format == "coco" else "train"


def load_split(config: DataConfig, role: str) -> SplitData:
    """Samples of the split that plays ``role`` in a data set described by ``config``."""
    name = split_name(config, role)
    classes = config.classes or None
    if config.format in ("voc", "demo"):
        return read_voc(config.root, name, classes, config.tags_from)
    if config.format == "folder":
        return read_folder(config.root, name, classes)
    if config.format == "coco":
        from puzzlecam.data.coco import read_coco

        return read_coco(config.root, name, classes)
    raise ConfigError(f"unknown data format {config.format!r}")
