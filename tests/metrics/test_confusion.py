"""ConfusionMatrix and SegmentationScores against hand-computed numbers."""

import json
import math

import numpy as np
import pytest

from puzzlecam.metrics.confusion import ConfusionMatrix, SegmentationScores, confusion_counts

# Three labels: 0 background, 1 cat, 2 dog; 255 = ignore.
GT = np.array(
    [
        [0, 0, 1, 1],
        [0, 1, 1, 255],
        [2, 2, 255, 0],
    ],
    dtype=np.uint8,
)
PRED = np.array(
    [
        [0, 1, 1, 1],
        [0, 1, 2, 2],  # the 2 under gt 255 is not counted
        [2, 2, 1, 0],  # nor the 1 under gt 255
    ],
    dtype=np.uint8,
)
# (gt, pred) pairs of the 10 non-ignored pixels:
#   row 0: (0,0) (0,1) (1,1) (1,1)
#   row 1: (0,0) (1,1) (1,2)
#   row 2: (2,2) (2,2) (0,0)
# Matrix, rows gt, columns pred:
#   gt 0: [3, 1, 0]     gt 1: [0, 3, 1]     gt 2: [0, 0, 2]
EXPECTED = np.array([[3, 1, 0], [0, 3, 1], [0, 0, 2]])
# TP = [3, 3, 2]; gt totals (rows) = [4, 4, 2]; pred totals (columns) = [3, 4, 3]
# FP = pred - TP = [0, 1, 1]; FN = gt - TP = [1, 1, 0]; U = TP + FP + FN = [4, 5, 3]
# IoU = [3/4, 3/5, 2/3];  mIoU = (0.75 + 0.6 + 0.6667) / 3 = 0.672222
# FP rate = FP/U = [0, 1/5, 1/3]; FN rate = FN/U = [1/4, 1/5, 0]
# mean FP (foreground) = (1/5 + 1/3) / 2 = 0.266667; mean FN = (1/5 + 0) / 2 = 0.1
# precision = TP/pred = [1, 3/4, 2/3]; recall = TP/gt = [3/4, 3/4, 1]; accuracy = 8/10


def test_counts_match_hand_computed_matrix():
    np.testing.assert_array_equal(confusion_counts(PRED, GT, 3), EXPECTED)


def test_scores_match_hand_computed_values():
    matrix = ConfusionMatrix(3)
    matrix.update(PRED, GT)
    scores = matrix.compute()
    np.testing.assert_allclose(scores.iou, [3 / 4, 3 / 5, 2 / 3])
    assert scores.miou == pytest.approx((3 / 4 + 3 / 5 + 2 / 3) / 3)
    assert scores.miou == pytest.approx(0.672222, abs=1e-6)
    assert scores.miou_foreground == pytest.approx((3 / 5 + 2 / 3) / 2)
    np.testing.assert_allclose(scores.fp, [0, 1 / 5, 1 / 3])
    np.testing.assert_allclose(scores.fn, [1 / 4, 1 / 5, 0])
    # IoU + FP rate + FN rate = 1 for every present class.
    np.testing.assert_allclose(scores.iou + scores.fp + scores.fn, 1.0)
    assert scores.mean_fp == pytest.approx((1 / 5 + 1 / 3) / 2)
    assert scores.mean_fn == pytest.approx(0.1)
    np.testing.assert_allclose(scores.precision, [1, 3 / 4, 2 / 3])
    np.testing.assert_allclose(scores.recall, [3 / 4, 3 / 4, 1])
    assert scores.pixel_accuracy == pytest.approx(0.8)
    assert scores.num_pixels == 10


def test_to_dict_is_json_ready_with_iou_in_percent():
    scores = SegmentationScores.from_matrix(EXPECTED)
    data = scores.to_dict(["cat", "dog"])
    json.dumps(data, allow_nan=False)
    assert data["miou"] == pytest.approx(67.2222, abs=1e-3)
    assert list(data["per_class"]) == ["background", "cat", "dog"]
    assert data["per_class"]["cat"]["iou"] == pytest.approx(60.0)
    assert data["per_class"]["dog"]["fp"] == pytest.approx(1 / 3, abs=1e-6)  # a fraction
    assert data["per_class"]["background"]["fn"] == pytest.approx(0.25)
    assert data["per_class"]["dog"]["gt_pixels"] == 2
    assert data["per_class"]["dog"]["pred_pixels"] == 3
    assert data["fp"] == pytest.approx(0.266667, abs=1e-6)
    with pytest.raises(ValueError, match="foreground class names"):
        scores.to_dict(["background", "cat", "dog"])


