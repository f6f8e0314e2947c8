"""Prediction throughput: images/s of the segmentation model's multi-scale + flip pass.

The predict stage's work on one image at a time (its scales and flip, without the CRF),
run by PyTorch float32 (contiguous and channels_last) and by every installed inference
engine (``models.engine``: ONNX Runtime, OpenVINO) in the same process, each with its
ratio to PyTorch float32 and its max |difference| of the class probabilities.

    python bench/bench_predict.py                       # the demo's model and settings
    python bench/bench_predict.py --backbone resnet50 --size 512 --scales 1.0 0.5 1.5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.models.engine import installed_engines
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.segmentation.export import segmenter_net
from puzzlecam.segmentation.predict import predict_probs
from timing import device_label, median_seconds, offline_weights


def _predict_all(model, images: list[torch.Tensor], scales) -> torch.Tensor:
    """Each (1, 3, H, W) image's probabilities over ``scales`` x flip, as the stage does."""
    with torch.no_grad():
        return torch.cat([predict_probs(model, image, scales, flip=True) for image in images])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 1.5])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device("cpu")  # the engines run on the CPU; PyTorch on a GPU is the GPU's
    backbone = BackboneConfig(args.backbone, offline_weights(args.backbone), "fix")
    model = Segmenter(backbone, 6, "group").eval()
    torch.manual_seed(0)
    images = [
        torch.randint(0, 255, (1, 3, args.size, args.size), dtype=torch.uint8)
        for _ in range(args.images)
    ]
    print(
        f"device: {device_label(device)}; DeepLabV3+ {args.backbone}, {args.images} images of "
        f"{args.size}x{args.size} one at a time, scales {args.scales} + flip"
    )
    print(f"{'engine':<13}{'layout':<15}{'images/s':>9}{'ratio':>8}{'max |diff|':>12}")
    reference = _predict_all(model, images, args.scales)
    baseline = None
    for layout in (torch.contiguous_format, torch.channels_last):
        model.to(memory_format=layout)
        one = partial(_predict_all, model, [i.contiguous(memory_format=layout) for i in images],
                      args.scales)  # fmt: skip
        rate = args.images / median_seconds(one, device, args.repeats, warmup=1)
        baseline = baseline or rate
        diff = (one() - reference).abs().max().item()
        name = "contiguous" if layout == torch.contiguous_format else "channels_last"
        print(f"{'torch':<13}{name:<15}{rate:>9.1f}{rate / baseline:>7.2f}x{diff:>12.1e}")
    model.to(memory_format=torch.contiguous_format)
    engines = installed_engines()
    with tempfile.TemporaryDirectory() as folder:
        for engine in engines:
            started = time.perf_counter()
            net = segmenter_net(model, engine, Path(folder) / f"{engine}.onnx")
            exported = time.perf_counter() - started
            one = partial(_predict_all, net, images, args.scales)
            rate = args.images / median_seconds(one, device, args.repeats, warmup=1)
            diff = (one() - reference).abs().max().item()
            print(
                f"{engine:<13}{'graph':<15}{rate:>9.1f}{rate / baseline:>7.2f}x{diff:>12.1e}"
                f"   (export + compile {exported:.0f} s, once per model)"
            )
    if not engines:
        print("no inference engine installed: pip install 'puzzlecam[onnx]' (or [openvino])")


if __name__ == "__main__":
    main()
