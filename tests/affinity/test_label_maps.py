"""Label maps from class scores, on hand-made score arrays whose labels are worked out by
hand: the argmax with a background threshold, the affinity labels (confident foreground,
confident background, ignore in between) and the pseudo labels, with and without CRF.

Thresholds 0.5 / 0.25 and scores in eighths are exact in float16 and float32, so the
ties below are ties whatever the dtype."""

import numpy as np
import pytest

from puzzlecam.affinity import label_maps
from puzzlecam.affinity.label_maps import confident_labels, pseudo_labels
from puzzlecam.cams.scores import threshold_argmax
from puzzlecam.constants import IGNORE_INDEX
from puzzlecam.crf import crf_available

FG, BG = 0.5, 0.25
I = IGNORE_INDEX  # noqa: E741 - keeps the expected maps below aligned


def _image(height, width):
    return np.full((height, width, 3), 128, np.uint8)


def test_threshold_argmax_picks_the_best_class_above_the_threshold():
    scores = np.array(
        [
            [[0.875, 0.125, 0.5, 0.375]],  # class index 1
            [[0.250, 0.375, 0.5, 0.750]],  # class index 2
        ],
        np.float32,
    )  # (K=2, H=1, W=4)
    # 0.875 beats 0.5 -> 1; best 0.375 does not -> 0; 0.5 equals the threshold (tie with
    # background) -> 0; 0.75 beats 0.375 and the threshold -> 2
    assert threshold_argmax(scores, 0.5).tolist() == [[1, 0, 0, 2]]
    # a lower threshold lets the 0.375 and the 0.5 through; equal class scores go to the
    # first class
    assert threshold_argmax(scores, 0.25).tolist() == [[1, 2, 1, 2]]
    assert threshold_argmax(scores, 0.5).dtype == np.int64


def test_threshold_argmax_without_classes_is_all_background():
    labels = threshold_argmax(np.zeros((0, 2, 3), np.float32), 0.5)
    assert labels.shape == (2, 3) and labels.dtype == np.int64 and not labels.any()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_confident_labels_foreground_background_and_ignore(dtype):
    # two tagged classes whose label values are 15 and 3 (keys need not be sorted)
    scores = np.array(
        [
            [[0.875, 0.500, 0.125, 0.250], [0.375, 0.000, 0.125, 0.750]],  # key 15
            [[0.125, 0.375, 0.250, 0.000], [0.625, 0.000, 0.625, 0.625]],  # key 3
        ],
        dtype,
    )
    keys = np.array([15, 3])
    expected = np.array(
        [
            # 0.875 > fg -> 15; best 0.5 = fg is not foreground but is above bg -> ignore;
            # best 0.25 = bg -> background; best 0.25 = bg -> background
            [15, I, 0, 0],
            # key 3 wins (0.625 > 0.375) -> 3; all zero -> background; 0.625 -> 3;
            # both above fg, key 15 higher (0.75) -> 15
            [3, 0, 3, 15],
        ],
        np.uint8,
    )
    labels = confident_labels(_image(2, 4), scores, keys, FG, BG, crf_iterations=0)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, expected)


def test_confident_labels_defaults_are_the_papers_thresholds():
    # fg 0.40, bg 0.10: 0.45 foreground, 0.35 and 0.15 uncertain, 0.05 background
    scores = np.array([[[0.45, 0.35, 0.15, 0.05]]], np.float32)
    labels = confident_labels(_image(1, 4), scores, np.array([1]), crf_iterations=0)
    assert labels.tolist() == [[1, I, I, 0]]


def test_an_image_without_tagged_classes_is_all_background():
    labels = confident_labels(
        _image(2, 3), np.zeros((0, 2, 3), np.float32), np.array([]), FG, BG, 0
    )
    assert labels.shape == (2, 3) and labels.dtype == np.uint8 and not labels.any()


def _shift_right(image, labels, num_labels, iterations):
    """A stand-in CRF with a result worked out by hand: each pixel takes its left
    neighbour's label (the first column keeps its own)."""
    shifted = labels.copy()
    shifted[:, 1:] = labels[:, :-1]
    return shifted.astype(np.int64)


