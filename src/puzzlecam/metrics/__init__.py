"""Evaluation: confusion-matrix scores, the background-threshold sweep, folder evaluation.

``ConfusionMatrix`` accumulates one bincount per image and reduces to IoU, precision,
recall and the reference's FP/FN rates; ``ThresholdSweep`` scores CAM-like score maps at
every background threshold in one pass; ``evaluate_directory`` scores a folder of score
files or label PNGs against VOC-style masks.
"""

from puzzlecam.metrics.confusion import ConfusionMatrix, SegmentationScores, confusion_counts
from puzzlecam.metrics.evaluate import (
    EvaluationResult,
    evaluate_directory,
    find_predictions,
    format_table,
    write_result,
)
from puzzlecam.metrics.sweep import DEFAULT_THRESHOLDS, ThresholdSweep, sweep_confusion

__all__ = [
    "ConfusionMatrix",
    "SegmentationScores",
    "confusion_counts",
    "DEFAULT_THRESHOLDS",
    "ThresholdSweep",
    "sweep_confusion",
    "EvaluationResult",
    "evaluate_directory",
    "find_predictions",
    "format_table",
    "write_result",
]
