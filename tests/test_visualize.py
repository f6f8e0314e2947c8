"""Label colours and array resizing, each defined once for every picture."""

import numpy as np

from puzzlecam.io import voc_palette
from puzzlecam.visualize import colorize_labels, label_colour, resize_array


def test_label_colour_is_the_palette_that_label_pngs_carry():
    palette = voc_palette()
    for value in (0, 1, 20, 255):
        assert label_colour(value) == tuple(palette[3 * value : 3 * value + 3])
        assert tuple(colorize_labels(np.array([[value]], np.uint8))[0, 0]) == label_colour(value)


def test_resize_array_takes_sizes_as_height_width():
    labels = np.zeros((4, 6), np.uint8)
    labels[:, 3:] = 7
    before = labels.copy()
    wide = resize_array(labels, (2, 12), "nearest")
    assert wide.shape == (2, 12) and wide.dtype == np.uint8
    assert set(wide[:, :6].ravel()) == {0} and set(wide[:, 6:].ravel()) == {7}
    np.testing.assert_array_equal(labels, before)
    assert resize_array(np.zeros((5, 3, 3), np.uint8), (10, 6)).shape == (10, 6, 3)
    heat = resize_array(np.ones((3, 5), np.float64), (6, 10), "bicubic")
    assert heat.shape == (6, 10) and heat.dtype == np.float32
    assert resize_array(labels, (4, 6)) is labels  # already that size
