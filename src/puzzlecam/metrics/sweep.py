"""Background-threshold sweep over CAM-like score maps, all thresholds in one pass.

``threshold_argmax(scores, t)`` (``puzzlecam.cams.scores``) gives a pixel its best channel's
label when that channel's score ``s`` exceeds ``t`` and background (0) otherwise (ties
``s == t`` go to background). For thresholds ``t_0 < t_1 < ... < t_{T-1}`` a pixel is
therefore foreground exactly at the thresholds below ``s``: at ``t_j`` for ``j < b`` with
``b = #{j : t_j < s}`` its *bucket*. So per image we compute each pixel's best channel
and bucket once, count pixels by (bucket, gt, channel) with ONE ``np.bincount``, and
recover every threshold's confusion matrix with cumulative sums over buckets:

    M_j[g, l] = sum_{b > j} N[b, g, l]        (foreground: best label l predicted)
    M_j[g, 0] += sum_{b <= j} sum_l N[b, g, l]  (background predicted)

The result equals looping ``threshold_argmax`` + ``confusion_counts`` per threshold
exactly, including how thresholds round: like ``threshold_argmax`` (NumPy's NEP 50
rules), a threshold is compared in the score array's own dtype, so float16 scores
meet float16-rounded thresholds.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from puzzlecam.constants import IGNORE_INDEX
from puzzlecam.metrics.confusion import SegmentationScores, check_gt_counts, check_label_values

__all__ = [
    "DEFAULT_THRESHOLDS",
    "check_thresholds",
    "bucket_counts",
    "label_buckets",
    "sweep_matrices",
    "sweep_confusion",
    "best_threshold_index",
    "ThresholdSweep",
]

DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(1, 20))
"""0.05, 0.10, ..., 0.95: the background thresholds swept by default (19 values)."""


_NUM_VALUES = 256  # gt maps are uint8: values 0..255 (IGNORE_INDEX included)
_FLOAT16_INF_BITS = 0x7C00  # +inf; 0x0000..0x7C00 are the non-negative, non-NaN float16s


def check_thresholds(thresholds: Sequence[float]) -> tuple[float, ...]:
    """The thresholds as a tuple of floats; ValueError unless non-empty, finite, strictly increasing."""
    values = tuple(float(t) for t in thresholds)
    if not values:
        raise ValueError("give at least one background threshold")
    if not all(math.isfinite(t) for t in values):
        raise ValueError(f"background thresholds must be finite numbers, got {values}")
    if any(later <= earlier for earlier, later in zip(values, values[1:], strict=False)):
        raise ValueError(f"background thresholds must be strictly increasing, got {values}")
    return values


def _best_channel(scores: np.ndarray, work_dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Best channel per pixel, first one on ties (as ``argmax``), and its score.

    scores: (K, H, W) float, or uint16 float16 bit patterns of non-negative finite
    values (same order), K >= 1, no NaN checked here. Returns ``(index, best)``:
    (H, W) uint8/int64 channel index and (H, W) ``work_dtype`` score. A channel loop with
    branch-free updates: ``argmax`` over a strided axis 0 is several times slower.
    """
    index_dtype = np.uint8 if scores.shape[0] <= 256 else np.int64
    best = scores[0].astype(work_dtype)  # (H, W), a copy
    index = np.zeros(best.shape, dtype=index_dtype)  # (H, W)
    better = np.empty(best.shape, dtype=bool)
    for k in range(1, scores.shape[0]):
        channel = scores[k].astype(work_dtype, copy=False)
        np.greater(channel, best, out=better)  # strict: ties keep the earlier channel
        np.maximum(best, channel, out=best)
        # k exceeds every earlier index, so max(index, k * better) sets k where better.
        np.maximum(index, better.astype(index_dtype) * index_dtype(k), out=index)
    return index, best


@functools.lru_cache(maxsize=16)
def _float16_bucket_table(thresholds: tuple[float, ...], dtype: str) -> np.ndarray:
    """(65536,) ``dtype``: for each float16 bit pattern v, ``#{j : t_j < v}``.

    Thresholds are rounded to float16 first, as ``threshold_argmax`` compares them
    (entries for negative values and NaN are never read). Read-only, shared by threads.
    """
    values = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32)
    cut = np.asarray(thresholds, dtype=np.float64).astype(np.float16).astype(np.float32)
    table = np.searchsorted(cut, values, side="left").astype(dtype)
    table.setflags(write=False)
    return table


