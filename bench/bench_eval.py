"""Evaluation throughput (pixels/s) on synthetic data written to a temporary folder.

(a) label PNGs and (b) score files with the 19-threshold background sweep, both through
``evaluate_directory`` (inline and with a thread pool), against the reference's way in
the same process: per threshold an argmax over [threshold, scores] and, per class, sums
of ``pred == i``, ``gt == i`` and both over the valid pixels. The naive loop runs on the
first ``--naive-images`` images (it is slow); its counts are checked against ours.

    .venv/bin/python bench/bench_eval.py [--images 200] [--naive-images 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from puzzlecam.cams.scores import ScoreMaps, load_scores, save_scores
from puzzlecam.io import load_label_png, save_label_png
from puzzlecam.metrics import DEFAULT_THRESHOLDS, evaluate_directory
from puzzlecam.metrics.sweep import bucket_counts, sweep_matrices


def synthesize(root: Path, num_images: int, size: tuple[int, int], num_classes: int) -> None:
    """gt/, labels/ and scores/ for ``num_images`` images: 1-3 boxes each, a 255 border band."""
    rng = np.random.default_rng(0)
    height, width = size
    rows, cols = np.mgrid[0:height, 0:width]
    for index in range(num_images):
        gt = np.zeros(size, dtype=np.uint8)
        pred = np.zeros(size, dtype=np.uint8)
        tags = np.sort(rng.choice(np.arange(1, num_classes + 1), rng.integers(1, 4), replace=False))
        scores = np.zeros((len(tags), height, width), dtype=np.float32)  # (K, H, W)
        for channel, tag in enumerate(tags):
            top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
            bottom = top + rng.integers(height // 6, height // 2)
            right = left + rng.integers(width // 6, width // 2)
            box = (rows >= top) & (rows < bottom) & (cols >= left) & (cols < right)
            gt[box] = tag
            pred[np.roll(box, (rng.integers(-20, 20), rng.integers(-20, 20)), (0, 1))] = tag
            centre_r, centre_c = (top + bottom) / 2, (left + right) / 2
            spread = ((rows - centre_r) / (bottom - top)) ** 2 + (
                (cols - centre_c) / (right - left)
            ) ** 2
            scores[channel] = np.exp(-2.0 * spread) * rng.uniform(0.7, 1.0)
        band = np.zeros(size, dtype=bool)
        band[1:] |= gt[1:] != gt[:-1]
        band[:, 1:] |= gt[:, 1:] != gt[:, :-1]
        gt[band] = 255
        scores += rng.normal(0.0, 0.05, scores.shape).astype(np.float32)
        scores = np.clip(scores, 0.0, 1.0)
        image_id = f"{index:05d}"
        save_label_png(root / "gt" / f"{image_id}.png", gt)
        save_label_png(root / "labels" / f"{image_id}.png", pred)
        save_scores(root / "scores" / f"{image_id}.npz", ScoreMaps(keys=tags, scores=scores))


def naive_counts(pred: np.ndarray, gt: np.ndarray, num_labels: int) -> np.ndarray:
    """(3, L): per-class P, T, TP over valid pixels, the reference's per-class sums."""
    valid = gt < 255
    match = (pred == gt) * valid
    out = np.zeros((3, num_labels), dtype=np.int64)
    for i in range(num_labels):
        out[0, i] = np.sum((pred == i) * valid)
        out[1, i] = np.sum((gt == i) * valid)
        out[2, i] = np.sum((gt == i) * match)
    return out


def naive_scores(root: Path, ids: list[str], num_labels: int) -> np.ndarray:
    """(T, 3, L) per-threshold P/T/TP, one argmax over [threshold; scores] per threshold."""
    total = np.zeros((len(DEFAULT_THRESHOLDS), 3, num_labels), dtype=np.int64)
    for image_id in ids:
        maps = load_scores(root / "scores" / f"{image_id}.npz")
        gt = load_label_png(root / "gt" / f"{image_id}.png")
        keys = np.concatenate([[0], maps.keys])
        for j, threshold in enumerate(DEFAULT_THRESHOLDS):
            padded = np.pad(maps.scores, ((1, 0), (0, 0), (0, 0)), constant_values=threshold)
            pred = keys[np.argmax(padded, axis=0)]
            total[j] += naive_counts(pred, gt, num_labels)
    return total