def test_class_absent_from_gt_and_prediction_is_excluded():
    # A fourth label (3, "bird") appears nowhere: U = 0, IoU undefined, mIoU unchanged.
    matrix = ConfusionMatrix(4)
    matrix.update(PRED, GT)
    scores = matrix.compute()
    assert math.isnan(scores.iou[3]) and math.isnan(scores.fp[3]) and math.isnan(scores.fn[3])
    assert scores.miou == pytest.approx((3 / 4 + 3 / 5 + 2 / 3) / 3)
    assert scores.mean_fp == pytest.approx((1 / 5 + 1 / 3) / 2)
    data = scores.to_dict(["cat", "dog", "bird"])
    assert data["per_class"]["bird"]["iou"] is None
    json.dumps(data, allow_nan=False)


def test_class_predicted_but_absent_from_gt_counts_as_zero():
    pred = PRED.copy()
    pred[0, 0] = 3  # a gt-0 pixel predicted as bird: background loses a TP, bird gets a FP
    scores = SegmentationScores.from_matrix(confusion_counts(pred, GT, 4))
    # background: TP 2, FP 0, FN 2 -> 2/4; cat 3/5, dog 2/3, bird 0/1 = 0.
    np.testing.assert_allclose(scores.iou, [2 / 4, 3 / 5, 2 / 3, 0.0])
    assert scores.miou == pytest.approx((2 / 4 + 3 / 5 + 2 / 3 + 0) / 4)
    assert scores.fp[3] == pytest.approx(1.0)


def test_accumulates_and_resets():
    matrix = ConfusionMatrix(3)
    matrix.update(PRED, GT)
    matrix.update(PRED, GT)
    np.testing.assert_array_equal(matrix.matrix, 2 * EXPECTED)
    matrix.reset()
    assert not matrix.matrix.any()
    assert matrix.compute().num_pixels == 0
    assert math.isnan(matrix.compute().miou)


def test_all_ignored_gives_no_pixels():
    gt = np.full((2, 2), 255, dtype=np.uint8)
    counts = confusion_counts(np.zeros((2, 2), np.uint8), gt, 3)
    assert not counts.any()


def test_prediction_out_of_range_raises():
    pred = PRED.copy()
    pred[0, 0] = 7
    with pytest.raises(ValueError, match=r"prediction holds label values outside 0\.\.2: 7"):
        ConfusionMatrix(3).update(pred, GT)
    with pytest.raises(ValueError, match="prediction holds label values"):
        confusion_counts(PRED.astype(np.int64) - 1, GT, 3)
    with pytest.raises(ValueError, match="integer labels"):
        confusion_counts(PRED.astype(np.float32), GT, 3)


def test_bad_gt_value_raises():
    gt = GT.copy()
    gt[0, 0] = 9
    with pytest.raises(ValueError, match=r"ground truth holds values outside 0\.\.2 and 255.*9"):
        confusion_counts(PRED, gt, 3)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        confusion_counts(PRED[:, :3], GT, 3)


def test_inputs_not_mutated():
    pred, gt = PRED.copy(), GT.copy()
    confusion_counts(pred, gt, 3)
    np.testing.assert_array_equal(pred, PRED)
    np.testing.assert_array_equal(gt, GT)
    matrix = EXPECTED.copy()
    scores = SegmentationScores.from_matrix(matrix)
    np.testing.assert_array_equal(matrix, EXPECTED)
    matrix[0, 0] = 100  # the result does not alias the input
    assert scores.matrix[0, 0] == 3


def test_random_against_per_class_sums():
    # The reference's way: per-class sums of (pred == i), (gt == i), both, over valid pixels.
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 5, (40, 50)).astype(np.uint8)
    gt[rng.random(gt.shape) < 0.2] = 255
    pred = rng.integers(0, 5, (40, 50)).astype(np.uint8)
    scores = SegmentationScores.from_matrix(confusion_counts(pred, gt, 5))
    valid = gt != 255
    for i in range(5):
        p = np.sum((pred == i) & valid)
        t = np.sum(gt == i)
        tp = np.sum((pred == i) & (gt == i))
        assert scores.iou[i] == pytest.approx(tp / (t + p - tp))
        assert scores.fp[i] == pytest.approx((p - tp) / (t + p - tp))
        assert scores.fn[i] == pytest.approx((t - tp) / (t + p - tp))
