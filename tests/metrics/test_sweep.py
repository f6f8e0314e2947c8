"""The one-pass threshold sweep equals looping threshold_argmax per threshold."""

import numpy as np
import pytest

from puzzlecam.cams.scores import threshold_argmax
from puzzlecam.metrics.confusion import SegmentationScores, confusion_counts
from puzzlecam.metrics.sweep import (
    DEFAULT_THRESHOLDS,
    ThresholdSweep,
    best_threshold_index,
    bucket_counts,
    check_thresholds,
    label_buckets,
    sweep_confusion,
)


def labels_at(scores, keys, threshold):
    """(H, W) label map: each channel's key where threshold_argmax picks it, else 0."""
    return np.concatenate([[0], np.asarray(keys, np.int64)])[threshold_argmax(scores, threshold)]


def naive_sweep(images, num_labels, thresholds):
    """(T, L, L): for each threshold, labels via threshold_argmax, then one confusion matrix."""
    return np.stack(
        [
            sum(confusion_counts(labels_at(s, k, t), g, num_labels) for s, k, g in images)
            for t in thresholds
        ]
    )


def random_image(rng, num_labels, num_channels, size, dtype):
    # Scores on a 1/40 grid: many pixels tie exactly with a threshold (ties -> background).
    scores = (rng.integers(0, 41, (num_channels, *size)) / 40).astype(dtype)
    keys = rng.choice(np.arange(1, num_labels), num_channels, replace=False)
    gt = rng.integers(0, num_labels, size).astype(np.uint8)
    gt[rng.random(size) < 0.15] = 255
    return scores, keys, gt


def test_default_thresholds():
    assert DEFAULT_THRESHOLDS[0] == 0.05 and DEFAULT_THRESHOLDS[-1] == 0.95
    assert len(DEFAULT_THRESHOLDS) == 19
    assert DEFAULT_THRESHOLDS[4] == 0.25  # exact decimals, not 0.25000000000000006


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_sweep_equals_naive_loop_on_random_data(dtype):
    rng = np.random.default_rng(7)
    num_labels = 8
    images = [random_image(rng, num_labels, k, (23, 31), dtype) for k in (0, 1, 2, 3, 5, 1, 2)]
    sweep = ThresholdSweep(num_labels)
    for scores, keys, gt in images:
        sweep.update(scores, keys, gt)
    expected = naive_sweep(images, num_labels, DEFAULT_THRESHOLDS)
    np.testing.assert_array_equal(sweep.matrices(), expected)
    results = sweep.compute()
    assert len(results) == len(DEFAULT_THRESHOLDS)
    for result, matrix in zip(results, expected, strict=True):
        assert result.miou == pytest.approx(SegmentationScores.from_matrix(matrix).miou)


def test_sweep_equals_naive_loop_with_custom_thresholds_and_repeated_keys():
    rng = np.random.default_rng(3)
    thresholds = (0.0, 0.1, 0.33, 0.5, 0.7001, 0.99)
    scores = rng.random((4, 17, 19)).astype(np.float16)
    keys = np.array([2, 5, 2, 1])  # a label may own several channels
    gt = rng.integers(0, 6, (17, 19)).astype(np.uint8)
    expected = naive_sweep([(scores, keys, gt)], 6, thresholds)
    np.testing.assert_array_equal(sweep_confusion(scores, keys, gt, 6, thresholds), expected)


def test_float16_with_negative_zero_and_infinite_scores_equals_naive_loop():
    # Exercises both float16 paths: [0, inf] (bit-pattern table) and the general one.
    rng = np.random.default_rng(5)
    thresholds = (-0.5, 0.0, 0.25, 0.5)
    keys = np.array([1, 2, 3])
    gt = rng.integers(0, 4, (6, 9)).astype(np.uint8)
    positive = (rng.integers(0, 5, (3, 6, 9)) / 4).astype(np.float16)
    positive[0, 0, :3] = np.inf
    signed = positive.copy()
    signed[1, 1, :4] = [-0.0, -0.5, -1.0, -np.inf]
    signed[:, 2, :] = -0.0  # -0.0 == 0.0: a tie across channels, and with t = 0.0
    signed[0, 2, 0] = 0.0
    for scores in (positive, signed):
        expected = naive_sweep([(scores, keys, gt)], 4, thresholds)
        np.testing.assert_array_equal(sweep_confusion(scores, keys, gt, 4, thresholds), expected)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_many_channels_use_a_wider_index(dtype):
    # 300 channels: more than a uint8 channel index and a uint16 bincount index hold.
    rng = np.random.default_rng(11)
    scores = (rng.integers(0, 9, (300, 5, 6)) / 8).astype(dtype)
    keys = rng.integers(1, 6, 300)
    gt = rng.integers(0, 6, (5, 6)).astype(np.uint8)
    expected = naive_sweep([(scores, keys, gt)], 6, DEFAULT_THRESHOLDS)
    np.testing.assert_array_equal(sweep_confusion(scores, keys, gt, 6), expected)


def test_argmax_ties_go_to_the_first_channel():
    scores = np.full((3, 2, 2), 0.5, dtype=np.float16)
    keys = np.array([3, 1, 2])
    gt = np.full((2, 2), 3, dtype=np.uint8)
    matrices = sweep_confusion(scores, keys, gt, 4, (0.25,))
    assert matrices[0, 3, 3] == 4  # channel 0 (label 3) wins every tie


