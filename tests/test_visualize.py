"""Label colours, defined once for every picture."""

import numpy as np

from puzzlecam.io import voc_palette
from puzzlecam.visualize import colorize_labels, label_colour


def test_label_colour_is_the_palette_that_label_pngs_carry():
    palette = voc_palette()
    for value in (0, 1, 20, 255):
        assert label_colour(value) == tuple(palette[3 * value : 3 * value + 3])
        assert tuple(colorize_labels(np.array([[value]], np.uint8))[0, 0]) == label_colour(value)
