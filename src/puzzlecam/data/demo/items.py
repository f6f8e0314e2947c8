"""Demo items: clean masks and tight crops of the 28x28 Fashion-MNIST images, and the
distractors made from them (things with an item's look but no class's shape)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from puzzlecam.data.demo.textures import _grid, _value_noise
from puzzlecam.data.fashion_mnist import FashionMnistSplit

_ITEM_MARGIN = 2  # zero pixels around an item crop, room for its upscaled soft edge
_MAX_HOLE_FRACTION = 0.02  # holes up to 2% of the 28x28 frame (16 px) are filled


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
