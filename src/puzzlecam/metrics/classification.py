"""Image-level classification quality of the CAM classifier: mAP and F1.

CAM quality rides on the classifier; these two numbers say whether it learned the tags
at all (a collapsed classifier still gives CAMs, just useless ones).
"""

from __future__ import annotations

import numpy as np

__all__ = ["average_precision", "multilabel_scores"]


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """AP of one class: mean over positives of the precision at their rank.

    scores, labels: (N,), labels in {0, 1}; ties are ranked in input order. nan without
    positives.
    """
    positives = int(labels.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = labels[order].astype(np.float64)
    precision_at = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at * hits).sum() / positives)


def multilabel_scores(
    probs: np.ndarray, targets: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """mAP (percent, over classes with a positive) and micro F1 (percent) at ``threshold``.

    probs, targets: (N, C); targets multi-hot.
    """
    aps = [average_precision(probs[:, c], targets[:, c]) for c in range(targets.shape[1])]
    predicted = probs >= threshold
    true_positive = float((predicted & (targets > 0)).sum())
    denominator = float(predicted.sum() + (targets > 0).sum())
    f1 = 2 * true_positive / denominator if denominator else float("nan")
    return {"map": round(100 * float(np.nanmean(aps)), 2), "f1": round(100 * f1, 2)}
