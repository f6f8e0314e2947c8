"""What several test modules share: tiny settings, tiny models and the small data sets and
files the tests write themselves. Fixtures built on these live in ``conftest.py``."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from puzzlecam.dataclass_yaml import to_dict
from puzzlecam.io import save_label_png
from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.training.loop import save_weights

__all__ = [
    "TINY_BACKBONE",
    "TINY_CLASSES",
    "TINY_OVERRIDES",
    "FOLDER_CLASSES",
    "save_tiny_segmenter",
    "write_voc_tree",
    "write_folder_dataset",
    "write_bomb_png",
    "write_weight_files",
    "tree_digest",
]

# the registered test-only backbone, random weights: fast on a CPU, no download
TINY_BACKBONE = BackboneConfig(name="test_efficientnet", pretrained="none", norm="fix")

TINY_CLASSES = ("square", "bar")

# `puzzlecam run --config demo` shrunk to seconds: a 16 + 8 image demo benchmark at 64 px,
# the tiny backbone in all three networks, one epoch each
TINY_OVERRIDES = [
    "name=tiny",
    "data.demo.num_train=16",
    "data.demo.num_val=8",
    "data.demo.image_size=[64, 64]",
    "data.demo.item_size=[24, 40]",
    "train_cls.backbone.name=test_efficientnet",
    "train_cls.backbone.pretrained=none",
    "train_cls.loop.epochs=1",
    "train_cls.loop.batch_size=8",
    "train_cls.loop.num_workers=0",
    "train_cls.augment.min_long_side=56",
    "train_cls.augment.max_long_side=72",
    "train_cls.augment.crop_size=64",
    "cams.scales=[1.0, 1.5]",
    "cams.num_workers=0",
    "train_aff.backbone.name=test_efficientnet",
    "train_aff.backbone.pretrained=none",
    "train_aff.loop.epochs=1",
    "train_aff.loop.batch_size=8",
    "train_aff.loop.num_workers=0",
    "train_aff.augment.min_long_side=56",
    "train_aff.augment.max_long_side=72",
    "train_aff.augment.crop_size=64",
    "rw.exp_times=4",
    "train_seg.backbone.name=test_efficientnet",
    "train_seg.backbone.pretrained=none",
    "train_seg.loop.epochs=1",
    "train_seg.loop.batch_size=8",
    "train_seg.loop.num_workers=0",
    "train_seg.augment.min_long_side=56",
    "train_seg.augment.max_long_side=72",
    "train_seg.augment.crop_size=64",
    "predict.scales=[1.0]",
]


def save_tiny_segmenter(path: Path, classes: tuple[str, ...] = TINY_CLASSES, seed: int = 0) -> Path:
    """A randomly initialised segmentation model on the tiny backbone, saved as
    ``train-seg`` saves one (weights + the metadata ``load_segmenter`` reads)."""
    torch.manual_seed(seed)
    model = Segmenter(TINY_BACKBONE, len(classes) + 1, "group")
    meta = {
        "kind": "segmenter",
        "backbone": to_dict(TINY_BACKBONE),
        "head_norm": "group",
        "classes": list(classes),
    }
    save_weights(path, model, "test", meta)
    return path


def write_voc_tree(
    root: Path,
    splits: dict[str, int],
    size: tuple[int, int] = (48, 64),
    classes: tuple[str, ...] = TINY_CLASSES,
    seed: int = 0,
) -> Path:
    """A VOC-layout tree with a custom classes.txt: each image holds one or two coloured
    rectangles whose class decides the colour; masks exact, tags in XML."""
    rng = np.random.default_rng(seed)
    for folder in ("JPEGImages", "Annotations", "SegmentationClass", "ImageSets/Segmentation"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "classes.txt").write_text("\n".join(classes) + "\n")
    colours = [(220, 40, 40), (40, 60, 220), (40, 200, 60)]
    height, width = size
    for split, count in splits.items():
        ids = []
        for index in range(count):
            image_id = f"{split}_{index:03d}"
            ids.append(image_id)
            pixels = rng.integers(90, 150, size=(height, width, 3), dtype=np.uint8)
            mask = np.zeros((height, width), dtype=np.uint8)
            present = sorted({int(c) for c in rng.choice(len(classes), size=rng.integers(1, 3))})
            objects = []
            for slot, cls in enumerate(present):
                top = int(rng.integers(2, height // 2))
                left = int(rng.integers(2 + slot * width // 2, width // 2 + slot * width // 2 - 8))
                bottom, right = top + height // 3, left + width // 4
                pixels[top:bottom, left:right] = colours[cls]
                mask[top:bottom, left:right] = cls + 1
                mask[top, left:right] = 255  # an ignore edge like VOC's
                objects.append((classes[cls], left, top, right, bottom))
            Image.fromarray(pixels).save(root / "JPEGImages" / f"{image_id}.jpg", quality=95)
            save_label_png(root / "SegmentationClass" / f"{image_id}.png", mask)
            xml = "".join(
                f"<object><name>{n}</name><difficult>{i % 2}</difficult><bndbox><xmin>{a}</xmin>"
                f"<ymin>{b}</ymin><xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
                for i, (n, a, b, c, d) in enumerate(objects)
            )
            (root / "Annotations" / f"{image_id}.xml").write_text(
                f"<annotation><filename>{image_id}.jpg</filename>{xml}</annotation>"
            )
        (root / "ImageSets" / "Segmentation" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


FOLDER_CLASSES = ("square", "bar", "blob")
_FOLDER_COLOURS = ((220, 40, 40), (40, 60, 220), (40, 200, 60))


def write_folder_dataset(
    root: Path,
    splits: tuple[tuple[str, int], ...] = (("train", 16), ("val", 8)),
    size: int = 64,
    seed: int = 0,
) -> Path:
    """A ``folder``-format data set (images/, labels.csv with a split column, classes.txt,
    masks/): images of one or two coloured shapes; exact masks (255 on each shape's top
    edge); every fourth image a PNG, the others JPEGs, as users have."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "classes.txt").write_text("\n".join(FOLDER_CLASSES) + "\n")
    rows = ["image_id,tags,split"]
    for split, count in splits:
        for index in range(count):
            image_id = f"{split}-{index:02d}"
            pixels = rng.integers(90, 150, size=(size, size, 3), dtype=np.uint8)
            mask = np.zeros((size, size), np.uint8)
            present = sorted(
                {int(c) for c in rng.choice(len(FOLDER_CLASSES), size=rng.integers(1, 3))}
            )
            for slot, cls in enumerate(present):
                top = int(rng.integers(2, size // 2))
                left = int(rng.integers(2, size // 2 - 12)) + slot * size // 2
                bottom, right = top + size // 3, left + size // 4
                pixels[top:bottom, left:right] = _FOLDER_COLOURS[cls]
                mask[top:bottom, left:right] = cls + 1
                mask[top, left:right] = 255
            extension = ".png" if index % 4 == 3 else ".jpg"
            Image.fromarray(pixels).save(root / "images" / f"{image_id}{extension}")
            save_label_png(root / "masks" / f"{image_id}.png", mask)
            rows.append(f"{image_id},{' '.join(FOLDER_CLASSES[c] for c in present)},{split}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


def write_bomb_png(path: Path, width: int = 40_000, height: int = 40_000) -> Path:
    """A 60-byte PNG whose header claims width x height pixels (1.6 G by default, twice
    PIL's limit): PIL refuses it when opened, before any decoding."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))
    return path


class _Payload:
    """Unpickling this would run ``touch`` on a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def write_weight_files(folder: Path) -> Path:
    """A good weights file and four bad ones: a pickle payload, truncated, empty, text."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {"w": torch.ones(2)}}, folder / "good.pt")
    torch.save({"state_dict": _Payload(folder / "PWNED")}, folder / "payload.pt")
    data = (folder / "good.pt").read_bytes()
    (folder / "truncated.pt").write_bytes(data[: len(data) // 2])
    (folder / "empty.pt").write_bytes(b"")
    (folder / "text.pt").write_text("hello\n")
    return folder


def tree_digest(folder: Path) -> dict[str, str]:
    """{relative path: sha256} of every file below ``folder``."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
