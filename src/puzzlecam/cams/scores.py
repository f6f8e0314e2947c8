"""Score files: per-image class score maps stored as ``.npz`` (no pickle).

A score file holds
- ``keys``: int64 ``(K,)``, the label value (1..C) of each channel, i.e. the image's tags;
- ``scores``: float16 ``(K, H, W)`` in [0, 1] at the image's own size;
- optionally ``scores_stride4``: float16 ``(K, ceil(H/4), ceil(W/4))`` (CAMs, for the random walk);
- optionally ``class_probs``: float32 ``(C,)``, the classifier's probability of every class.

CAMs, random-walk scores and anything else "CAM-like" share this format, so the
evaluator, the threshold sweep and the pseudo-label stage read them all the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from puzzlecam.errors import DataError
from puzzlecam.io import load_npz, save_npz

__all__ = ["ScoreMaps", "save_scores", "load_scores", "threshold_argmax"]


@dataclass(frozen=True)
class ScoreMaps:
    keys: np.ndarray  # (K,) int64 label values 1..C
    scores: np.ndarray  # (K, H, W) float
    scores_stride4: np.ndarray | None = None  # (K, h, w) float
    class_probs: np.ndarray | None = None  # (C,) float


def save_scores(path: str | Path, maps: ScoreMaps) -> None:
    """Write a score file atomically, scores as float16."""
    arrays = {
        "keys": np.asarray(maps.keys, dtype=np.int64),
        "scores": np.asarray(maps.scores, dtype=np.float16),
    }
    if maps.scores_stride4 is not None:
        arrays["scores_stride4"] = np.asarray(maps.scores_stride4, dtype=np.float16)
    if maps.class_probs is not None:
        arrays["class_probs"] = np.asarray(maps.class_probs, dtype=np.float32)
    save_npz(path, **arrays)


def load_scores(path: str | Path) -> ScoreMaps:
    """Read a score file, checking that its arrays agree with each other."""
    data = load_npz(path)
    for name in ("keys", "scores"):
        if name not in data:
            raise DataError(path, f"score file has no '{name}' array (found {sorted(data)})")
    keys, scores = data["keys"].astype(np.int64), data["scores"]
    if scores.ndim != 3 or scores.shape[0] != keys.shape[0]:
        raise DataError(
            path, f"'scores' has shape {scores.shape}, expected ({keys.shape[0]}, H, W)"
        )
    return ScoreMaps(
        keys=keys,
        scores=scores,
        scores_stride4=data.get("scores_stride4"),
        class_probs=data.get("class_probs"),
    )


def threshold_argmax(scores: np.ndarray, threshold: float) -> np.ndarray:
    """Index map over ``[background = threshold, scores...]``: (K, H, W) -> (H, W) int64
    in 0..K, 0 where no channel beats the threshold (ties go to background), else 1 + the
    best channel. ``np.concatenate([[0], keys])[index]`` gives the label map.

    The threshold is compared in the scores' dtype (NumPy's NEP 50), as the threshold
    sweep of ``puzzlecam.metrics.sweep`` does.
    """
    height, width = scores.shape[-2:]
    if scores.shape[0] == 0:
        return np.zeros((height, width), dtype=np.int64)
    best = scores.argmax(axis=0)
    best_score = np.take_along_axis(scores, best[None], axis=0)[0]
    return np.where(best_score > threshold, best + 1, 0).astype(np.int64)
