"""The demo benchmark's config (:class:`DemoDataConfig`), what a build reports
(:class:`DemoSummary`) and its image ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from puzzlecam.data.fashion_mnist import FASHION_MNIST_CLASSES
from puzzlecam.errors import ConfigError

__all__ = [
    "DEMO_CLASSES",
    "DEMO_FORMAT_VERSION",
    "DemoDataConfig",
    "DemoSummary",
    "demo_image_ids",
]

DEMO_CLASSES: tuple[str, ...] = FASHION_MNIST_CLASSES
"""Foreground classes of the default demo (``classes=()``), in label order (label = index + 1)."""

DEMO_FORMAT_VERSION = 1
"""Bumped whenever the generator changes its output; a build of another version is refused."""

_MAX_DISTRACTORS = 8  # per image


@dataclass(frozen=True)
class DemoDataConfig:
    """What the demo benchmark looks like; every field changes the files written.

    Sizes are (H, W) in pixels. ``item_size`` is the range of the long side of a pasted item
    (its tight box, aspect kept); it must fit in the image. Every earlier item keeps at least
    ``min_visible`` of its area under later ones. ``border_width`` pixels on each side of every
    object boundary are set to 255 (ignore), so the band is twice as wide.
    ``intensity_threshold`` (of 255) separates an item from the black of its 28x28 frame.
    ``classes``: the Fashion-MNIST class names to use, in label order (label value = position
    + 1); empty means all ten in Fashion-MNIST's order (:data:`DEMO_CLASSES`).
    ``distractors``: (min, max) untagged item-like blobs per image, painted under the items
    (see :mod:`puzzlecam.data.demo`); (0, 0), the default, builds what builds did without them.

    Images are JPEG like VOC's, so the demo goes through the same decoding as real data;
    quality 95 without chroma subsampling keeps the error small (mean ~2 grey levels, about
    10 KB per 128x128 image against 28 KB as PNG) and item colours from bleeding over the
    mask boundaries.
    """

    num_train: int = 600
    num_val: int = 200
    image_size: tuple[int, int] = (128, 128)
    min_items: int = 1
    max_items: int = 3
    item_size: tuple[int, int] = (48, 80)
    seed: int = 0
    min_visible: float = 0.5
    border_width: int = 1
    intensity_threshold: int = 10
    jpeg_quality: int = 95
    classes: tuple[str, ...] = ()
    distractors: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        # YAML and JSON give lists; the dataclass is frozen, hence object.__setattr__
        for name in ("image_size", "item_size", "distractors"):
            value = getattr(self, name)
            if not (isinstance(value, Sequence) and len(value) == 2):
                raise ConfigError(f"demo {name} must be a pair of ints, got {value!r}")
            object.__setattr__(self, name, (int(value[0]), int(value[1])))
        if isinstance(self.classes, str) or not isinstance(self.classes, Sequence):
            raise ConfigError(
                f"demo classes must be a list of Fashion-MNIST class names, got {self.classes!r}; "
                f"valid names: {', '.join(FASHION_MNIST_CLASSES)}"
            )
        object.__setattr__(self, "classes", tuple(str(name) for name in self.classes))
        self._check()

    @property
    def class_names(self) -> tuple[str, ...]:
        """The classes of the build, in label order: ``classes``, or all ten when empty."""
        return self.classes or DEMO_CLASSES

    @property
    def fashion_mnist_labels(self) -> tuple[int, ...]:
        """Fashion-MNIST label (0..9) of each class of :attr:`class_names`, in label order."""
        return tuple(FASHION_MNIST_CLASSES.index(name) for name in self.class_names)

    def _check(self) -> None:
        problems = []
        if self.num_train < 0 or self.num_val < 0 or self.num_train + self.num_val == 0:
            problems.append("num_train and num_val must be >= 0, and not both 0")
        if not 1 <= self.min_items <= self.max_items:
            problems.append(
                f"need 1 <= min_items <= max_items, got {self.min_items}, {self.max_items}"
            )
        height, width = self.image_size
        low, high = self.item_size
        if min(height, width) < 16:
            problems.append(f"image_size {self.image_size} is too small; use at least (16, 16)")
        if not 8 <= low <= high:
            problems.append(
                f"item_size must be (low, high) with 8 <= low <= high, got {self.item_size}"
            )
        elif high > min(height, width):
            problems.append(
                f"item_size {self.item_size} does not fit image_size {self.image_size}; "
                f"lower item_size to at most {min(height, width)}"
            )
        if not 0.0 < self.min_visible <= 1.0:
            problems.append(f"min_visible must be in (0, 1], got {self.min_visible}")
        if not 0 <= self.border_width <= 4:
            problems.append(f"border_width must be in 0..4, got {self.border_width}")
        if not 0 <= self.intensity_threshold < 255:
            problems.append(
                f"intensity_threshold must be in 0..254, got {self.intensity_threshold}"
            )
        if not 1 <= self.jpeg_quality <= 100:
            problems.append(f"jpeg_quality must be in 1..100, got {self.jpeg_quality}")
        if self.seed < 0:
            problems.append(f"seed must be >= 0, got {self.seed}")
        unknown = [name for name in self.classes if name not in FASHION_MNIST_CLASSES]
        repeated = sorted({name for name in self.classes if self.classes.count(name) > 1})
        if unknown or repeated:
            what = [f"unknown {unknown}"] if unknown else []
            what += [f"listed more than once {repeated}"] if repeated else []
            problems.append(
                f"classes: {' and '.join(what)}; choose distinct names among "
                f"{', '.join(FASHION_MNIST_CLASSES)} (or none for all ten)"
            )
        low, high = self.distractors
        if not 0 <= low <= high <= _MAX_DISTRACTORS:
            problems.append(
                f"distractors must be (min, max) per image with 0 <= min <= max <= "
                f"{_MAX_DISTRACTORS}, got {self.distractors}"
            )
        if problems:
            raise ConfigError("invalid demo data config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DemoDataConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ConfigError listing the valid ones."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown demo data option(s) {unknown}; valid: {sorted(names)}")
        return cls(**data)

    def num_images(self, split: str) -> int:
        """Number of images of ``split`` ("train" or "val")."""
        return {"train": self.num_train, "val": self.num_val}[split]


@dataclass(frozen=True)
class DemoSummary:
    """What a build produced (or found already built, ``reused=True``)."""

    root: Path
    num_images: Mapping[str, int]
    """Images per split ("train", "val")."""
    num_items: Mapping[str, int]
    """Pasted (visible) items per split."""
    items_per_class: Mapping[str, Mapping[str, int]]
    """Per split: class name -> number of pasted items."""
    images_per_class: Mapping[str, Mapping[str, int]]
    """Per split: class name -> number of images tagged with it."""
    pool_size: Mapping[str, int]
    """Per split: items were drawn from the first ``pool_size`` of its Fashion-MNIST split
    (those of the chosen classes)."""
    source: str
    """Where the items came from: "bundled" or the directory of the full set."""
    fingerprint: str
    """SHA-256 over every image's pixels, labels and annotation (independent of the JPEG codec)."""
    reused: bool = field(default=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (root as a string, ``reused`` left out)."""
        data = asdict(self)
        data["root"] = str(self.root)
        data.pop("reused")
        return data


def demo_image_ids(split: str, count: int) -> list[str]:
    """Image ids of a split, in order: ``train_000000``, ``train_000001``, ..."""
    return [f"{split}_{index:06d}" for index in range(count)]
