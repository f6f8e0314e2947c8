"""A no-learning baseline for CAM mIoU: colour contrast against the image's border.

The demo benchmark is meant to show that learned CAMs find objects. A map that knows
nothing about the classes but still scores well would mean the benchmark only tests
"what differs from the background", so this script measures such a map, and plain CAM
should stay clearly above it (at least 10 mIoU points).

Per image (no training, no parameters fitted to the data set):
1. background colours: the pixels of a border band (the outer ``--border`` pixels of
   each side) clustered into ``--colours`` RGB colours by a few k-means steps (started
   at evenly spaced brightness ranks, so the result is deterministic);
2. saliency: each pixel's RGB Euclidean distance to the nearest of those colours,
   smoothed by a Gaussian of ``--sigma`` pixels and divided by its max, an (H, W) map in
   [0, 1] (all zeros for an image of one colour);
3. classes from the image's true tags (read by ``read_voc``, as the pipeline does):
   every tagged class gets the same saliency map. With two tags the two channels tie and
   the evaluator's argmax gives every foreground pixel to the first (the lower label
   value), so the other class scores nothing there: that is the honest baseline, with
   the tags as the only class information and no localisation of one class over another.

The maps are written as score files (``save_scores``, one ``{id}.npz`` per image, like
the CAM stage's) and scored by ``evaluate_directory`` over the same background-threshold
sweep (0.05...0.95) as the pipeline's ``evaluate_scores``.

    .venv/bin/python bench/saliency_baseline.py [--root data/demo] [--split val]
        [--border 8] [--colours 4] [--sigma 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from puzzlecam.cams.scores import ScoreMaps, save_scores
from puzzlecam.data.ids import id_path
from puzzlecam.data.voc import read_voc
from puzzlecam.io import load_image
from puzzlecam.metrics import DEFAULT_THRESHOLDS, evaluate_directory, format_table

_KMEANS_STEPS = 10


def border_colours(image: np.ndarray, border: int, num_colours: int) -> np.ndarray:
    """(k, 3) float32 colours of the border band of ``image`` (H, W, 3), k <= num_colours.

    A few Lloyd steps of k-means on the band's pixels, started at evenly spaced ranks of
    brightness; a cluster that empties keeps its colour.
    """
    height, width = image.shape[:2]
    band = np.ones((height, width), dtype=bool)
    band[border : height - border, border : width - border] = False
    pixels = image[band].astype(np.float32)  # (P, 3)
    ranks = np.argsort(pixels.sum(axis=1), kind="stable")
    start = ranks[np.linspace(0, len(pixels) - 1, min(num_colours, len(pixels))).astype(int)]
    centres = pixels[start].copy()  # (k, 3)
    for _ in range(_KMEANS_STEPS):
        nearest = ((pixels[:, None, :] - centres[None]) ** 2).sum(-1).argmin(axis=1)  # (P,)
        for k in range(len(centres)):
            members = pixels[nearest == k]
            if len(members):
                centres[k] = members.mean(axis=0)
    return centres


def gaussian_blur(array: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W) float32 ``array`` blurred by a separable Gaussian, edges repeated."""
    if sigma <= 0:
        return array.astype(np.float32)
    radius = max(1, int(round(3 * sigma)))
    offsets = np.arange(-radius, radius + 1, dtype=np.float32)
    kernel = np.exp(-0.5 * (offsets / sigma) ** 2)
    kernel /= kernel.sum()
    out = array.astype(np.float32)
    for axis in (0, 1):
        pad = [(0, 0), (0, 0)]
        pad[axis] = (radius, radius)
        windows = np.lib.stride_tricks.sliding_window_view(
            np.pad(out, pad, mode="edge"), len(kernel), axis=axis
        )  # (H, W, 2 * radius + 1)
        out = windows @ kernel
    return out


def saliency_map(image: np.ndarray, border: int, num_colours: int, sigma: float) -> np.ndarray:
    """(H, W) float32 in [0, 1]: distance to the nearest border colour, smoothed, / max."""
    colours = border_colours(image, border, num_colours)  # (k, 3)
    pixels = image.astype(np.float32)  # (H, W, 3)
    distance = np.sqrt(((pixels[:, :, None, :] - colours) ** 2).sum(-1)).min(axis=-1)  # (H, W)
    smooth = gaussian_blur(distance, sigma)
    peak = float(smooth.max())
    return smooth / peak if peak > 0 else np.zeros_like(smooth)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], epilog="See the module docstring for the method."
    )
    parser.add_argument("--root", type=Path, default=Path("data/demo"), help="VOC-layout root")
    parser.add_argument("--split", default="val")
    parser.add_argument("--border", type=int, default=8, help="width of the border band (px)")
    parser.add_argument("--colours", type=int, default=4, help="k-means background colours")
    parser.add_argument("--sigma", type=float, default=2.0, help="Gaussian smoothing (px)")
    parser.add_argument("--out", type=Path, help="keep the score files here (default: temp dir)")
    args = parser.parse_args()
    if args.border < 1 or args.colours < 1 or args.sigma < 0:
        parser.error("--border and --colours must be at least 1, --sigma at least 0")

    split = read_voc(args.root, args.split)
    scored = split.with_masks().samples
    if not scored:
        parser.error(f"split '{args.split}' of {args.root} has no ground-truth masks")
    with tempfile.TemporaryDirectory(prefix="saliency_baseline_") as tmp:
        out = args.out if args.out is not None else Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        for sample in split.samples:
            image = np.asarray(load_image(sample.image_path))  # (H, W, 3) uint8
            saliency = saliency_map(image, args.border, args.colours, args.sigma)
            scores = np.repeat(saliency[None], len(sample.tags), axis=0)  # (K, H, W)
            save_scores(id_path(out, sample.image_id, ".npz"), ScoreMaps(sample.keys, scores))
        made = time.perf_counter() - start
        result = evaluate_directory(
            out,
            {s.image_id: s.mask_path for s in scored},
            split.classes,
            [s.image_id for s in scored],
            DEFAULT_THRESHOLDS,
            progress=False,
            num_workers=0,
        )
    print(
        f"{args.root} {args.split}: {len(split)} images ({len(split.skipped)} untagged left out), "
        f"border {args.border} px, {args.colours} colours, sigma {args.sigma}; "
        f"maps made in {made:.1f} s" + (f", kept in {args.out}" if args.out else "")
    )
    print(format_table(result, split.classes))
    print(
        f"saliency baseline {args.split}: mIoU {100 * result.miou:.1f} at threshold "
        f"{result.threshold:.2f} ({result.num_images} images)"
    )


if __name__ == "__main__":
    main()
