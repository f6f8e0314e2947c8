"""Which data set a run reads, and which of its splits plays each role.

``DataConfig`` is the ``data:`` section of a run's config; ``load_split`` turns it into
the :class:`SplitData` of the split that plays a role ("train" or "val").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from puzzlecam.data.demo import DemoDataConfig
from puzzlecam.data.folder import read_folder
from puzzlecam.data.samples import SplitData
from puzzlecam.data.voc import read_voc, voc_split_exists
from puzzlecam.errors import ConfigError

__all__ = ["DataConfig", "split_name", "load_split"]


@dataclass(frozen=True)
class DataConfig:
    """Where the images, tags and masks are.

    format: ``voc`` (VOC devkit layout), ``folder`` (images/ + labels.csv), ``coco``
    (COCO 2014 instances json) or ``demo`` (built into ``root`` first, then read as voc).
    classes: replaces the data set's class list (else ``root/classes.txt``, else VOC's).
    train_split ``auto``: ``train_aug`` when its list is present, else ``train``.
    """

    format: Literal["voc", "folder", "coco", "demo"] = "voc"
    root: str = "data/VOC2012"
    classes: tuple[str, ...] = ()
    train_split: str = "auto"
    val_split: str = "val"
    tags_from: Literal["auto", "xml", "masks"] = "auto"
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)


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
