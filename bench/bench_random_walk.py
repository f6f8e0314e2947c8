"""Sparse random walk (puzzlecam) against the reference's dense random walk.

For each stride-4 size it times ``puzzlecam.affinity.random_walk`` and, where it fits,
a dense walk written here the reference's way (``propagate_to_edge`` /
``to_transition_matrix``: the (hw, hw) affinity matrix, A**beta, column-normalised,
squared ``exp_times`` times in float32, then one product), on the same random inputs,
and compares the max-normalised outputs.

Every method and size runs in a fresh subprocess, so that its peak memory can be read
from the process itself: "peak RSS" is how much ``resource.getrusage().ru_maxrss`` (the
process's high-water mark of resident memory) grew while the method ran, measured from
just before its first run after a tiny warm-up call. It counts everything the method
touched, allocator slack included, which tensor-size arithmetic would miss; the main
tensor sizes are printed next to it for comparison.

    .venv/bin/python bench/bench_random_walk.py                 # 48x48, 80x80, 125x94
    .venv/bin/python bench/bench_random_walk.py --dense-max-pixels 0   # sparse only
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from puzzlecam.affinity import boundary_to_affinity, random_walk, search_directions

BETA, EXP_TIMES, RADIUS = 10, 8, 5  # the reference's inference_rw settings


def make_inputs(
    height: int, width: int, classes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random CAMs (C, h, w) and a boundary map (h, w) with thin ridges.

    Boundaries sit on the zero set of a smooth random field (as object outlines would),
    CAMs are smooth blobs scaled to a max of 1 per class, like real normalised CAMs.
    """
    generator = torch.Generator().manual_seed(seed)

    def smooth_field(channels: int) -> torch.Tensor:
        coarse = torch.randn(1, channels, height // 8 + 2, width // 8 + 2, generator=generator)
        field = F.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)[0]
        return field / field.std()

    boundary = torch.exp(-((smooth_field(1)[0] / 0.15) ** 2)).clamp(0, 1)  # (h, w)
    cams = smooth_field(classes).relu()  # (C, h, w)
    cams = cams / cams.amax(dim=(1, 2), keepdim=True).clamp_min(1e-6)
    return cams, boundary


def dense_random_walk(cams: torch.Tensor, boundary: torch.Tensor) -> torch.Tensor:
    """The reference's method: dense (hw)^2 transition, squared EXP_TIMES times (float32)."""
    channels, height, width = cams.shape
    pixels = height * width
    # Pair affinities as the reference's edge_to_affinity gives them, then scattered into
    # a dense matrix with both directions and a unit diagonal (affinity_sparse2dense).
    affinity, valid = boundary_to_affinity(boundary[None], RADIUS)
    index = torch.arange(pixels).view(height, width)
    dense = torch.eye(pixels)
    for d, (dy, dx) in enumerate(search_directions(RADIUS)):
        ys, xs = torch.nonzero(valid[d], as_tuple=True)
        first, second = index[ys, xs], index[ys + dy, xs + dx]
        dense[first, second] = affinity[0, d, ys, xs]
        dense[second, first] = affinity[0, d, ys, xs]
    # to_transition_matrix: A^beta, column-normalised, squared exp_times times.
    transition = dense**BETA
    transition = transition / transition.sum(dim=0, keepdim=True)
    for _ in range(EXP_TIMES):
        transition = transition @ transition
    x = (cams * (1 - boundary)).reshape(channels, pixels)
    return (x @ transition).reshape(channels, height, width)


def worker(args: argparse.Namespace) -> None:
    """Run one method at one size in this process; print timings and memory as JSON."""
    torch.set_num_threads(args.threads)
    height, width = args.size
    cams, boundary = make_inputs(height, width, args.classes, args.seed)
    method = {"sparse": random_walk, "dense": dense_random_walk}[args.worker]
    with torch.no_grad():
        method(*make_inputs(4, 4, args.classes, args.seed))  # load kernels, thread pools
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
        seconds = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = method(cams, boundary)
            seconds.append(time.perf_counter() - start)
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    np.save(args.out, result.numpy())
    print(json.dumps({"seconds": seconds, "peak_rss_mib": (rss_after - rss_before) / 1024}))