def test_best_threshold_on_a_constructed_example():
    # Foreground (gt 1) pixels score 0.3, 0.6, 0.9; background pixels 0.0, 0.1, 0.2, 0.25.
    # Only t = 0.25 separates them: below it the 0.25 pixel turns foreground, at 0.30
    # the 0.3 pixel ties and goes to background. So t = 0.25 is perfect (mIoU 1).
    scores = np.array([[[0.0, 0.1, 0.2, 0.25, 0.3, 0.6, 0.9]]], dtype=np.float16)
    gt = np.array([[0, 0, 0, 0, 1, 1, 1]], dtype=np.uint8)
    sweep = ThresholdSweep(2)
    sweep.update(scores, np.array([1]), gt)
    results = sweep.compute()
    best = best_threshold_index(results)
    assert DEFAULT_THRESHOLDS[best] == 0.25
    assert results[best].miou == 1.0
    # t = 0.20: one bg pixel (0.25) predicted fg: bg IoU 3/4, fg IoU 3/4.
    assert results[3].miou == pytest.approx(0.75)
    # t = 0.30: one fg pixel (0.3, a tie) predicted bg: bg IoU 4/5, fg IoU 2/3.
    assert results[5].miou == pytest.approx((4 / 5 + 2 / 3) / 2)


def test_best_threshold_ties_pick_the_lowest():
    same = SegmentationScores.from_matrix(np.eye(2, dtype=np.int64))
    worse = SegmentationScores.from_matrix(np.ones((2, 2), dtype=np.int64))
    assert best_threshold_index([worse, same, same]) == 1
    empty = SegmentationScores.from_matrix(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(ValueError, match="no threshold"):
        best_threshold_index([empty])


def test_bucket_counts_total_is_valid_pixels():
    rng = np.random.default_rng(0)
    scores, keys, gt = random_image(rng, 5, 2, (10, 12), np.float16)
    counts = bucket_counts(scores, keys, gt, 5)
    assert counts.shape == (20, 5, 5)
    assert counts.sum() == np.sum(gt != 255)


def test_errors():
    rng = np.random.default_rng(0)
    scores, keys, gt = random_image(rng, 5, 2, (10, 12), np.float16)
    with pytest.raises(ValueError, match="strictly increasing"):
        check_thresholds([0.5, 0.3])
    with pytest.raises(ValueError, match="at least one"):
        check_thresholds([])
    with pytest.raises(ValueError, match="differs"):
        bucket_counts(scores, keys, gt[:5], 5)
    with pytest.raises(ValueError, match="score keys"):
        bucket_counts(scores, np.array([1, 9]), gt, 5)
    bad_gt = gt.copy()
    bad_gt[0, 0] = 7
    with pytest.raises(ValueError, match="ground truth holds values.*7"):
        bucket_counts(scores, keys, bad_gt, 5)
    nan_scores = scores.copy()
    nan_scores[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        bucket_counts(nan_scores, keys, gt, 5)
    with pytest.raises(ValueError, match="float"):
        bucket_counts(scores.astype(np.int32), keys, gt, 5)


def test_inputs_not_mutated():
    rng = np.random.default_rng(1)
    scores, keys, gt = random_image(rng, 5, 3, (9, 11), np.float16)
    copies = (scores.copy(), keys.copy(), gt.copy())
    sweep_confusion(scores, keys, gt, 5)
    for original, copy in zip((scores, keys, gt), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_label_buckets_give_threshold_argmax_at_every_threshold(dtype) -> None:
    rng = np.random.default_rng(3)
    scores = rng.random((3, 9, 11)).astype(dtype)
    scores[:, 0, :3] = np.asarray(0.35, dtype)  # exactly on a threshold: background there
    keys = np.array([2, 5, 7])
    thresholds = tuple(round(0.01 * i, 2) for i in range(1, 100))
    label, bucket = label_buckets(scores, keys, thresholds)
    assert label.dtype == np.uint8 and bucket.dtype == np.uint8
    lookup = np.concatenate([[0], keys])
    for j, t in enumerate(thresholds):
        expected = lookup[threshold_argmax(scores, t)]
        np.testing.assert_array_equal(np.where(bucket > j, label, 0), expected, err_msg=str(t))
    assert label[0, 0] == keys[scores[:, 0, 0].argmax()] and bucket[0, 0] == 34


def test_label_buckets_hand_computed_and_no_channels() -> None:
    scores = np.array([[[0.2, 0.7]], [[0.6, 0.1]]], dtype=np.float32)  # (2, 1, 2)
    label, bucket = label_buckets(scores, np.array([1, 3]), (0.25, 0.5, 0.75))
    np.testing.assert_array_equal(label, [[3, 1]])  # best channels: 3 (0.6), 1 (0.7)
    np.testing.assert_array_equal(bucket, [[2, 2]])  # each above 0.25 and 0.5 only
    empty_label, empty_bucket = label_buckets(np.zeros((0, 2, 3), np.float16), np.zeros(0, int))
    assert empty_label.shape == (2, 3) and not empty_label.any() and not empty_bucket.any()
    with pytest.raises(ValueError, match="keys"):
        label_buckets(scores, np.array([1, 300]))
