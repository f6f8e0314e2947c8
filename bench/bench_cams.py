"""CAM inference throughput: images/s of the multi-scale + flip CAM pass.

Compares float32 with bf16 autocast and channels_last (where the device has them) in the
same process, on random images of one size batched together, as the cams stage does.

    python bench/bench_cams.py                                   # CPU defaults
    python bench/bench_cams.py --backbone resnet50 --size 512 --batch 8 --amp all
"""

from __future__ import annotations

import argparse
from functools import partial

import torch

from puzzlecam.cams.inference import multiscale_cams
from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.training.distributed import resolve_device
from timing import device_label, median_seconds, offline_weights


def _cams_pass(model: CamClassifier, images: torch.Tensor, scales, bf16: bool) -> None:
    """One multi-scale + flip CAM pass, in bf16 autocast when asked."""
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        multiscale_cams(model, images, scales, flip=True)


def cams_images_per_second(
    model: CamClassifier,
    images: torch.Tensor,
    scales,
    precision: str,
    channels_last: bool,
    repeats: int,
) -> float:
    """Images/s of the CAM pass over ``images`` (B, 3, H, W) in ``precision`` (fp32 or
    bf16) and the given memory layout; leaves ``model`` in that layout."""
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    batch = images.contiguous(memory_format=layout)
    one_pass = partial(_cams_pass, model, batch, scales, bf16=precision == "bf16")
    return len(images) / median_seconds(one_pass, images.device, repeats, warmup=1)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--scales", type=float, nargs="+", default=[0.5, 1.0, 1.5, 2.0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="off", choices=["off", "all"])
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = device_label(device)
    pretrained = offline_weights(args.backbone)
    model = CamClassifier(BackboneConfig(args.backbone, pretrained, "fix"), 20).to(device).eval()
    images = torch.randint(
        0, 255, (args.batch, 3, args.size, args.size), dtype=torch.uint8, device=device
    )
    print(
        f"device: {name}; {args.backbone}, batch {args.batch} at {args.size}x{args.size}, scales {args.scales} + flip"
    )

    variants = [("fp32", False)]
    if args.amp == "all":
        variants += [("fp32", True), ("bf16", False), ("bf16", True)]
    baseline = None
    for precision, channels_last in variants:
        rate = cams_images_per_second(
            model, images, args.scales, precision, channels_last, args.repeats
        )
        baseline = baseline or rate
        layout = "channels_last" if channels_last else "contiguous"
        print(f"{precision:<6}{layout:<15}{rate:>9.1f} images/s{rate / baseline:>8.2f}x vs fp32")


if __name__ == "__main__":
    main()