def run_worker(method: str, size: tuple[int, int], repeats: int, out: Path, args) -> dict:
    command = [
        sys.executable, __file__, "--worker", method, "--size", f"{size[0]}x{size[1]}",
        "--repeats", str(repeats), "--out", str(out), "--threads", str(args.threads),
        "--classes", str(args.classes), "--seed", str(args.seed),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{method} at {size} failed:\n{done.stderr}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    report["median"] = statistics.median(report["seconds"])
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="48x48,80x80,125x94", help="HxW at stride 4")
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5, help="runs of the sparse walk")
    parser.add_argument("--dense-repeats", type=int, default=1, help="runs of the dense walk")
    parser.add_argument(
        "--dense-max-pixels",
        type=int,
        default=80 * 80,
        help="skip the dense walk above this many pixels (O((hw)^3) time, (hw)^2 memory)",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", choices=["sparse", "dense"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=parse_size, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return

    sizes = [parse_size(s) for s in args.sizes.split(",")]
    print(
        f"random walk: C={args.classes}, radius {RADIUS}, beta {BETA}, exp_times {EXP_TIMES} "
        f"({2**EXP_TIMES} sparse steps), torch {torch.__version__}, {args.threads} threads, "
        f"seed {args.seed}"
    )
    print("time = median seconds per image; peak RSS = growth of the process's max RSS")
    # Other work on the machine distorts timings (OpenMP threads stall when a core is
    # taken), so say how busy it was.
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for height, width in sizes:
            pixels = height * width
            neighbours = 2 * len(search_directions(RADIUS)) + 1
            print(f"\n{height}x{width} ({pixels} px)")
            sparse = run_worker("sparse", (height, width), args.repeats, Path(tmp, "s.npy"), args)
            weights_mib = neighbours * pixels * 4 / 2**20
            print(
                f"  sparse: {sparse['median']:8.3f} s  (median of {args.repeats}; "
                f"runs {', '.join(f'{s:.3f}' for s in sparse['seconds'])}), "
                f"peak RSS +{sparse['peak_rss_mib']:.1f} MiB "
                f"(weights {neighbours} x {pixels} float32 = {weights_mib:.1f} MiB)"
            )
            row = {"size": f"{height}x{width}", "sparse": sparse["median"], "dense": None}
            if pixels > args.dense_max_pixels:
                print(
                    f"  dense : SKIPPED ({pixels} px > --dense-max-pixels {args.dense_max_pixels};"
                    f" it would hold {pixels**2 * 4 / 2**20:.0f} MiB per (hw)^2 matrix)"
                )
            else:
                dense = run_worker(
                    "dense", (height, width), args.dense_repeats, Path(tmp, "d.npy"), args
                )
                a = np.load(Path(tmp, "s.npy")).astype(np.float64)
                b = np.load(Path(tmp, "d.npy")).astype(np.float64)
                difference = float(np.abs(a / a.max() - b / b.max()).max())
                ratio = dense["median"] / sparse["median"]
                print(
                    f"  dense : {dense['median']:8.3f} s  (median of {args.dense_repeats}), "
                    f"peak RSS +{dense['peak_rss_mib']:.1f} MiB "
                    f"(one (hw)^2 float32 matrix = {pixels**2 * 4 / 2**20:.0f} MiB)"
                )
                print(
                    f"  sparse is {ratio:.0f}x faster; max |difference| normalised {difference:.2e}"
                )
                row.update(dense=dense["median"], ratio=ratio, difference=difference)
            rows.append(row)

    print("\nload average at end: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    print("size      sparse s   dense s   speed-up   max |diff|")
    for row in rows:
        if row["dense"] is None:
            print(f"{row['size']:<9} {row['sparse']:8.3f}   {'skipped':>7}")
        else:
            print(
                f"{row['size']:<9} {row['sparse']:8.3f}  {row['dense']:8.2f}  "
                f"{row['ratio']:8.0f}x   {row['difference']:.1e}"
            )
    by_size = {row["size"]: row for row in rows}
    if "80x80" in by_size and by_size["80x80"]["dense"] is not None:
        row = by_size["80x80"]
        met = row["ratio"] >= 100 and row["difference"] <= 1e-4
        print(f"target 80x80 >= 100x faster, same result: {'met' if met else 'NOT met'}")
    if "125x94" in by_size:
        met = by_size["125x94"]["sparse"] < 1.0
        print(f"target 125x94 under 1 s per image: {'met' if met else 'NOT met'}")


def parse_size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


if __name__ == "__main__":
    main()
