"""The demo benchmark: Fashion-MNIST items pasted onto textured backgrounds, in VOC layout.

``build_demo_dataset(root, DemoDataConfig())`` writes a small weakly-supervised segmentation
benchmark that the project's VOC reader reads like PASCAL VOC 2012::

    root/JPEGImages/{id}.jpg            RGB image (JPEG quality 95, 4:4:4)
    root/SegmentationClass/{id}.png     VOC-palette label PNG: 0 background, 1..C classes,
                                        255 a thin ignore band along every object boundary
    root/Annotations/{id}.xml           VOC XML, one <object> per visible item
    root/ImageSets/Segmentation/{train,val}.txt
    root/classes.txt                    the C class names, background excluded
    root/demo_items.json                which Fashion-MNIST item each object comes from (and,
                                        with distractors, each distractor's shades)
    root/demo.json                      config, content fingerprint, summary (written last)

Each image shows 1..3 items (28x28 grey Fashion-MNIST images, cropped to the item, upscaled
to a random size with a smooth outline, tinted: a random colour times the item's own
intensity, with mild shading) on a procedural background (value noise, stripes, checkers, gradients in random
colours). Items may overlap, but every item keeps at least ``min_visible`` of its area (else
it is placed again); the mask gives each pixel the label of the top-most item there. Train
images use items of Fashion-MNIST's train split, val images items of its test split.

Distractors (``distractors=(min, max)`` per image, none by default) are salient things in the
background that are no class, like the many untagged things in PASCAL VOC's background:
without them, "differs from the border's colours" finds the items (a no-learning saliency
baseline scored above a learned CAM). Each is a smooth random blob (an ellipse of random
aspect and angle, its outline perturbed by value noise) that takes from an item of the same
split (train items for train images, test items for val) its area at the drawn size and its
shades: the item's own intensities re-arranged along a smooth noise field (histogram
matching). It is sized from ``item_size`` and tinted, shaded and placed like an item, so
colour, contrast and size cannot tell it from one, while no garment outline or fold is left.
A blob was chosen over an item cut into shuffled blocks: blocks keep straight block edges and
gaps, a shape cue of their own, while a blob's outline is smooth like an item's.
Distractors are painted on the background under the items (each keeps ``min_visible`` of its
area uncovered, else it is placed again, else left out) and are background everywhere: label 0
in the masks (no ignore band of their own), no XML object, no tag. They come from their own
generator, so the items, their placement and colours and the background are drawn exactly as
without them (the item colours are chosen against the image without distractors; a
distractor's colour keeps clear of both its background and the items' colours): the image
changes only where items do not cover it wholly, and the masks and annotations not at all.
demo_items.json lists them under "distractors".

The classes are all ten of Fashion-MNIST (C = 10, in its label order) or the subset
``classes`` names, in the order given: several are near-duplicates at 28x28 (shirt, tshirt,
pullover, coat; sandal, sneaker, boot), so a subset of distinct ones makes an easier benchmark.

Determinism: everything is drawn from numpy Generators seeded by ``(seed, split, image)``,
never global state, so the same config gives byte-identical files, and every image can be
rebuilt alone (which is how an interrupted build resumes). Items are drawn without repetition
from the items of the chosen classes among the first K items of each split, K being the size
of the bundled subset (6,000 train, 2,000 test), so the bundled subset and the full set give
the same dataset; only when a config needs more such items than the first K hold is the full
set required (then K is the whole split). With all ten classes the pool is the first K items
themselves, so ``classes=()`` builds exactly what builds made before the option existed did.
"""

from __future__ import annotations

import colorsys
import hashlib
import io
import json
import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image, ImageFilter

from puzzlecam.constants import IGNORE_INDEX
from puzzlecam.data.fashion_mnist import (
    BUNDLED_TEST_ITEMS,
    BUNDLED_TRAIN_ITEMS,
    DEFAULT_FASHION_MNIST_DIRS,
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_ENV,
    FASHION_MNIST_FILES,
    FASHION_MNIST_SIZES,
    FashionMnistSplit,
    Split,
    bundled_fashion_mnist_dir,
    find_fashion_mnist,
    load_bundled_fashion_mnist,
    load_fashion_mnist,
    read_idx,
)
from puzzlecam.dataclass_yaml import differences
from puzzlecam.errors import ConfigError, DataError
from puzzlecam.io import atomic_write, read_json, save_label_png, write_json
from puzzlecam.visualize import resize_array

__all__ = [
    "DEMO_CLASSES",
    "DEMO_FORMAT_VERSION",
    "DemoDataConfig",
    "DemoSummary",
    "build_demo_dataset",
    "demo_image_ids",
]

DEMO_CLASSES: tuple[str, ...] = FASHION_MNIST_CLASSES
"""Foreground classes of the default demo (``classes=()``), in label order (label = index + 1)."""

DEMO_FORMAT_VERSION = 1
"""Bumped whenever the generator changes its output; a build of another version is refused."""

_FORMAT = "puzzlecam-demo"
_META_FILE = "demo.json"
_ITEMS_FILE = "demo_items.json"
# demo split -> (Fashion-MNIST split, seed stream code, items in the bundled subset)
_SPLITS: Mapping[str, tuple[Split, int, int]] = {
    "train": ("train", 0, BUNDLED_TRAIN_ITEMS),
    "val": ("test", 1, BUNDLED_TEST_ITEMS),
}
_LAYOUT_DIRS = ("JPEGImages", "SegmentationClass", "Annotations", "ImageSets/Segmentation")
_MAX_PLACEMENT_TRIES = 50
_WRITER_THREADS = 8  # fsync-bound: overlapping more writes keeps the disk busy
_ITEM_MARGIN = 2  # zero pixels around an item crop, room for its upscaled soft edge
_MAX_HOLE_FRACTION = 0.02  # holes up to 2% of the 28x28 frame (16 px) are filled
_MAX_DISTRACTORS = 8  # per image
# last seed word of an image's distractor generator, (seed, split stream, image, this): not 0,
# as a trailing 0 would give the image's own generator (seed, split stream, image)
_DISTRACTOR_STREAM = 0x44495354  # "DIST"


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
    (see the module docstring); (0, 0), the default, builds what builds did without them.

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


