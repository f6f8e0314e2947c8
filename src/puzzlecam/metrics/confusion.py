"""Confusion-matrix accumulator and the segmentation scores reduced from it.

Statistics first, reduction second: every update adds one image's ``(L, L)`` count
matrix (rows = ground truth, columns = prediction, ``L = C + 1`` labels with 0 the
background) built with a single ``np.bincount``; ``compute`` reduces the matrix to
IoU, precision, recall and the reference's FP / FN rates.

Rule for classes that appear in neither ground truth nor prediction (``TP + FP + FN = 0``):
their IoU, FP and FN rates are undefined (``nan``) and they are **excluded** from mIoU
and from the mean FP / FN rates (a nan-mean over classes with a non-empty union). A
class that is predicted but absent from the ground truth has ``IoU = 0`` and counts.
The reference adds ``1e-10`` to every denominator instead, so an absent class scores 0
and drags its mean down; on a full VOC split every class is present and both agree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from puzzlecam.constants import BACKGROUND, IGNORE_INDEX

__all__ = [
    "ConfusionMatrix",
    "SegmentationScores",
    "confusion_counts",
    "check_label_values",
    "check_gt_counts",
]

_NUM_VALUES = 256  # label maps are uint8: value 0..255 (IGNORE_INDEX included)


def _nanmean(values: np.ndarray) -> float:
    """Mean over the finite entries; nan (no warning) when there are none."""
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else math.nan


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Element-wise ``numerator / denominator`` as float64, nan where the denominator is 0."""
    out = np.full(numerator.shape, np.nan, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _json_float(value: float, digits: int) -> float | None:
    """A float rounded for JSON, ``None`` for nan (JSON has no NaN)."""
    return None if math.isnan(value) else round(float(value), digits)


def check_label_values(values: np.ndarray, num_labels: int, what: str) -> None:
    """Raise ValueError unless every entry of the integer array ``values`` lies in 0..num_labels-1.

    ``what`` names the array in the message (e.g. "prediction").
    """
    if values.size == 0:
        return
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{what} must hold integer labels, got dtype {values.dtype}")
    if values.dtype == np.uint8 and num_labels >= _NUM_VALUES:
        return  # every uint8 value is in range; skip the scans
    high = int(values.max())
    low = 0 if np.issubdtype(values.dtype, np.unsignedinteger) else int(values.min())
    if low < 0 or high >= num_labels:
        bad = np.unique(values[(values < 0) | (values >= num_labels)])
        shown = ", ".join(str(v) for v in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ValueError(
            f"{what} holds label values outside 0..{num_labels - 1}: {shown} "
            f"(num_labels={num_labels}: background 0 plus {num_labels - 1} classes)"
        )


def check_gt_counts(counts: np.ndarray, num_labels: int) -> None:
    """Raise ValueError when a gt value outside {0..L-1, 255} was counted.

    counts: (..., 256, X) pixel counts indexed by gt value on the second-to-last axis.
    """
    per_value = counts.reshape(-1, _NUM_VALUES, counts.shape[-1]).sum(axis=(0, 2))  # (256,)
    per_value[IGNORE_INDEX] = 0
    per_value[:num_labels] = 0
    if per_value.any():
        bad = np.flatnonzero(per_value)
        shown = ", ".join(str(v) for v in bad[:10]) + (" ..." if bad.size > 10 else "")
        raise ValueError(
            f"ground truth holds values outside 0..{num_labels - 1} and {IGNORE_INDEX} "
            f"(ignore): {shown}"
        )


def confusion_counts(pred: np.ndarray, gt: np.ndarray, num_labels: int) -> np.ndarray:
    """One image's confusion matrix, from a single ``np.bincount``.

    pred: (H, W) integer labels in 0..num_labels-1; gt: (H, W) integer labels in
    0..num_labels-1 or 255 (ignored: such pixels are not counted, whatever is predicted
    there). Returns ``(L, L)`` int64 counts, rows = gt, columns = prediction.
    Raises ValueError for mismatched shapes or out-of-range values. Inputs are not modified.
    """
    pred, gt = np.asarray(pred), np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    if num_labels < 1 or num_labels > IGNORE_INDEX:
        raise ValueError(f"num_labels must lie in 1..{IGNORE_INDEX}, got {num_labels}")
    check_label_values(pred, num_labels, "prediction")
    check_label_values(gt, _NUM_VALUES, "ground truth")
    # Index = gt * L + pred over all 256 possible gt values: the ignore row and any
    # invalid gt value land in their own rows, so no boolean mask (copy) is needed.
    # 256 * L <= 65280 fits uint16, which is ~3x faster to build than an intp index.
    index = gt.astype(np.uint16) * np.uint16(num_labels)  # (H, W)
    index += pred.astype(np.uint16, copy=False)
    counts = np.bincount(index.ravel(), minlength=_NUM_VALUES * num_labels)
    counts = counts.reshape(_NUM_VALUES, num_labels)  # (256, L)
    check_gt_counts(counts, num_labels)
    return counts[:num_labels].astype(np.int64, copy=False)


@dataclass(frozen=True, eq=False)
class SegmentationScores:
    """Scores reduced from one ``(L, L)`` confusion matrix (rows gt, columns prediction).

    All values are fractions in [0, 1] (``to_dict`` turns IoU/mIoU into percent); per-class
    arrays have shape ``(L,)`` with index 0 the background. With, per class,
    ``TP`` = diagonal, ``FP`` = column sum - TP, ``FN`` = row sum - TP and
    ``U = TP + FP + FN``:

    - ``iou = TP / U``; ``fp = FP / U`` and ``fn = FN / U`` (the reference's "FP/ALL",
      "FN/ALL": ``iou + fp + fn = 1``), all nan where ``U = 0``;
    - ``precision = TP / (TP + FP)``, ``recall = TP / (TP + FN)``, nan where undefined;
    - ``miou``: nan-mean of ``iou`` over all L labels (background included, as the
      reference), i.e. over the classes with ``U > 0``; ``miou_foreground`` the same
      over labels 1..C; ``mean_fp`` / ``mean_fn``: nan-mean over labels 1..C;
    - ``pixel_accuracy = trace / total`` over the non-ignored pixels.
    """

    matrix: np.ndarray  # (L, L) int64, rows gt, columns prediction
    iou: np.ndarray  # (L,)
    precision: np.ndarray  # (L,)
    recall: np.ndarray  # (L,)
    fp: np.ndarray  # (L,) FP / (TP + FP + FN)
    fn: np.ndarray  # (L,) FN / (TP + FP + FN)
    miou: float
    miou_foreground: float
    mean_fp: float
    mean_fn: float
    pixel_accuracy: float
    num_pixels: int

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> SegmentationScores:
        """Reduce an ``(L, L)`` count matrix (rows gt, columns prediction). Not modified."""
        matrix = np.array(matrix, dtype=np.int64)  # own copy: the result must not alias
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"confusion matrix must be (L, L), got shape {matrix.shape}")
        matrix.setflags(write=False)
        tp = np.diag(matrix).astype(np.float64)  # (L,)
        gt_total = matrix.sum(axis=1).astype(np.float64)  # (L,) TP + FN
        pred_total = matrix.sum(axis=0).astype(np.float64)  # (L,) TP + FP
        union = gt_total + pred_total - tp  # (L,) TP + FP + FN
        iou = _ratio(tp, union)
        fp = _ratio(pred_total - tp, union)
        fn = _ratio(gt_total - tp, union)
        total = int(matrix.sum())
        return cls(
            matrix=matrix,
            iou=iou,
            precision=_ratio(tp, pred_total),
            recall=_ratio(tp, gt_total),
            fp=fp,
            fn=fn,
            miou=_nanmean(iou),
            miou_foreground=_nanmean(iou[1:]),
            mean_fp=_nanmean(fp[1:]),
            mean_fn=_nanmean(fn[1:]),
            pixel_accuracy=float(tp.sum() / total) if total else math.nan,
            num_pixels=total,
        )

    @property
    def num_labels(self) -> int:
        """L = C + 1 (background included)."""
        return int(self.matrix.shape[0])

    def label_names(self, class_names: Sequence[str]) -> list[str]:
        """``["background", *class_names]``; ``class_names`` are the C foreground classes."""
        if len(class_names) != self.num_labels - 1:
            raise ValueError(
                f"expected {self.num_labels - 1} foreground class names (background is "
                f"added), got {len(class_names)}"
            )
        return [BACKGROUND, *class_names]

    def to_dict(self, class_names: Sequence[str]) -> dict[str, Any]:
        """JSON-ready summary; ``class_names`` = the C foreground classes, in label order.

        IoU, mIoU and mIoU-foreground are in **percent**; precision, recall, FP/FN rates
        and pixel accuracy stay fractions in [0, 1] (as the reference prints FP/FN).
        Undefined values (nan) become ``None``.
        """
        names = self.label_names(class_names)
        gt_pixels = self.matrix.sum(axis=1)
        pred_pixels = self.matrix.sum(axis=0)
        per_class = {
            name: {
                "iou": _json_float(100.0 * self.iou[i], 4),
                "precision": _json_float(self.precision[i], 6),
                "recall": _json_float(self.recall[i], 6),
                "fp": _json_float(self.fp[i], 6),
                "fn": _json_float(self.fn[i], 6),
                "gt_pixels": int(gt_pixels[i]),
                "pred_pixels": int(pred_pixels[i]),
            }
            for i, name in enumerate(names)
        }
        return {
            "miou": _json_float(100.0 * self.miou, 4),
            "miou_foreground": _json_float(100.0 * self.miou_foreground, 4),
            "fp": _json_float(self.mean_fp, 6),
            "fn": _json_float(self.mean_fn, 6),
            "pixel_accuracy": _json_float(self.pixel_accuracy, 6),
            "num_pixels": self.num_pixels,
            "per_class": per_class,
        }


class ConfusionMatrix:
    """Accumulates ``(L, L)`` counts over images: ``reset() / update(pred, gt) / compute()``.

    ``num_labels`` = L = C + 1 (background 0 plus C classes). Ground-truth pixels equal
    to 255 are ignored; any other value outside 0..L-1 in gt or prediction raises ValueError.
    """

    def __init__(self, num_labels: int) -> None:
        if num_labels < 1 or num_labels > IGNORE_INDEX:
            raise ValueError(f"num_labels must lie in 1..{IGNORE_INDEX}, got {num_labels}")
        self.num_labels = num_labels
        self._matrix = np.zeros((num_labels, num_labels), dtype=np.int64)

    def reset(self) -> None:
        """Forget every update."""
        self._matrix[:] = 0

    def update(self, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add one image: pred (H, W) labels 0..L-1, gt (H, W) labels 0..L-1 or 255."""
        self._matrix += confusion_counts(pred, gt, self.num_labels)

    def add(self, counts: np.ndarray) -> None:
        """Add a precomputed ``(L, L)`` count matrix (e.g. from ``confusion_counts`` in a worker)."""
        if counts.shape != self._matrix.shape:
            raise ValueError(f"counts must have shape {self._matrix.shape}, got {counts.shape}")
        self._matrix += counts

    @property
    def matrix(self) -> np.ndarray:
        """A copy of the accumulated ``(L, L)`` int64 counts (rows gt, columns prediction)."""
        return self._matrix.copy()

    def compute(self) -> SegmentationScores:
        """Scores of everything added since the last reset."""
        return SegmentationScores.from_matrix(self._matrix)
