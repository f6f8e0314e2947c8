"""Evaluate a folder of predictions against VOC-style ground-truth masks.

Predictions are either score files (``{id}.npz``, see ``puzzlecam.cams.scores``: CAMs,
random-walk scores), evaluated over a background-threshold sweep and reported at the
threshold with the best mIoU, or label PNGs (``{id}.png``), scored directly. Ground
truth is ``gt_dir/{id}.png``: a palette or grey PNG with 0 background, 1..C the classes
and 255 ignore. Every image is scored (the reference scored only every 8th one).
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from tqdm.auto import tqdm

from puzzlecam.cams.scores import load_scores
from puzzlecam.constants import BACKGROUND, IGNORE_INDEX
from puzzlecam.errors import DataError, short_list
from puzzlecam.io import load_label_png, write_json
from puzzlecam.metrics.confusion import ConfusionMatrix, SegmentationScores, confusion_counts
from puzzlecam.metrics.sweep import (
    DEFAULT_THRESHOLDS,
    ThresholdSweep,
    best_threshold_index,
    bucket_counts,
    check_thresholds,
)
from puzzlecam.parallel import default_workers

__all__ = [
    "PredictionKind",
    "EvaluationResult",
    "find_predictions",
    "evaluate_directory",
    "format_table",
    "write_result",
]

logger = logging.getLogger(__name__)

PredictionKind = Literal["scores", "labels"]
_SUFFIX: dict[str, str] = {"scores": ".npz", "labels": ".png"}
_MAX_LISTED = 10  # label values named in an error message


def _fmt(value: float, scale: float, width: int, digits: int) -> str:
    """Fixed-width number, '-' for nan."""
    return f"{'-':>{width}}" if np.isnan(value) else f"{value * scale:>{width}.{digits}f}"


@dataclass(frozen=True, eq=False)
class EvaluationResult:
    """What ``evaluate_directory`` measured.

    ``scores`` holds the scores at the chosen threshold (score files) or of the label
    maps (PNGs); ``sweep`` one ``SegmentationScores`` per entry of ``thresholds``
    (both empty for PNGs). ``skipped`` are predictions that had no ground truth;
    ``missing`` ground-truth images that had no prediction (not scored).
    Values inside are fractions; ``to_dict`` gives IoU/mIoU in percent.
    """

    kind: PredictionKind
    class_names: tuple[str, ...]  # the C foreground classes, label order
    scores: SegmentationScores
    threshold: float | None
    thresholds: tuple[float, ...]
    sweep: tuple[SegmentationScores, ...]
    num_images: int
    skipped: tuple[str, ...]
    pred_dir: str
    gt_dir: str
    missing: tuple[str, ...] = ()

    @property
    def miou(self) -> float:
        """mIoU as a fraction in [0, 1] (at the best threshold for score files)."""
        return self.scores.miou

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: mIoU/IoU in percent, FP/FN/precision/recall as fractions, nan -> None.

        Keys: kind, miou, threshold (null for PNGs), miou_foreground, fp, fn (means over
        the foreground classes), pixel_accuracy, num_images, num_pixels, num_skipped,
        skipped, num_missing_predictions, missing_predictions, pred_dir, gt_dir, sweep
        (list of {threshold, miou, fp, fn}), per_class ({name: {iou, precision, recall,
        fp, fn, gt_pixels, pred_pixels}}).
        """
        summary = self.scores.to_dict(self.class_names)
        sweep = []
        for threshold, entry in zip(self.thresholds, self.sweep, strict=True):
            brief = entry.to_dict(self.class_names)
            sweep.append(
                {
                    "threshold": threshold,
                    "miou": brief["miou"],
                    "fp": brief["fp"],
                    "fn": brief["fn"],
                }
            )
        return {
            "kind": self.kind,
            "miou": summary["miou"],
            "threshold": self.threshold,
            "miou_foreground": summary["miou_foreground"],
            "fp": summary["fp"],
            "fn": summary["fn"],
            "pixel_accuracy": summary["pixel_accuracy"],
            "num_images": self.num_images,
            "num_pixels": summary["num_pixels"],
            "num_skipped": len(self.skipped),
            "skipped": list(self.skipped),
            "num_missing_predictions": len(self.missing),
            "missing_predictions": list(self.missing),
            "pred_dir": self.pred_dir,
            "gt_dir": self.gt_dir,
            "sweep": sweep,
            "per_class": summary["per_class"],
        }