# ---------------------------------------------------------------------------------------------
# Items: clean masks and tight crops of the 28x28 Fashion-MNIST images


def _components(mask: np.ndarray, diagonal: bool) -> np.ndarray:
    """Connected-component ids of a batch of masks: (N, H, W) bool -> (N, H, W) int32.

    A component's id is the largest flat index (within its mask) of its pixels, plus 1; 0
    outside the mask. Union-find over neighbour pairs, vectorised over the whole batch: each
    round hooks the smaller root of every differing pair under the larger one, then
    shortcuts every pointer to its root; a handful of rounds suffice.
    """
    num, height, width = mask.shape
    index = np.arange(mask.size, dtype=np.int64).reshape(mask.shape)
    full = slice(None)
    pairs = [  # (first pixel, second pixel) of every neighbour pair, as slices
        ((full, full, slice(0, -1)), (full, full, slice(1, None))),
        ((full, slice(0, -1), full), (full, slice(1, None), full)),
    ]
    if diagonal:
        pairs += [
            ((full, slice(0, -1), slice(0, -1)), (full, slice(1, None), slice(1, None))),
            ((full, slice(0, -1), slice(1, None)), (full, slice(1, None), slice(0, -1))),
        ]
    first, second = [], []
    for one, other in pairs:
        both = mask[one] & mask[other]
        first.append(index[one][both])
        second.append(index[other][both])
    left, right = np.concatenate(first), np.concatenate(second)
    parent = np.arange(mask.size, dtype=np.int64)
    while True:
        root_left, root_right = parent[left], parent[right]
        differ = root_left != root_right
        if not differ.any():
            break
        root_left, root_right = root_left[differ], root_right[differ]
        np.maximum.at(parent, np.minimum(root_left, root_right), np.maximum(root_left, root_right))
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
    offsets = (np.arange(num, dtype=np.int64) * height * width)[:, None, None]
    return np.where(mask, parent.reshape(mask.shape) - offsets + 1, 0).astype(np.int32)


def _per_item_counts(ids: np.ndarray) -> np.ndarray:
    """Pixel count of every component id of every item: (N, H, W) -> (N, H*W + 1)."""
    num, height, width = ids.shape
    stride = height * width + 1
    flat = ids.reshape(num, -1) + (np.arange(num) * stride)[:, None]
    return np.bincount(flat.ravel(), minlength=num * stride).reshape(num, stride)


def _item_masks(images: np.ndarray, threshold: int) -> np.ndarray:
    """Object masks of items: (N, 28, 28) uint8 -> (N, 28, 28) bool.

    Object = intensity above ``threshold``; then the largest 8-connected component is kept and
    holes smaller than 2% of the frame filled (dark print inside a shirt), while larger ones
    (the loop of a bag handle, the gaps of a sandal) stay background.
    """
    raw = images > threshold
    ids = _components(raw, diagonal=True)
    counts = _per_item_counts(ids)
    counts[:, 0] = 0
    keep = ids == counts.argmax(axis=1)[:, None, None]
    keep &= raw
    # background components (4-connected, the dual of 8-connected objects) not touching the frame
    background = _components(~keep, diagonal=False)
    border_ids = np.concatenate(
        [background[:, 0, :], background[:, -1, :], background[:, :, 0], background[:, :, -1]],
        axis=1,
    )
    hole_counts = _per_item_counts(background)
    max_hole = _MAX_HOLE_FRACTION * images.shape[1] * images.shape[2]
    fill = (hole_counts > 0) & (hole_counts <= max_hole)
    fill[:, 0] = False
    rows = np.arange(len(images))[:, None]
    fill[rows, border_ids] = False
    return keep | fill[rows[:, :, None], background]


@dataclass(frozen=True)
class _Item:
    """One Fashion-MNIST item ready to paste: its tight box plus a margin of 2 source pixels."""

    index: int  # index in its Fashion-MNIST split
    label: int  # 0-based class of the demo (position in the config's class_names); -1: distractor
    mask: np.ndarray  # (h, w) float32 in {0, 1}, 0 in the margin
    intensity: np.ndarray  # (h, w) float32 in [0, 1], max 1; continued into the margin
    extent: int  # long side of the tight box, in source pixels


def _prepare_items(
    data: FashionMnistSplit, indices: np.ndarray, threshold: int, labels: Sequence[int]
) -> dict[int, _Item]:
    """Clean mask and normalised intensity of the items ``indices`` of ``data`` (batched).

    ``labels``: the Fashion-MNIST label of each demo class, in demo label order.
    """
    demo_label = {fm_label: position for position, fm_label in enumerate(labels)}
    images = data.images[indices].astype(np.float32)  # (N, 28, 28)
    masks = _item_masks(data.images[indices], threshold)
    blank = ~masks.any(axis=(1, 2))  # a blank image: keep its brightest pixels as its shape
    masks[blank] = images[blank] >= images[blank].max(axis=(1, 2), keepdims=True)
    values = images * masks
    values /= np.maximum(values.max(axis=(1, 2), keepdims=True), 1.0)
    margin = ((0, 0), (_ITEM_MARGIN, _ITEM_MARGIN), (_ITEM_MARGIN, _ITEM_MARGIN))
    inside = np.pad(masks, margin).astype(np.float32)
    intensity = _extend_outwards(np.pad(values, margin), inside, _ITEM_MARGIN)
    items = {}
    for k, index in enumerate(indices.tolist()):
        items[index] = _cropped_item(
            index, demo_label[int(data.labels[index])], masks[k], inside[k], intensity[k]
        )
    return items


