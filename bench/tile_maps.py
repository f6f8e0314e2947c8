"""What the puzzle's tiles see: CAM mIoU of the full image's class maps against the merged
tile maps, for a trained classifier of a run.

L_re pulls the full image's raw class maps towards the merged maps of its g x g tiles. It
can only make the CAMs better where the merged maps are better than the full ones (the
paper's story: tiles force the classifier to answer on the object's less discriminative
parts, so the merged maps cover more of it). This measures both, single scale, no flip,
with the evaluation the pipeline uses (ReLU, tagged classes, each map divided by its
maximum, bilinear to the image, the background-threshold sweep 0.05...0.95), and their
raw values inside the objects, within ``--margin`` px around them, and further away.

``--scale`` resizes the images before the classifier sees them (1 = as trained): larger
objects in pixels, relative to the network's receptive field, at the same tile grid.

    .venv/bin/python bench/tile_maps.py RUN [--branch puzzle_cam] [--split train]
        [--limit 200] [--scale 1.0] [--grid 2] [--tile-scale 1.0] [--margin 16]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from puzzlecam.cams.inference import normalize_cams
from puzzlecam.cams.scores import ScoreMaps, save_scores
from puzzlecam.data.ids import id_path
from puzzlecam.data.voc import read_voc
from puzzlecam.io import load_image, load_label_png
from puzzlecam.metrics import DEFAULT_THRESHOLDS, evaluate_directory
from puzzlecam.pipeline.config import load_run_config
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.pipeline.trained import load_classifier
from puzzlecam.puzzle.tiling import merge_onto, scale_tiles, tile


def full_and_merged_maps(
    model: torch.nn.Module, image: torch.Tensor, grid: int, tile_scale: float = 1.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw class maps of one image (1, 3, H, W): the full image's and its tiles' merged
    (each tile resized by ``tile_scale`` first, as ``puzzle.tile_scale``), both (C, h, w)
    on the full image's grid."""
    full = model(image).cams
    tiles = scale_tiles(tile(image, grid), tile_scale)
    merged = merge_onto(model(tiles).cams, grid, full.shape[-2:])
    return full[0], merged[0]


def region_means(maps: torch.Tensor, mask: np.ndarray, keys: np.ndarray, margin: int) -> list:
    """Per tagged class: mean raw value (inside, within ``margin`` px outside, further away)
    of ``maps`` (C, H, W) already at the mask's size."""
    rows = []
    for key in keys:
        inside = torch.from_numpy(mask == key)
        if not inside.any():
            continue
        grown = F.max_pool2d(inside[None, None].float(), 2 * margin + 1, 1, margin)[0, 0] > 0
        values = maps[key - 1]
        far = ~grown
        rows.append(
            (
                values[inside].mean().item(),
                values[grown & ~inside].mean().item() if (grown & ~inside).any() else np.nan,
                values[far].mean().item() if far.any() else np.nan,
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run (or an ablate sub-run) with a classifier")
    parser.add_argument("--branch", default="puzzle_cam", help="the classifier's branch")
    parser.add_argument("--split", default="train")
    parser.add_argument("--limit", type=int, default=200, help="first N images with masks")
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--grid", type=int, default=2)
    parser.add_argument(
        "--tile-scale", type=float, default=1.0, help="resize each tile first (E44)"
    )
    parser.add_argument("--margin", type=int, default=16, help="px around the objects")
    args = parser.parse_args()

    config = load_run_config(args.run / "config.yaml")
    split = read_voc(config.data.root, args.split).with_masks()
    samples = split.samples[: args.limit]
    model = load_classifier(RunDir(args.run), config, args.branch, len(split.classes))
    regions: dict[str, list] = {"full": [], "merged": []}
    with tempfile.TemporaryDirectory(prefix="tile_maps_") as tmp, torch.no_grad():
        folders = {name: Path(tmp) / name for name in regions}
        for sample in samples:
            pixels = np.array(load_image(sample.image_path))  # writable, for torch
            mask = load_label_png(sample.mask_path)
            image = torch.from_numpy(pixels).permute(2, 0, 1)[None].float()
            if args.scale != 1.0:
                image = F.interpolate(
                    image, scale_factor=args.scale, mode="bilinear", align_corners=False
                )
            for name, maps in zip(
                regions, full_and_merged_maps(model, image, args.grid, args.tile_scale), strict=True
            ):
                up = F.interpolate(
                    maps[None], size=mask.shape, mode="bilinear", align_corners=False
                )[0]
                regions[name] += region_means(up, mask, sample.keys, args.margin)
                tagged = normalize_cams(F.relu(up[sample.keys - 1]))
                save_scores(
                    id_path(folders[name], sample.image_id, ".npz"),
                    ScoreMaps(sample.keys, tagged.numpy()),
                )
        print(
            f"{args.run} ({args.branch}), {args.split}: {len(samples)} images, scale "
            f"{args.scale}, grid {args.grid}, tiles at x{args.tile_scale:g}, single scale, no flip"
        )
        print(
            f"{'maps':8s} {'mIoU':>6s} {'thr':>5s} {'FP':>5s} {'FN':>5s}   raw value: "
            f"inside / within {args.margin} px / further"
        )
        for name, folder in folders.items():
            result = evaluate_directory(
                folder,
                {s.image_id: s.mask_path for s in samples},
                split.classes,
                [s.image_id for s in samples],
                DEFAULT_THRESHOLDS,
                progress=False,
                num_workers=0,
            )
            inside, near, far = np.nanmean(np.asarray(regions[name]), axis=0)
            print(
                f"{name:8s} {100 * result.miou:6.1f} {result.threshold:5.2f} "
                f"{result.scores.mean_fp:5.2f} {result.scores.mean_fn:5.2f}   "
                f"{inside:6.2f} / {near:6.2f} / {far:6.2f}"
            )


if __name__ == "__main__":
    main()