def _files_by_suffix(folder: Path, suffix: str) -> dict[str, Path]:
    """{stem: path} of the regular files in ``folder`` ending in ``suffix`` (hidden ones skipped)."""
    found = {}
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name.endswith(suffix) and not entry.name.startswith(".") and entry.is_file():
                found[entry.name[: -len(suffix)]] = Path(entry.path)
    return found


def find_predictions(pred_dir: str | Path) -> tuple[PredictionKind, dict[str, Path]]:
    """Detect what ``pred_dir`` holds: ``("scores", {id: .npz})`` or ``("labels", {id: .png})``.

    Raises DataError when the folder is missing, holds neither kind, or holds both.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise DataError(pred_dir, "prediction folder not found")
    score_files = _files_by_suffix(pred_dir, ".npz")
    label_files = _files_by_suffix(pred_dir, ".png")
    if score_files and label_files:
        raise DataError(
            pred_dir,
            f"holds both score files ({len(score_files)} .npz) and label maps "
            f"({len(label_files)} .png); put each kind of prediction in its own folder",
        )
    if score_files:
        return "scores", score_files
    if label_files:
        return "labels", label_files
    raise DataError(
        pred_dir, "holds no predictions: expected {id}.npz score files or {id}.png labels"
    )


def _load_gt(path: Path, num_labels: int) -> np.ndarray:
    """(H, W) uint8 ground truth; DataError naming the file for values outside {0..L-1, 255}."""
    gt = load_label_png(path)
    if gt.size and int(gt.max()) >= num_labels:
        valid = (gt < num_labels) | (gt == IGNORE_INDEX)
        if not valid.all():
            bad = np.unique(gt[~valid]).tolist()
            raise DataError(
                path,
                f"ground truth holds values {bad[:_MAX_LISTED]} outside 0..{num_labels - 1} "
                f"and {IGNORE_INDEX} (ignore); is the class list ({num_labels - 1} classes) right?",
            )
    return gt


def _check_size(
    pred_path: Path, pred_size: tuple[int, ...], gt_path: Path, gt_size: tuple[int, ...]
) -> None:
    # without the image either file can be the wrong one: a resized prediction, or a
    # ground-truth mask made for another image (the pipeline checks its masks up front)
    if pred_size != gt_size:
        raise DataError(
            pred_path,
            f"prediction is {pred_size[0]}x{pred_size[1]} (HxW) but its ground truth "
            f"{gt_path} is {gt_size[0]}x{gt_size[1]}; both must be at their image's size: "
            "check which of the two is not (a resized prediction, or the mask of another image)",
        )


def _label_counts(pred_path: Path, gt_path: Path, num_labels: int) -> np.ndarray:
    """(L, L) counts of one label PNG against its ground truth."""
    pred = load_label_png(pred_path)
    gt = _load_gt(gt_path, num_labels)
    _check_size(pred_path, pred.shape, gt_path, gt.shape)
    if pred.size and int(pred.max()) >= num_labels:
        bad = np.unique(pred[pred >= num_labels]).tolist()
        raise DataError(
            pred_path,
            f"prediction holds label values {bad[:_MAX_LISTED]} outside 0..{num_labels - 1}",
        )
    return confusion_counts(pred, gt, num_labels)


def _score_counts(
    pred_path: Path, gt_path: Path, num_labels: int, thresholds: tuple[float, ...]
) -> np.ndarray:
    """(T + 1, L, L) bucket counts of one score file against its ground truth."""
    maps = load_scores(pred_path)
    gt = _load_gt(gt_path, num_labels)
    _check_size(pred_path, maps.scores.shape[1:], gt_path, gt.shape)
    try:
        return bucket_counts(maps.scores, maps.keys, gt, num_labels, thresholds)
    except ValueError as error:  # gt and sizes are checked: what is left is the score file's
        raise DataError(pred_path, str(error)) from error


def _map_bounded(
    function: Callable[[str], np.ndarray], items: Sequence[str], num_workers: int
) -> Iterator[np.ndarray]:
    """``map(function, items)`` in order, on ``num_workers`` threads (0: inline).

    At most 2 * num_workers results wait at a time, so memory stays flat on long lists.
    NumPy, zlib (PNG) and file reads release the GIL, so threads overlap.
    """
    if num_workers <= 0:
        yield from map(function, items)
        return
    executor = ThreadPoolExecutor(max_workers=num_workers, thread_name_prefix="eval")
    try:
        pending: deque[Future[np.ndarray]] = deque()
        iterator = iter(items)
        for item in iterator:
            pending.append(executor.submit(function, item))
            if len(pending) >= 2 * num_workers:
                break
        while pending:
            result = pending.popleft().result()
            next_item = next(iterator, None)
            if next_item is not None:
                pending.append(executor.submit(function, next_item))
            yield result
    finally:
        executor.shutdown(wait=True, cancel_futures=True)


def evaluate_directory(
    pred_dir: str | Path,
    gt_dir: str | Path | Mapping[str, Path],
    class_names: Sequence[str],
    image_ids: Iterable[str] | None = None,
    thresholds: Sequence[float] | None = None,
    *,
    progress: bool = True,
    num_workers: int | None = None,
    strict: bool = False,
) -> EvaluationResult:
    """Score every prediction in ``pred_dir`` against ``gt_dir/{id}.png``.

    pred_dir: ``{id}.npz`` score files (K, H, W) or ``{id}.png`` label maps (H, W), not
    both. gt_dir: a folder of (H, W) label PNGs, 0 background, 1..C classes, 255 ignore,
    or a mapping image id -> such a file (ground truth spread over folders, e.g. VOC's
    SegmentationClass and SBD's SegmentationClassAug).
    class_names: the C foreground classes in label order (background is label 0 and
    not listed). image_ids: the images to score (default: every prediction); each must
    have a prediction. thresholds: background thresholds for score files, strictly
    increasing (default 0.05..0.95 step 0.05; ignored for PNGs); the result is reported
    at the one with the best mIoU (the lowest on ties). progress: tqdm bar over images.
    num_workers: threads reading and counting images (default ``parallel.default_workers``;
    0 inline).

    Raises DataError for a missing prediction of a listed id, mixed formats, a size
    mismatch, a gt value outside {0..C, 255}, an unreadable file, or nothing to score.
    Predictions without ground truth are skipped, logged and listed in the result.
    Without ``image_ids``, ground-truth images without a prediction are logged and listed
    in ``missing`` (the scores cover the others), or a DataError when ``strict``.
    """
    names = tuple(class_names)
    if not names:
        raise ValueError("class_names is empty: give the C foreground classes")
    if names[0].lower() == BACKGROUND:
        raise ValueError(
            f"class_names must list only the foreground classes; '{BACKGROUND}' is label 0 "
            "and is added automatically"
        )
    num_labels = len(names) + 1
    if num_labels > IGNORE_INDEX:
        raise ValueError(f"at most {IGNORE_INDEX - 1} classes fit in a uint8 label map")
    cuts = check_thresholds(DEFAULT_THRESHOLDS if thresholds is None else thresholds)
    workers = default_workers() if num_workers is None else num_workers

    pred_dir = Path(pred_dir)
    kind, predictions = find_predictions(pred_dir)
    if isinstance(gt_dir, Mapping):
        gt_files = {image_id: Path(path) for image_id, path in gt_dir.items()}
        folders = sorted({str(path.parent) for path in gt_files.values()})
        gt_dir = (
            Path(folders[0]) if len(folders) == 1 else Path(os.path.commonpath(folders or ["."]))
        )
    else:
        gt_dir = Path(gt_dir)
        if not gt_dir.is_dir():
            raise DataError(gt_dir, "ground-truth folder not found")
        gt_files = _files_by_suffix(gt_dir, ".png")

    missing: tuple[str, ...] = ()
    if image_ids is None:
        ids = sorted(predictions)
        missing = tuple(sorted(set(gt_files) - set(predictions)))
        where = f"{len(missing)} of the {len(gt_files)} ground-truth images in {gt_dir}"
        if missing and strict:
            raise DataError(
                pred_dir,
                f"{where} have no prediction ({{id}}{_SUFFIX[kind]}): {short_list(missing)}; "
                "predict every image, or leave out strict (eval --strict) to score the "
                f"{len(gt_files) - len(missing)} present",
            )
        if missing:
            logger.warning(
                "%s have no prediction in %s and are not scored: %s",
                where, pred_dir, short_list(missing),
            )  # fmt: skip
    else:
        ids = list(dict.fromkeys(image_ids))  # ordered, duplicates would count twice
        missing = [image_id for image_id in ids if image_id not in predictions]
        if missing:
            raise DataError(
                pred_dir,
                f"{len(missing)} of the {len(ids)} listed images have no prediction "
                f"({{id}}{_SUFFIX[kind]}): {short_list(missing)}",
            )
    skipped = tuple(image_id for image_id in ids if image_id not in gt_files)
    if skipped:
        logger.warning(
            "skipping %d prediction(s) with no ground truth in %s: %s",
            len(skipped), gt_dir, short_list(skipped),
        )  # fmt: skip
    scored = [image_id for image_id in ids if image_id in gt_files]
    if not scored:
        raise DataError(gt_dir, f"none of the {len(ids)} predictions has a ground-truth mask here")

    def count(image_id: str) -> np.ndarray:
        if kind == "scores":
            return _score_counts(predictions[image_id], gt_files[image_id], num_labels, cuts)
        return _label_counts(predictions[image_id], gt_files[image_id], num_labels)

    accumulator = (
        ThresholdSweep(num_labels, cuts) if kind == "scores" else ConfusionMatrix(num_labels)
    )
    bar = tqdm(total=len(scored), desc=f"eval {kind}", unit="img", disable=not progress)
    try:
        for counts in _map_bounded(count, scored, workers):
            accumulator.add(counts)
            bar.update(1)
    finally:
        bar.close()

    sweep: tuple[SegmentationScores, ...] = ()
    thresholds_out: tuple[float, ...] = ()
    threshold: float | None = None
    if isinstance(accumulator, ThresholdSweep):
        sweep = accumulator.compute()
        scores = sweep[0]  # every threshold counts the same pixels
    else:
        scores = accumulator.compute()
    if scores.num_pixels == 0:
        raise DataError(
            gt_dir, f"nothing to score: every ground-truth pixel of the {len(scored)} images is 255"
        )
    if sweep:
        best = best_threshold_index(sweep)
        scores, threshold, thresholds_out = sweep[best], cuts[best], cuts
    return EvaluationResult(
        kind=kind,
        class_names=names,
        scores=scores,
        threshold=threshold,
        thresholds=thresholds_out,
        sweep=sweep,
        num_images=len(scored),
        skipped=skipped,
        pred_dir=str(pred_dir),
        gt_dir=str(gt_dir),
        missing=missing,
    )


def format_table(result: EvaluationResult, class_names: Sequence[str] | None = None) -> str:
    """A fixed-width text report: header, per-class IoU/FP/FN/precision/recall, sweep block.

    class_names: the C foreground names to print (default: the result's own).
    IoU and mIoU in percent, FP/FN/precision/recall as fractions; '-' where undefined.
    """
    scores = result.scores
    names = scores.label_names(result.class_names if class_names is None else class_names)
    width = max(12, *(len(name) for name in names))
    where = f"best threshold {result.threshold:.2f}" if result.threshold is not None else "labels"
    lines = [
        f"{result.num_images} images, {result.kind} ({where}): mIoU {scores.miou * 100:.2f}%",
        f"{'class':<{width}} {'IoU%':>7} {'FP':>7} {'FN':>7} {'prec':>7} {'recall':>7}",
    ]
    for i, name in enumerate(names):
        lines.append(
            f"{name:<{width}} {_fmt(scores.iou[i], 100, 7, 2)} {_fmt(scores.fp[i], 1, 7, 4)} "
            f"{_fmt(scores.fn[i], 1, 7, 4)} {_fmt(scores.precision[i], 1, 7, 4)} "
            f"{_fmt(scores.recall[i], 1, 7, 4)}"
        )
    lines.append(
        f"{'mIoU':<{width}} {_fmt(scores.miou, 100, 7, 2)} {_fmt(scores.mean_fp, 1, 7, 4)} "
        f"{_fmt(scores.mean_fn, 1, 7, 4)}   (FP/FN: mean over foreground classes)"
    )
    lines.append(f"{'mIoU (fg)':<{width}} {_fmt(scores.miou_foreground, 100, 7, 2)}")
    lines.append(f"{'pixel acc.':<{width}} {_fmt(scores.pixel_accuracy, 100, 7, 2)}")
    if result.sweep:
        lines.append("")
        lines.append(f"{'threshold':>9} {'mIoU%':>7} {'FP':>7} {'FN':>7}")
        for threshold, entry in zip(result.thresholds, result.sweep, strict=True):
            mark = " *" if threshold == result.threshold else ""
            lines.append(
                f"{threshold:>9.2f} {_fmt(entry.miou, 100, 7, 2)} {_fmt(entry.mean_fp, 1, 7, 4)} "
                f"{_fmt(entry.mean_fn, 1, 7, 4)}{mark}"
            )
    if result.skipped:
        lines.append("")
        lines.append(
            f"skipped {len(result.skipped)} prediction(s) with no ground truth: "
            f"{short_list(result.skipped)}"
        )
    if result.missing:
        lines.append("")
        lines.append(
            f"not scored: {len(result.missing)} ground-truth image(s) without a prediction: "
            f"{short_list(result.missing)}"
        )
    return "\n".join(lines)


def write_result(path: str | Path, result: EvaluationResult) -> None:
    """Write ``result.to_dict()`` as JSON, atomically."""
    write_json(path, result.to_dict())