def _cropped_item(
    index: int, label: int, mask: np.ndarray, inside: np.ndarray, intensity: np.ndarray
) -> _Item:
    """The item cut to its tight box plus the margin: ``mask`` (h, w) bool on the source frame,
    ``inside`` and ``intensity`` float32 on that frame padded by the margin."""
    rows, cols = np.nonzero(mask)  # the tight box, then the margin around it
    box = (
        slice(rows.min(), rows.max() + 1 + 2 * _ITEM_MARGIN),
        slice(cols.min(), cols.max() + 1 + 2 * _ITEM_MARGIN),
    )
    return _Item(
        index=index,
        label=label,
        mask=inside[box],
        intensity=intensity[box],
        extent=int(max(rows.max() - rows.min(), cols.max() - cols.min()) + 1),
    )


def _extend_outwards(values: np.ndarray, inside: np.ndarray, steps: int) -> np.ndarray:
    """Brighten the item's dim outer ring, then fill ``steps`` rings outside ``inside``.

    Outside pixels get the mean of their already-filled neighbours, so the upscaled soft edge
    of an item shows its own colour, not a dark rim blended with the zeros around it.
    (..., h, w) float32 -> (..., h, w) float32.
    """
    values, known = values * inside, inside.copy()
    # the outermost ring of the item is dim in the source (anti-aliased, partly covered):
    # give it at least the mean of the item pixels just inside it
    core = inside * (_sum3x3(inside) == 9)
    rim = (inside > 0) & (core == 0)
    core_mean = _sum3x3(values * core) / np.maximum(_sum3x3(core), 1.0)
    values = np.where(rim & (_sum3x3(core) > 0), np.maximum(values, core_mean), values)
    for _ in range(steps):
        total, count = _sum3x3(values * known), _sum3x3(known)
        fill = (known == 0) & (count > 0)
        values = np.where(fill, total / np.maximum(count, 1.0), values)
        known = np.where(fill, 1.0, known).astype(np.float32)
    return values.astype(np.float32)


def _sum3x3(array: np.ndarray) -> np.ndarray:
    """Sum over each pixel's 3x3 neighbourhood (zero outside): (..., h, w) -> (..., h, w)."""
    padded = np.pad(array, [(0, 0)] * (array.ndim - 2) + [(1, 1), (1, 1)])
    rows = padded[..., :-2] + padded[..., 1:-1] + padded[..., 2:]
    return rows[..., :-2, :] + rows[..., 1:-1, :] + rows[..., 2:, :]


# ---------------------------------------------------------------------------------------------
# Distractors: things with an item's look but no class's shape


def _distractor_item(rng: np.random.Generator, source: _Item) -> _Item:
    """A smooth random blob with the intensities and area of ``source``, to paste like an item.

    Outline: the pixels of a 48x48 frame (room to stay clear of its edges) where an ellipse
    (random aspect 0.4..1 and angle) plus coarse value noise is highest, as many as ``source``
    covers; its largest component, small holes filled (as for items). Inside: the source's own
    intensities re-arranged by rank along a smooth noise field (histogram matching), so once
    tinted it has the item's shades, but neither its outline nor its folds and seams. Its
    ``extent`` is the source's (adjusted for the area the clean-up changed), so a pasting size
    drawn from ``item_size`` gives the blob the area that the item would get.
    """
    frame = (48, 48)
    ys, xs = _grid(frame)
    centre = (frame[0] - 1) / 2
    angle = rng.uniform(0.0, math.pi)
    along = (xs - centre) * math.cos(angle) + (ys - centre) * math.sin(angle)
    across = (ys - centre) * math.cos(angle) - (xs - centre) * math.sin(angle)
    radius = np.hypot(along, across / rng.uniform(0.4, 1.0)) / centre  # (48, 48), 1 at the edge
    height = 0.5 * _value_noise(rng, frame, int(rng.integers(4, 8))) - radius
    values = np.sort(source.intensity[source.mask > 0])  # (n,) the item's intensities
    top = height >= np.sort(height.ravel())[-values.size]
    blob = _item_masks(top.astype(np.uint8)[None] * 255, 127)[0]  # (48, 48) bool
    shade = 0.75 * _value_noise(rng, frame, int(rng.integers(5, 10)))
    shade += 0.25 * _value_noise(rng, frame, int(rng.integers(16, 24)))
    ranks = np.empty(int(blob.sum()), dtype=np.int64)
    ranks[np.argsort(shade[blob], kind="stable")] = np.arange(ranks.size)
    picked = np.round(ranks * (values.size - 1) / max(ranks.size - 1, 1)).astype(np.int64)
    intensity = np.zeros(frame, dtype=np.float32)
    intensity[blob] = values[picked]
    margin = ((_ITEM_MARGIN, _ITEM_MARGIN), (_ITEM_MARGIN, _ITEM_MARGIN))
    inside = np.pad(blob, margin).astype(np.float32)
    intensity = _extend_outwards(np.pad(intensity, margin), inside, _ITEM_MARGIN)
    item = _cropped_item(source.index, -1, blob, inside, intensity)
    extent = source.extent * math.sqrt(ranks.size / values.size)
    return replace(item, extent=max(1, round(extent)))


# ---------------------------------------------------------------------------------------------
# Procedural backgrounds


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


# ---------------------------------------------------------------------------------------------
# One image


@dataclass(frozen=True)
class _Placed:
    item: _Item
    top: int
    left: int
    alpha: np.ndarray  # (h, w) float32, soft edge
    hard: np.ndarray  # (h, w) bool, alpha >= 0.5: the item's pixels in the mask
    intensity: np.ndarray  # (h, w) float32 in [0, 1]