def test_confident_labels_refine_the_fg_and_the_bg_maps_each_before_combining(monkeypatch):
    calls = []

    def fake_crf(image, labels, num_labels, iterations):
        calls.append((labels.tolist(), num_labels, iterations))
        return _shift_right(image, labels, num_labels, iterations)

    monkeypatch.setattr(label_maps, "crf_refine_labels", fake_crf)
    scores = np.array([[[0.75, 0.375, 0.125, 0.625]]], np.float32)  # one class, key 7
    labels = confident_labels(_image(1, 4), scores, np.array([7]), FG, BG, crf_iterations=3)

    # fg map (> 0.5) [1, 0, 0, 1], bg map (> 0.25) [1, 1, 0, 1]; each gets the CRF once,
    # with background + 1 class = 2 labels and the iterations asked for
    assert sorted(calls) == [([[1, 0, 0, 1]], 2, 3), ([[1, 1, 0, 1]], 2, 3)]
    # refined: fg [1, 1, 0, 0], bg [1, 1, 1, 0]. A class where the refined fg map has
    # one (pixel 1 would be ignored without CRF), background where both refined maps say
    # background (pixel 3 would be 7), ignore where only the bg map has a class (pixel 2
    # would be background)
    assert labels.tolist() == [[7, 7, I, 0]]


def test_pseudo_labels_threshold_argmax_then_crf(monkeypatch):
    scores = np.array(
        [[[0.625, 0.375, 0.25, 0.0]], [[0.5, 0.125, 0.75, 0.25]]], np.float32
    )  # keys 8, 2; threshold 0.25
    keys = np.array([8, 2])
    # best 0.625 -> 8; 0.375 -> 8; 0.75 -> 2; best 0.25 = the threshold -> background
    assert pseudo_labels(_image(1, 4), scores, keys, 0.25, crf_iterations=0).tolist() == [
        [8, 8, 2, 0]
    ]

    calls = []

    def fake_crf(image, labels, num_labels, iterations):
        calls.append((labels.tolist(), num_labels, iterations))
        return _shift_right(image, labels, num_labels, iterations)

    monkeypatch.setattr(label_maps, "crf_refine_labels", fake_crf)
    labels = pseudo_labels(_image(1, 4), scores, keys, 0.25, crf_iterations=1)
    # the CRF sees class indices (0 = background, 1..K), keys are applied after it
    assert calls == [([[1, 1, 2, 0]], 3, 1)]
    assert labels.dtype == np.uint8 and labels.tolist() == [[8, 8, 8, 2]]


def test_label_maps_do_not_change_their_inputs():
    scores = np.array([[[0.75, 0.375], [0.125, 0.0]]], np.float32)
    keys = np.array([4])
    image = _image(2, 2)
    copies = scores.copy(), keys.copy(), image.copy()
    confident_labels(image, scores, keys, FG, BG, 0)
    pseudo_labels(image, scores, keys, 0.25, 0)
    threshold_argmax(scores, 0.25)
    for before, after in zip(copies, (scores, keys, image), strict=True):
        np.testing.assert_array_equal(before, after)


@pytest.mark.skipif(not crf_available(), reason="needs pydensecrf2")
def test_the_dense_crf_keeps_labels_that_follow_the_image():
    # the left half red, the right half blue; the class scores agree with the colours, so
    # the real CRF has nothing to move: the labels are those without CRF
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, :8] = (220, 40, 40)
    image[:, 8:] = (40, 60, 220)
    scores = np.zeros((2, 16, 16), np.float32)
    scores[0, :, :8] = 0.875
    scores[1, :, 8:] = 0.875
    keys = np.array([1, 2])
    expected = np.where(np.arange(16) < 8, 1, 2)[None].repeat(16, axis=0)
    np.testing.assert_array_equal(confident_labels(image, scores, keys, FG, BG, 10), expected)
    np.testing.assert_array_equal(pseudo_labels(image, scores, keys, 0.25, 1), expected)
