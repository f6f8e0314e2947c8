"""Label maps from class scores: affinity labels (confident fg / bg / ignore) and pseudo
labels, each optionally refined by a dense CRF as the reference does."""

from __future__ import annotations

import numpy as np

from puzzlecam.cams.scores import threshold_argmax
from puzzlecam.constants import IGNORE_INDEX
from puzzlecam.crf import crf_refine_labels

__all__ = ["confident_labels", "pseudo_labels"]


def _refined(image: np.ndarray, index: np.ndarray, channels: int, iterations: int) -> np.ndarray:
    if iterations <= 0:
        return index
    return crf_refine_labels(image, index, channels + 1, iterations)


def confident_labels(
    image: np.ndarray,
    scores: np.ndarray,
    keys: np.ndarray,
    fg_threshold: float = 0.40,
    bg_threshold: float = 0.10,
    crf_iterations: int = 10,
) -> np.ndarray:
    """Affinity labels: class where it is confidently foreground, 0 where confidently
    background, 255 elsewhere.

    image (H, W, 3) uint8; scores (K, H, W) CAMs in [0, 1] of the tagged classes, keys
    (K,) their label values. The fg map (background score ``fg_threshold``) and the bg
    map (background score ``bg_threshold``) are each refined by CRF first; a pixel is a
    class where the refined fg map says so, background where both refined maps say
    background, ignored otherwise. Returns (H, W) uint8 in {0} | keys | {255}.
    """
    lookup = np.concatenate([[0], np.asarray(keys, dtype=np.int64)])
    channels = scores.shape[0]
    fg = lookup[_refined(image, threshold_argmax(scores, fg_threshold), channels, crf_iterations)]
    bg = lookup[_refined(image, threshold_argmax(scores, bg_threshold), channels, crf_iterations)]
    labels = np.where(fg == 0, IGNORE_INDEX, fg)
    labels[(fg == 0) & (bg == 0)] = 0
    return labels.astype(np.uint8)


def pseudo_labels(
    image: np.ndarray,
    scores: np.ndarray,
    keys: np.ndarray,
    threshold: float = 0.35,
    crf_iterations: int = 1,
) -> np.ndarray:
    """Pseudo labels: argmax with a background threshold, then CRF. (H, W) uint8 labels."""
    lookup = np.concatenate([[0], np.asarray(keys, dtype=np.int64)])
    index = _refined(image, threshold_argmax(scores, threshold), scores.shape[0], crf_iterations)
    return lookup[index].astype(np.uint8)