@dataclass(frozen=True)
class _Rendered:
    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray  # (H, W) uint8
    objects: list[dict[str, Any]]
    distractors: list[dict[str, Any]]
    uncovered: np.ndarray  # (H, W) float32: the share of each pixel the items leave uncovered


@dataclass(frozen=True)
class _Scaled:
    alpha: np.ndarray  # (h, w) float32, soft edge
    hard: np.ndarray  # (h, w) bool, alpha >= 0.5: the item's pixels in the mask
    size: tuple[int, int]  # size of the whole upscaled item array, margins included
    window: tuple[slice, slice]  # where alpha and hard lie in it (alpha > 0 rows and columns)


def _scaled_item(item: _Item, long_side: int) -> _Scaled:
    """Item upscaled so that the long side of its tight box is ``long_side`` pixels.

    The 28x28 mask is upscaled bilinearly and smoothed (Gaussian, sigma 0.35 source pixels)
    so that its 0.5 contour is round instead of a staircase of source pixels.
    """
    scale = long_side / item.extent
    height, width = item.mask.shape
    size = (max(2, round(height * scale)), max(2, round(width * scale)))
    coverage = Image.fromarray((item.mask * 255.0).astype(np.uint8), mode="L")
    coverage = coverage.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    coverage = coverage.filter(ImageFilter.GaussianBlur(0.35 * scale))
    mask = np.asarray(coverage, dtype=np.float32) / 255.0
    # a ramp about 1 px wide around the 0.5 contour: anti-aliased, and the hard mask
    # (alpha >= 0.5) is exactly where the item covers at least half of the pixel colour
    alpha = np.clip((mask - 0.5) * 2.0 + 0.5, 0.0, 1.0)
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:  # cannot happen for long_side >= 8; keep the whole array to be safe
        rows, cols = np.arange(size[0]), np.arange(size[1])
    window = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    return _Scaled(alpha[window], alpha[window] >= 0.5, size, window)


def _place(
    rng: np.random.Generator,
    items: Sequence[_Item],
    config: DemoDataConfig,
    above: np.ndarray | None = None,
) -> tuple[list[_Placed], np.ndarray]:
    """Sizes and positions such that every earlier item keeps ``min_visible`` of its area.

    ``above`` (H, W) bool: pixels of something that lies on top of all of these (the items,
    when distractors are placed); it hides them too, the new one included. An item that
    finds no such place in 50 tries is left out. Returns the placed items (bottom to top) and
    the owner map (H, W) int16: 0 background, k + 1 where item k is on top of the others.
    """
    height, width = config.image_size
    owner = np.zeros((height, width), dtype=np.int16)
    placed: list[_Placed] = []
    areas: list[int] = []
    for item in items:
        for _ in range(_MAX_PLACEMENT_TRIES):
            long_side = int(rng.integers(config.item_size[0], config.item_size[1] + 1))
            scaled = _scaled_item(item, long_side)
            while scaled.hard.shape[0] > height or scaled.hard.shape[1] > width:
                # the soft edge made it a pixel or two larger than the image: shrink it
                excess = max(scaled.hard.shape[0] - height, scaled.hard.shape[1] - width)
                long_side = max(long_side - excess, 1)
                scaled = _scaled_item(item, long_side)
            if not scaled.hard.any():
                continue
            item_h, item_w = scaled.hard.shape
            top = int(rng.integers(0, height - item_h + 1))
            left = int(rng.integers(0, width - item_w + 1))
            trial = owner.copy()
            trial[top : top + item_h, left : left + item_w][scaled.hard] = len(placed) + 1
            seen = trial if above is None else trial[~above]
            visible = np.bincount(seen.ravel(), minlength=len(placed) + 2)[1:]
            area = int(scaled.hard.sum())
            # (without ``above`` the new one is wholly visible: only the earlier ones can fail)
            if all(
                v >= config.min_visible * a for v, a in zip(visible, [*areas, area], strict=True)
            ):
                owner = trial
                intensity = np.clip(resize_array(item.intensity, scaled.size, "bicubic"), 0.0, 1.0)
                placed.append(
                    _Placed(item, top, left, scaled.alpha, scaled.hard, intensity[scaled.window])
                )
                areas.append(area)
                break
    return placed, owner


def _ignore_band(owner: np.ndarray, width: int) -> np.ndarray:
    """Pixels with a differently-owned pixel within ``width`` px (Chebyshev): (H, W) bool.

    Both sides of every boundary are marked (object/background and object/object), so the
    band is ``2 * width`` px wide, centred on the contour like VOC's.
    """
    if width == 0:
        return np.zeros(owner.shape, dtype=bool)
    height, wide = owner.shape
    padded = np.pad(owner, width, mode="edge")  # the image frame is no boundary
    span = range(2 * width + 1)
    row_max = np.maximum.reduce([padded[:, d : d + wide] for d in span])
    row_min = np.minimum.reduce([padded[:, d : d + wide] for d in span])
    high = np.maximum.reduce([row_max[d : d + height] for d in span])
    low = np.minimum.reduce([row_min[d : d + height] for d in span])
    return high != low


def _contrasting_colour(rng: np.random.Generator, references: Sequence[np.ndarray]) -> np.ndarray:
    """A saturated random colour, redrawn (up to 8 times) while too close to a reference."""
    best, best_distance = None, -1.0
    for _ in range(8):
        colour = _random_colour(rng, (0.35, 1.0), (0.5, 1.0))
        distance = min(float(np.linalg.norm(colour - reference)) for reference in references)
        if distance > best_distance:
            best, best_distance = colour, distance
        if distance >= 0.4:
            break
    assert best is not None
    return best