def _channel_and_bucket(
    scores: np.ndarray, thresholds: tuple[float, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Each pixel's best channel and bucket ``#{j : t_j < best score}``, comparing where
    ``threshold_argmax`` does. scores: (K, H, W) float16/32/64, K >= 1. Returns (H, W)
    channel indices (uint8, or int64 past 256 channels) and (H, W) uint8/uint16 buckets."""
    bucket_dtype = np.uint8 if len(thresholds) < 256 else np.uint16
    if scores.dtype == np.float16 and int(scores.view(np.uint16).max()) <= _FLOAT16_INF_BITS:
        # Fast path, float16 in [0, inf]: bit patterns sort like the values, so the best
        # channel is found on uint16 and its bucket read from a 65536-entry table.
        channel, best_bits = _best_channel(scores.view(np.uint16), np.uint16)
        table = _float16_bucket_table(thresholds, np.dtype(bucket_dtype).str)
        return channel, table[best_bits]
    # Compare in the scores' dtype (thresholds rounded to it), done in float32 for
    # float16 (exact: every float16 is a float32, and fast).
    work_dtype = np.float64 if scores.dtype == np.float64 else np.float32
    cut = np.asarray(thresholds, dtype=np.float64).astype(scores.dtype).astype(work_dtype)
    channel, best = _best_channel(scores, work_dtype)  # (H, W), (H, W)
    if np.isnan(best).any():  # np.maximum propagates NaN from any channel
        raise ValueError("scores contain NaN; a score map must be finite")
    bucket = np.zeros(best.shape, dtype=bucket_dtype)  # (H, W)
    for value in cut:
        bucket += best > value
    return channel, bucket


def label_buckets(
    scores: np.ndarray, keys: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> tuple[np.ndarray, np.ndarray]:
    """A score file as two maps that give its labels at every threshold of ``thresholds``.

    scores: (K, H, W) float16/32/64; keys: (K,) label values 1..254. Returns ``(label,
    bucket)``, (H, W) uint8 each (bucket uint16 past 255 thresholds): the best channel's
    label value (0 when K = 0) and how many thresholds its score exceeds. The label map
    at ``t_j`` is ``where(bucket > j, label, 0)``, which equals ``threshold_argmax``'s
    (the same rounding and ties), so a page can recolour labels or score a set of images
    at any threshold of the grid without the scores.
    """
    thresholds = check_thresholds(thresholds)
    scores, keys = np.asarray(scores), np.asarray(keys)
    if scores.ndim != 3 or keys.shape != (scores.shape[0],):
        raise ValueError(
            f"scores must be (K, H, W) with keys (K,), got {scores.shape} and {keys.shape}"
        )
    if scores.dtype not in (np.float16, np.float32, np.float64):
        raise ValueError(f"scores must be float16, float32 or float64, got {scores.dtype}")
    check_label_values(keys, IGNORE_INDEX, "score keys")
    if scores.shape[0] == 0:
        zeros = np.zeros(scores.shape[1:], dtype=np.uint8)
        return zeros, zeros.copy()
    channel, bucket = _channel_and_bucket(scores, thresholds)
    return keys.astype(np.uint8)[channel], bucket


def bucket_counts(
    scores: np.ndarray,
    keys: np.ndarray,
    gt: np.ndarray,
    num_labels: int,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> np.ndarray:
    """One image's pixel counts by (bucket, gt, best label): the sweep's sufficient statistics.

    scores: (K, H, W) float16/32/64 (K may be 0); keys: (K,) label values in 0..L-1 (the
    channels' labels, normally 1..C); gt: (H, W) labels 0..L-1 or 255 (ignored).
    Returns ``(T + 1, L, L)`` int64 ``N[b, g, l]``: pixels of gt ``g`` whose best channel
    has label ``l`` and exceeds exactly the first ``b`` thresholds (with K = 0 every
    pixel is in bucket 0, label 0). Sum images' counts, then ``sweep_matrices``.
    Raises ValueError on mismatched shapes, out-of-range keys or gt values, NaN scores.
    Inputs are not modified.
    """
    thresholds = check_thresholds(thresholds)
    scores, keys, gt = np.asarray(scores), np.asarray(keys), np.asarray(gt)
    num_thresholds = len(thresholds)
    if scores.ndim != 3 or keys.shape != (scores.shape[0],):
        raise ValueError(
            f"scores must be (K, H, W) with keys (K,), got {scores.shape} and {keys.shape}"
        )
    if gt.shape != scores.shape[1:]:
        raise ValueError(f"scores size {scores.shape[1:]} differs from ground truth {gt.shape}")
    if scores.dtype not in (np.float16, np.float32, np.float64):
        raise ValueError(f"scores must be float16, float32 or float64, got {scores.dtype}")
    if not 1 <= num_labels <= IGNORE_INDEX:
        raise ValueError(f"num_labels must lie in 1..{IGNORE_INDEX}, got {num_labels}")
    check_label_values(keys, num_labels, "score keys")
    check_label_values(gt, 256, "ground truth")

    # Index = (bucket * 256 + gt) * K + channel over all 256 gt values (255 and invalid
    # values get rows of their own), in the narrowest unsigned dtype that holds it.
    num_channels = max(scores.shape[0], 1)
    size = (num_thresholds + 1) * _NUM_VALUES * num_channels
    index_dtype = np.uint16 if size <= 1 << 16 else np.uint32 if size <= 1 << 32 else np.int64
    if scores.shape[0] == 0:  # no tags: background everywhere, bucket 0
        index = gt.astype(index_dtype)  # (H, W)
    else:
        channel, bucket = _channel_and_bucket(scores, thresholds)
        index = bucket.astype(index_dtype)  # (H, W)
        index *= index_dtype(_NUM_VALUES * num_channels)
        np.add(index, gt.astype(index_dtype) * index_dtype(num_channels), out=index)
        np.add(index, channel, out=index, casting="unsafe")

    flat = np.bincount(index.ravel(), minlength=size)
    per_channel = flat.reshape(num_thresholds + 1, _NUM_VALUES, num_channels)  # (T+1, 256, K)
    check_gt_counts(per_channel, num_labels)
    counts = np.zeros((num_thresholds + 1, num_labels, num_labels), dtype=np.int64)
    if scores.shape[0] == 0:
        counts[:, :, 0] = per_channel[:, :num_labels, 0]
    else:
        for k, key in enumerate(keys.tolist()):  # channel -> its label (keys may repeat)
            counts[:, :, key] += per_channel[:, :num_labels, k]
    return counts


def sweep_matrices(counts: np.ndarray) -> np.ndarray:
    """Confusion matrices of every threshold from summed ``bucket_counts``.

    counts: (T + 1, L, L) ``N[b, g, l]``; returns (T, L, L) int64, rows gt, columns
    prediction, entry j the matrix at threshold ``t_j``. Not modified.
    """
    counts = np.asarray(counts, dtype=np.int64)
    if counts.ndim != 3 or counts.shape[1] != counts.shape[2] or counts.shape[0] < 2:
        raise ValueError(f"counts must be (T + 1, L, L) with T >= 1, got {counts.shape}")
    num_thresholds = counts.shape[0] - 1
    # Foreground at t_j: buckets b > j, i.e. a suffix sum over buckets.
    from_bucket = np.cumsum(counts[::-1], axis=0)[::-1]  # (T+1, L, L): sum_{b' >= b}
    matrices = from_bucket[1:].copy()  # (T, L, L)
    # Background at t_j: buckets b <= j, whatever their best label.
    to_bucket = np.cumsum(counts.sum(axis=2), axis=0)  # (T+1, L): sum_{b' <= b}, over labels
    matrices[:, :, 0] += to_bucket[:num_thresholds]
    return matrices


def sweep_confusion(
    scores: np.ndarray,
    keys: np.ndarray,
    gt: np.ndarray,
    num_labels: int,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
) -> np.ndarray:
    """(T, L, L) confusion matrices of one image at every threshold (see ``bucket_counts``)."""
    return sweep_matrices(bucket_counts(scores, keys, gt, num_labels, thresholds))


def best_threshold_index(results: Sequence[SegmentationScores]) -> int:
    """Index of the highest mIoU (the lowest threshold on ties); ValueError if all are nan."""
    mious = np.array([r.miou for r in results], dtype=np.float64)
    if mious.size == 0 or np.isnan(mious).all():
        raise ValueError("no threshold has a defined mIoU (no scored pixels)")
    return int(np.nanargmax(mious))


class ThresholdSweep:
    """Accumulates the sweep over images: ``reset() / update(scores, keys, gt) / compute()``.

    ``num_labels`` = L = C + 1; ``thresholds`` strictly increasing (default 0.05..0.95).
    """

    def __init__(self, num_labels: int, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> None:
        if not 1 <= num_labels <= IGNORE_INDEX:
            raise ValueError(f"num_labels must lie in 1..{IGNORE_INDEX}, got {num_labels}")
        self.num_labels = num_labels
        self.thresholds = check_thresholds(thresholds)
        shape = (len(self.thresholds) + 1, num_labels, num_labels)
        self._counts = np.zeros(shape, dtype=np.int64)

    def reset(self) -> None:
        """Forget every update."""
        self._counts[:] = 0

    def update(self, scores: np.ndarray, keys: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: scores (K, H, W), keys (K,), gt (H, W)."""
        self._counts += bucket_counts(scores, keys, gt, self.num_labels, self.thresholds)

    def add(self, counts: np.ndarray) -> None:
        """Add precomputed ``bucket_counts`` (T + 1, L, L), e.g. from a worker thread."""
        if counts.shape != self._counts.shape:
            raise ValueError(f"counts must have shape {self._counts.shape}, got {counts.shape}")
        self._counts += counts

    def matrices(self) -> np.ndarray:
        """(T, L, L) int64 confusion matrices, one per threshold."""
        return sweep_matrices(self._counts)

    def compute(self) -> tuple[SegmentationScores, ...]:
        """Scores at each threshold, in threshold order."""
        return tuple(SegmentationScores.from_matrix(m) for m in self.matrices())