def naive_labels(root: Path, ids: list[str], num_labels: int) -> np.ndarray:
    total = np.zeros((3, num_labels), dtype=np.int64)
    for image_id in ids:
        pred = load_label_png(root / "labels" / f"{image_id}.png")
        gt = load_label_png(root / "gt" / f"{image_id}.png")
        total += naive_counts(pred, gt, num_labels)
    return total


def as_ptp(matrix: np.ndarray) -> np.ndarray:
    """(..., L, L) confusion -> (..., 3, L) P, T, TP."""
    return np.stack(
        [matrix.sum(-2), matrix.sum(-1), np.diagonal(matrix, axis1=-2, axis2=-1)], axis=-2
    )


def timed(function, *args, repeat: int = 1, **kwargs):
    """(result, best wall time over ``repeat`` runs): the best is the least disturbed one."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        best = min(best, time.perf_counter() - start)
    return result, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--naive-images", type=int, default=10)
    parser.add_argument("--height", type=int, default=375)
    parser.add_argument("--width", type=int, default=500)
    parser.add_argument("--classes", type=int, default=20, help="foreground classes (L = C + 1)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--repeat", type=int, default=3, help="best of N timings")
    args = parser.parse_args()
    classes = [f"class{i}" for i in range(1, args.classes + 1)]
    num_labels = args.classes + 1
    pixels = args.height * args.width

    with tempfile.TemporaryDirectory(prefix="bench_eval_") as tmp:
        root = Path(tmp)
        _, seconds = timed(synthesize, root, args.images, (args.height, args.width), args.classes)
        print(
            f"{args.images} images {args.height}x{args.width}, {num_labels} labels, "
            f"{len(DEFAULT_THRESHOLDS)} thresholds (synthesized in {seconds:.1f} s); "
            f"best of {args.repeat} runs, files in the page cache"
        )
        ids = sorted(p.stem for p in (root / "gt").glob("*.png"))[: args.naive_images]
        naive_n = len(ids)

        for kind in ("labels", "scores"):
            rates = {}
            for workers in args.workers:
                result, seconds = timed(
                    evaluate_directory, root / kind, root / "gt", classes,
                    progress=False, num_workers=workers, repeat=args.repeat,
                )  # fmt: skip
                rates[workers] = args.images * pixels / seconds
                print(
                    f"({'a' if kind == 'labels' else 'b'}) {kind:<6} ours  workers={workers}: "
                    f"{rates[workers] / 1e6:8.2f} Mpx/s  ({seconds:6.2f} s, mIoU "
                    f"{100 * result.miou:.2f}%, threshold {result.threshold})"
                )
            if kind == "labels":
                naive, seconds = timed(naive_labels, root, ids, num_labels, repeat=args.repeat)
                ours = evaluate_directory(
                    root / kind, root / "gt", classes, image_ids=ids, progress=False, num_workers=0
                )
                assert np.array_equal(naive, as_ptp(ours.scores.matrix)), "labels: counts differ"
            else:
                naive, seconds = timed(naive_scores, root, ids, num_labels, repeat=args.repeat)
                ours = np.zeros((len(DEFAULT_THRESHOLDS) + 1, num_labels, num_labels), np.int64)
                for image_id in ids:
                    maps = load_scores(root / "scores" / f"{image_id}.npz")
                    gt = load_label_png(root / "gt" / f"{image_id}.png")
                    ours += bucket_counts(maps.scores, maps.keys, gt, num_labels)
                assert np.array_equal(naive, as_ptp(sweep_matrices(ours))), "sweep: counts differ"
            naive_rate = naive_n * pixels / seconds
            best = max(rates.values())
            print(
                f"    {kind:<6} naive (reference's per-class sums, {naive_n} images): "
                f"{naive_rate / 1e6:8.2f} Mpx/s  ({seconds:6.2f} s); counts identical"
            )
            print(
                f"    {kind:<6} ratio ours/naive: {rates[args.workers[0]] / naive_rate:6.1f}x "
                f"(workers={args.workers[0]}), {best / naive_rate:6.1f}x (best)"
            )


if __name__ == "__main__":
    main()