def _shading(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """Mild directional light across an item: (h, w) float32 around 1 (+-15%)."""
    ys, xs = _grid(size)
    angle = rng.uniform(0.0, 2 * math.pi)
    ramp = xs * math.cos(angle) + ys * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    return (0.85 + 0.3 * ramp).astype(np.float32)


def _paint(
    rng: np.random.Generator,
    canvas: np.ndarray,
    spot: _Placed,
    avoid: Sequence[np.ndarray] = (),
) -> tuple[tuple[slice, slice], np.ndarray]:
    """Tint ``spot`` against what lies under it (and the colours ``avoid``) and paint it on
    ``canvas`` (H, W, 3), in place. Returns the box painted (rows, columns) and the colour.
    """
    item_h, item_w = spot.hard.shape
    box = (slice(spot.top, spot.top + item_h), slice(spot.left, spot.left + item_w))
    region = canvas[box]
    colour = _contrasting_colour(rng, [region[spot.hard].mean(axis=0), *avoid])
    # colour x the item's own intensity keeps its texture (folds, prints, seams)
    # (a gamma below 1 lifts the dim, anti-aliased outermost pixels of the source image)
    texture = (0.2 + 0.8 * spot.intensity**0.75) * _shading(rng, (item_h, item_w))
    rgb = np.clip(colour * texture[:, :, None], 0.0, 1.0)
    alpha = spot.alpha[:, :, None]
    canvas[box] = region * (1 - alpha) + rgb * alpha
    return box, colour


def _voc_box(visible: np.ndarray) -> list[int]:
    """VOC box of the pixels of ``visible`` (H, W) bool: 1-based, inclusive [x0, y0, x1, y1]."""
    rows, cols = np.nonzero(visible)
    return [int(cols.min()) + 1, int(rows.min()) + 1, int(cols.max()) + 1, int(rows.max()) + 1]


def _render(
    rng: np.random.Generator,
    items: Sequence[_Item],
    config: DemoDataConfig,
    clutter: tuple[np.random.Generator, Sequence[_Item]] | None = None,
) -> _Rendered:
    """Image, labels, annotation objects and distractors of one demo image.

    ``clutter``: the distractors' own generator and the items lending them their intensities
    (see :func:`_distractor_item`). The items are rendered exactly as without distractors
    (same draws; colours chosen against the image without them), and the distractors, painted
    on the bare background, show through wherever the items leave it uncovered.
    """
    background = _background(rng, config.image_size)  # (H, W, 3)
    canvas = background.copy()
    placed, owner = _place(rng, items, config)
    uncovered = np.ones(config.image_size, dtype=np.float32)  # (H, W)
    colours = []
    for spot in placed:
        box, colour = _paint(rng, canvas, spot)
        uncovered[box] *= 1 - spot.alpha
        colours.append(colour)
    # sensor-like grain, the same on all channels (uniform, std ~1.4% of the range)
    grain = (rng.random(canvas.shape[:2], dtype=np.float32)[:, :, None] - 0.5) * 0.05
    distractors: list[dict[str, Any]] = []
    if clutter is not None and clutter[1]:
        under, distractors = _clutter(*clutter, background, owner > 0, colours, config)
        canvas += (under - background) * uncovered[:, :, None]  # what shows of the change
    image = np.clip((canvas + grain) * 255.0 + 0.5, 0, 255).astype(np.uint8)

    class_of_owner = np.zeros(len(placed) + 1, dtype=np.uint8)
    class_of_owner[1:] = [spot.item.label + 1 for spot in placed]
    labels = class_of_owner[owner]
    band = _ignore_band(owner, config.border_width)
    labels[band] = IGNORE_INDEX

    objects = []
    for number, spot in enumerate(placed, start=1):
        visible = owner == number
        if not (visible & ~band).any():  # only ignore band left: neither a tag nor an object
            continue
        objects.append(
            {
                "class": config.class_names[spot.item.label],
                "item": spot.item.index,
                "bbox": _voc_box(visible),  # of the visible part
                "visible": round(float(visible.sum()) / float(spot.hard.sum()), 4),
            }
        )
    return _Rendered(
        image=image,
        labels=labels,
        objects=objects,
        distractors=distractors,
        uncovered=uncovered,
    )


def _clutter(
    rng: np.random.Generator,
    sources: Sequence[_Item],
    background: np.ndarray,
    items: np.ndarray,
    item_colours: Sequence[np.ndarray],
    config: DemoDataConfig,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Distractors made from ``sources`` painted on a copy of ``background`` (H, W, 3).

    Placed like items (sizes from ``item_size``, each keeping ``min_visible`` of its area)
    under the items, whose pixels ``items`` (H, W) bool hide them too; tinted like items, the
    colour chosen against the background under it and also against ``item_colours``, so that
    no distractor passes for a part of an item it touches. Returns the painted copy and a
    record per distractor: the item lending its intensities, the box of its visible part and
    its visible share.
    """
    blobs = [_distractor_item(rng, source) for source in sources]
    placed, owner = _place(rng, blobs, config, above=items)
    canvas = background.copy()
    for spot in placed:
        _paint(rng, canvas, spot, item_colours)
    records = []
    for number, spot in enumerate(placed, start=1):
        visible = (owner == number) & ~items
        records.append(
            {
                "item": spot.item.index,
                "bbox": _voc_box(visible),
                "visible": round(float(visible.sum()) / float(spot.hard.sum()), 4),
            }
        )
    return canvas, records


def _annotation_xml(
    image_id: str, size: tuple[int, int], objects: Sequence[Mapping[str, Any]]
) -> str:
    """VOC-style XML annotation of one image."""
    height, width = size
    lines = [
        "<annotation>",
        "\t<folder>puzzlecam-demo</folder>",
        f"\t<filename>{escape(image_id)}.jpg</filename>",
        "\t<source>",
        "\t\t<database>puzzlecam demo (Fashion-MNIST items, MIT licence, Zalando SE)</database>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{width}</width>",
        f"\t\t<height>{height}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        "\t<segmented>1</segmented>",
    ]
    for obj in objects:
        xmin, ymin, xmax, ymax = obj["bbox"]
        lines += [
            "\t<object>",
            f"\t\t<name>{escape(obj['class'])}</name>",
            "\t\t<pose>Unspecified</pose>",
            "\t\t<truncated>0</truncated>",
            f"\t\t<occluded>{int(obj['visible'] < 1.0)}</occluded>",
            "\t\t<difficult>0</difficult>",
            "\t\t<bndbox>",
            f"\t\t\t<xmin>{xmin}</xmin>",
            f"\t\t\t<ymin>{ymin}</ymin>",
            f"\t\t\t<xmax>{xmax}</xmax>",
            f"\t\t\t<ymax>{ymax}</ymax>",
            "\t\t</bndbox>",
            "\t</object>",
        ]
    lines.append("</annotation>")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------
# The build


def _jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    """JPEG encoding without chroma subsampling; no time stamps, so reproducible bytes."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(
        buffer, format="JPEG", quality=quality, subsampling=0, optimize=False, progressive=False
    )
    return buffer.getvalue()


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_write(path) as handle:
        handle.write(data)


def _pool_items(labels: np.ndarray, config: DemoDataConfig) -> np.ndarray:
    """Indices (into ``labels``, ascending) of the items of the config's classes."""
    return np.flatnonzero(np.isin(labels, config.fashion_mnist_labels))


def _classes_text(config: DemoDataConfig) -> str:
    """How errors name the classes items are drawn from."""
    if not config.classes:
        return "of any class"
    return f"of the {len(config.classes)} chosen classes ({', '.join(config.classes)})"


def _pool_sizes(config: DemoDataConfig) -> dict[str, int]:
    """Per split: how many of the first Fashion-MNIST items the images draw from.

    The bundled subset's labels are read (a few KB) to count its items of the chosen classes;
    the full set is not needed to count its own: Fashion-MNIST is balanced (6,000 train and
    1,000 test items per class), which :func:`_load_pools` checks when it loads it.
    """
    sizes = {}
    for split, (fm_split, _, bundled) in _SPLITS.items():
        needed = config.num_images(split) * config.max_items
        full = FASHION_MNIST_SIZES[fm_split]
        per_class = full // len(FASHION_MNIST_CLASSES)
        available = per_class * len(config.class_names)
        if needed > available:
            of_them = f" of them ({per_class} per class)" if config.classes else ""
            raise ConfigError(
                f"{config.num_images(split)} {split} images x max_items {config.max_items} need "
                f"{needed} distinct items {_classes_text(config)}; Fashion-MNIST's {fm_split} "
                f"split has {available}{of_them}. Lower the image count or max_items"
                + (", or choose more classes." if config.classes else ".")
            )
        if needed == 0 or not config.classes:
            sizes[split] = bundled if needed <= bundled else full
            continue
        labels_file = bundled_fashion_mnist_dir() / f"{FASHION_MNIST_FILES[fm_split][1]}.gz"
        in_bundled = len(
            _pool_items(read_idx(labels_file, expected_ndim=1, max_items=bundled), config)
        )
        sizes[split] = bundled if needed <= in_bundled else full
    return sizes


def _load_pools(
    config: DemoDataConfig, source: str | Path | None, pool_sizes: Mapping[str, int]
) -> tuple[dict[str, FashionMnistSplit], str]:
    """The first ``pool_sizes[split]`` items of every split with images, and the source name."""
    wanted = [split for split in _SPLITS if config.num_images(split) > 0]
    needs_full = [split for split in wanted if pool_sizes[split] > _SPLITS[split][2]]
    if source is None:
        source = "full" if needs_full else "bundled"
    how_to_get = (
        "install it (Debian/Ubuntu: apt-get install dataset-fashion-mnist), or run "
        "puzzlecam.data.fashion_mnist.download_fashion_mnist(DIR) and set "
        f"${FASHION_MNIST_ENV}=DIR, or pass the directory as source"
    )
    if source == "bundled":
        if needs_full:
            raise ConfigError(
                f"{' and '.join(needs_full)} needs more items {_classes_text(config)} than the "
                f"bundled Fashion-MNIST subset holds (its {BUNDLED_TRAIN_ITEMS} train and "
                f"{BUNDLED_TEST_ITEMS} test items; num_images x max_items are drawn per split), "
                "so the full set is required: " + how_to_get
            )
        bundled = {
            split: load_bundled_fashion_mnist(_SPLITS[split][0], max_items=pool_sizes[split])
            for split in wanted
        }
        _check_pools(config, bundled, bundled_fashion_mnist_dir())
        return bundled, "bundled"
    if source == "full":
        found = find_fashion_mnist()
        if found is None:
            why = f"{' and '.join(needs_full)} needs it" if needs_full else "it was asked for"
            raise DataError(
                DEFAULT_FASHION_MNIST_DIRS[0],
                f"the full Fashion-MNIST set is not here nor in ${FASHION_MNIST_ENV}, and {why}; "
                + how_to_get,
            )
        directory = found
    else:
        directory = Path(source)
    pools = {
        split: load_fashion_mnist(directory, _SPLITS[split][0], max_items=pool_sizes[split])
        for split in wanted
    }
    _check_pools(config, pools, directory)
    return pools, str(directory)


def _check_pools(
    config: DemoDataConfig, pools: Mapping[str, FashionMnistSplit], directory: Path
) -> None:
    """DataError unless every pool holds enough items of the chosen classes.

    Cannot fail on the real data (:func:`_pool_sizes` counted them); it catches a set in
    ``directory`` that is not the balanced Fashion-MNIST, before an image is left short.
    """
    for split, pool in pools.items():
        needed = config.num_images(split) * config.max_items
        found = len(_pool_items(pool.labels, config))
        if found < needed:
            raise DataError(
                directory,
                f"its first {len(pool)} {_SPLITS[split][0]} items hold {found} items "
                f"{_classes_text(config)}, but {split} needs {needed}; is this Fashion-MNIST?",
            )


def _is_temp(path: Path) -> bool:
    """A temporary file left by an interrupted atomic write."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


def _remove_temp_files(root: Path) -> None:
    for folder in (root, *(root / sub for sub in _LAYOUT_DIRS)):
        if folder.is_dir():
            for path in folder.iterdir():
                if _is_temp(path) and path.is_file():
                    path.unlink(missing_ok=True)


def _expected_files(root: Path, config: DemoDataConfig) -> Iterator[Path]:
    yield root / "classes.txt"
    yield root / _ITEMS_FILE
    for split in _SPLITS:
        yield root / "ImageSets" / "Segmentation" / f"{split}.txt"
        for image_id in demo_image_ids(split, config.num_images(split)):
            yield root / "JPEGImages" / f"{image_id}.jpg"
            yield root / "SegmentationClass" / f"{image_id}.png"
            yield root / "Annotations" / f"{image_id}.xml"


def _existing_build(root: Path, config: DemoDataConfig) -> dict[str, Any] | None:
    """The demo.json of a build of the same config in ``root``, None for an empty root.

    Raises DataError when ``root`` holds anything else: a build of another config or
    generator version, or files that are not a demo build.
    """
    meta_path = root / _META_FILE
    if meta_path.is_file():
        meta = read_json(meta_path)
        if (
            not isinstance(meta, dict)
            or meta.get("format") != _FORMAT
            or not isinstance(meta.get("config"), dict)
        ):
            raise DataError(meta_path, "is not a puzzlecam demo description; choose another root")
        # an option added after this build was made is missing from its demo.json; options are
        # only added with a default that reproduces the earlier files (else DEMO_FORMAT_VERSION
        # is bumped), so a missing option means its default
        stored = {**DemoDataConfig().to_dict(), **meta["config"]}
        wanted = config.to_dict()
        if meta.get("version") != DEMO_FORMAT_VERSION or stored != wanted:
            changes = differences(stored, wanted)
            if meta.get("version") != DEMO_FORMAT_VERSION:
                changes.append(f"generator version {meta.get('version')} -> {DEMO_FORMAT_VERSION}")
            raise DataError(
                root,
                "holds a demo build of a different configuration (" + "; ".join(changes) + "); "
                "builds are never mixed: delete this folder or choose another root",
            )
        return meta
    if root.exists():
        if not root.is_dir():
            raise DataError(root, "exists and is not a directory")
        if any(not _is_temp(path) for path in root.iterdir()):
            raise DataError(
                root,
                f"is not empty and holds no {_META_FILE}, so it is not a demo build; "
                "choose an empty or new folder",
            )
    return None


def _summary(root: Path, meta: Mapping[str, Any], reused: bool) -> DemoSummary:
    data = meta["summary"]
    return DemoSummary(
        root=root,
        num_images=dict(data["num_images"]),
        num_items=dict(data["num_items"]),
        items_per_class={k: dict(v) for k, v in data["items_per_class"].items()},
        images_per_class={k: dict(v) for k, v in data["images_per_class"].items()},
        pool_size=dict(data["pool_size"]),
        source=str(data["source"]),
        fingerprint=str(meta["fingerprint"]),
        reused=reused,
    )


def _render_all(
    config: DemoDataConfig, pools: Mapping[str, FashionMnistSplit]
) -> Iterator[tuple[str, str, _Rendered]]:
    """Every image of every split, in order: (split, image id, rendering)."""
    for split, (_, stream, _) in _SPLITS.items():
        count = config.num_images(split)
        if count == 0:
            continue
        # image i draws its items from slots [i * max_items, (i + 1) * max_items) of one
        # permutation of the pool: no item twice in a split, and image i depends only on
        # (seed, split, i), so any image can be rebuilt alone
        slots = config.max_items
        # with all ten classes, candidates is arange(pool size): the draws of older builds
        candidates = _pool_items(pools[split].labels, config)
        order = candidates[
            np.random.default_rng([config.seed, stream]).permutation(len(candidates))
        ]
        rngs = [np.random.default_rng([config.seed, stream, i]) for i in range(count)]
        chosen = [
            order[i * slots : i * slots + int(rng.integers(config.min_items, slots + 1))]
            for i, rng in enumerate(rngs)
        ]
        items = _prepare_items(
            pools[split],
            np.concatenate(chosen),
            config.intensity_threshold,
            config.fashion_mnist_labels,
        )
        extras: list[tuple[np.random.Generator, list[_Item]] | None] = [None] * count
        low, high = config.distractors
        if high:
            # distractors: their own generator per image, so the draws above never shift; each
            # borrows the shades of a random item among the split's candidates (repeats allowed)
            clutter_rngs = [
                np.random.default_rng([config.seed, stream, i, _DISTRACTOR_STREAM])
                for i in range(count)
            ]
            lent = [
                candidates[rng.integers(len(candidates), size=int(rng.integers(low, high + 1)))]
                for rng in clutter_rngs
            ]
            lenders = np.unique(np.concatenate(lent))
            prepared = (
                _prepare_items(
                    pools[split], lenders, config.intensity_threshold, config.fashion_mnist_labels
                )
                if lenders.size
                else {}
            )
            extras = [
                (rng, [prepared[int(i)] for i in sources])
                for rng, sources in zip(clutter_rngs, lent, strict=True)
            ]
        for image_id, rng, indices, clutter in zip(
            demo_image_ids(split, count), rngs, chosen, extras, strict=True
        ):
            yield split, image_id, _render(rng, [items[int(i)] for i in indices], config, clutter)


def _progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="demo images", unit="img")


def build_demo_dataset(
    root: str | Path,
    config: DemoDataConfig | None = None,
    source: str | Path | None = None,
    progress: bool = False,
) -> DemoSummary:
    """Build (or finish, or find) the demo benchmark under ``root``; see the module docstring.

    ``source``: None picks the bundled subset when it has enough items and the full set
    otherwise; ``"bundled"`` or ``"full"`` (found by
    :func:`~puzzlecam.data.fashion_mnist.find_fashion_mnist`) force one; a Path is a directory
    of Fashion-MNIST idx files. All give the same dataset. ``progress`` shows a tqdm bar.

    A root holding a complete build of the same config is returned at once (``reused=True``);
    an interrupted build is completed (missing files written, stray temp files removed); a
    root holding a build of another config, or other files, raises DataError. Nothing is
    printed.
    """
    root = Path(root)
    config = config if config is not None else DemoDataConfig()
    meta = _existing_build(root, config)
    if meta is not None and meta.get("complete"):
        if all(path.is_file() for path in _expected_files(root, config)):
            return _summary(root, meta, reused=True)

    pool_sizes = _pool_sizes(config)
    pools, source_name = _load_pools(config, source, pool_sizes)
    _remove_temp_files(root)
    identity = {"format": _FORMAT, "version": DEMO_FORMAT_VERSION, "config": config.to_dict()}
    write_json(root / _META_FILE, {**identity, "complete": False})
    _write_bytes(root / "classes.txt", ("\n".join(config.class_names) + "\n").encode())

    digest = hashlib.sha256()
    records: dict[str, dict[str, list[dict[str, Any]]]] = {split: {} for split in _SPLITS}
    clutter: dict[str, dict[str, list[dict[str, Any]]]] = {split: {} for split in _SPLITS}
    items_per_class = {split: dict.fromkeys(config.class_names, 0) for split in _SPLITS}
    images_per_class = {split: dict.fromkeys(config.class_names, 0) for split in _SPLITS}
    bar = _progress_bar(config.num_train + config.num_val) if progress else None
    # files are written by a few threads: fsync waits overlap with rendering
    with ThreadPoolExecutor(max_workers=_WRITER_THREADS) as writers:
        pending: deque[Future[None]] = deque()
        for split, image_id, rendered in _render_all(config, pools):
            xml = _annotation_xml(image_id, config.image_size, rendered.objects).encode()
            for part in (
                image_id.encode(),
                rendered.image.tobytes(),
                rendered.labels.tobytes(),
                xml,
            ):
                digest.update(part)
            pending.append(
                writers.submit(
                    _write_image_files, root, image_id, rendered, xml, config.jpeg_quality
                )
            )
            while len(pending) > 4 * _WRITER_THREADS or (pending and pending[0].done()):
                pending.popleft().result()  # re-raises a failed write
            records[split][image_id] = rendered.objects
            clutter[split][image_id] = rendered.distractors
            for name in {obj["class"] for obj in rendered.objects}:
                images_per_class[split][name] += 1
            for obj in rendered.objects:
                items_per_class[split][obj["class"]] += 1
            if bar is not None:
                bar.update()
        while pending:
            pending.popleft().result()
    if bar is not None:
        bar.close()

    for split in _SPLITS:
        text = "".join(f"{image_id}\n" for image_id in records[split])
        _write_bytes(root / "ImageSets" / "Segmentation" / f"{split}.txt", text.encode())
    # the distractors' section only when there are any: without them, the file of older builds
    _write_bytes(
        root / _ITEMS_FILE, _items_json(records, clutter if config.distractors[1] else None)
    )
    summary = {
        "num_images": {split: config.num_images(split) for split in _SPLITS},
        "num_items": {split: sum(items_per_class[split].values()) for split in _SPLITS},
        "items_per_class": items_per_class,
        "images_per_class": images_per_class,
        "pool_size": pool_sizes,
        "source": source_name,
    }
    meta = {**identity, "complete": True, "fingerprint": digest.hexdigest(), "summary": summary}
    write_json(root / _META_FILE, meta)
    return _summary(root, meta, reused=False)


def _write_image_files(
    root: Path, image_id: str, rendered: _Rendered, xml: bytes, quality: int
) -> None:
    """The image's JPEG, label PNG and XML, each written only if missing (resume)."""
    jpeg = root / "JPEGImages" / f"{image_id}.jpg"
    if not jpeg.is_file():
        _write_bytes(jpeg, _jpeg_bytes(rendered.image, quality))
    label_path = root / "SegmentationClass" / f"{image_id}.png"
    if not label_path.is_file():
        save_label_png(label_path, rendered.labels)
    xml_path = root / "Annotations" / f"{image_id}.xml"
    if not xml_path.is_file():
        _write_bytes(xml_path, xml)


def _items_json(
    records: Mapping[str, Mapping[str, Any]],
    distractors: Mapping[str, Mapping[str, Any]] | None = None,
) -> bytes:
    """demo_items.json: split -> image id -> objects (class, item index, bbox, visible share);
    with ``distractors``, also "distractors" -> split -> image id -> distractors (the item
    lending its intensities, bbox, visible share).

    One image per line, so the file stays small and readable.
    """

    def block(key: str, images: Mapping[str, Any], pad: str) -> str:
        body = ",\n".join(f"{pad}  {json.dumps(i)}: {json.dumps(v)}" for i, v in images.items())
        return f'{pad}"{key}": {{\n' + (body + "\n" if body else "") + f"{pad}}}"

    blocks = [block(split, images, "  ") for split, images in records.items()]
    if distractors is not None:
        inner = ",\n".join(block(split, images, "    ") for split, images in distractors.items())
        blocks.append('  "distractors": {\n' + inner + "\n  }")
    return ("{\n" + ",\n".join(blocks) + "\n}\n").encode()
