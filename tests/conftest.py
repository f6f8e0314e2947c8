"""Shared fixtures: a small VOC-layout data set written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from puzzlecam.io import save_label_png

TINY_CLASSES = ("square", "bar")


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


@pytest.fixture
def voc_tree(tmp_path: Path) -> Path:
    return write_voc_tree(tmp_path / "voc", {"train": 8, "val": 4})
