import numpy as np
import pytest

from puzzlecam.metrics.classification import average_precision, multilabel_scores


def test_average_precision_hand_computed():
    # ranking by score: pos, neg, pos, neg -> precisions at the positives 1/1 and 2/3
    scores = np.array([0.9, 0.8, 0.7, 0.1])
    labels = np.array([1, 0, 1, 0])
    assert average_precision(scores, labels) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(scores, np.array([1, 1, 0, 0])) == 1.0
    assert np.isnan(average_precision(scores, np.zeros(4)))


def test_multilabel_scores():
    probs = np.array([[0.9, 0.2], [0.6, 0.7], [0.1, 0.8]])
    targets = np.array([[1, 0], [0, 1], [0, 1]])
    # class 0: ranking pos, neg, neg -> AP 1; class 1: 0.8 pos, 0.7 pos, 0.2 neg -> AP 1
    # predicted at 0.5: (0,0) (1,0) (1,1) (2,1): 3 true of 4 predicted, 3 targets -> F1 6/7
    out = multilabel_scores(probs, targets)
    assert out["map"] == 100.0
    assert out["f1"] == pytest.approx(100 * 6 / 7, abs=0.01)
