"""CAM inference throughput: images/s of the multi-scale + flip CAM pass.

Compares PyTorch float32 (contiguous and channels_last), bf16 autocast (``--amp all``,
where the device has it) and every installed inference engine (ONNX Runtime, OpenVINO:
``models.engine``, on the CPU) in the same process, on random images of one size batched
together as the cams stage does; each with its max |difference| from PyTorch float32.

    python bench/bench_cams.py                                   # CPU defaults
    python bench/bench_cams.py --backbone resnet50 --size 512 --batch 8 --amp all
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial
from pathlib import Path

import torch

from puzzlecam.cams.inference import classifier_net, multiscale_cams
from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.models.engine import installed_engines
from puzzlecam.training.distributed import resolve_device
from timing import device_label, median_seconds, offline_weights


def _cams_pass(model, images: torch.Tensor, scales, bf16: bool) -> torch.Tensor:
    """One multi-scale + flip CAM pass, in bf16 autocast when asked: the full-size maps."""
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        return multiscale_cams(model, images, scales, flip=True)[0].float()


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
    torch.manual_seed(0)
    images = torch.randint(
        0, 255, (args.batch, 3, args.size, args.size), dtype=torch.uint8, device=device
    )
    with torch.no_grad():
        reference = _cams_pass(model, images, args.scales, bf16=False)
    print(
        f"device: {name}; {args.backbone}, batch {args.batch} at {args.size}x{args.size}, scales {args.scales} + flip"
    )

    variants = [("fp32", False), ("fp32", True)]
    if args.amp == "all":
        variants += [("bf16", False), ("bf16", True)]
    baseline = None
    print(
        f"{'engine':<13}{'precision':<11}{'layout':<15}{'images/s':>9}{'ratio':>8}{'max |diff|':>12}"
    )
    for precision, channels_last in variants:
        rate = cams_images_per_second(
            model, images, args.scales, precision, channels_last, args.repeats
        )
        baseline = baseline or rate
        layout = "channels_last" if channels_last else "contiguous"
        with torch.no_grad():
            diff = _cams_pass(model, images, args.scales, precision == "bf16") - reference
        print(
            f"{'torch':<13}{precision:<11}{layout:<15}{rate:>9.1f}{rate / baseline:>7.2f}x"
            f"{diff.abs().max().item():>12.1e}"
        )
    model.to(memory_format=torch.contiguous_format)
    engines = installed_engines() if device.type == "cpu" else []
    with tempfile.TemporaryDirectory() as folder:
        for engine in engines:
            started = time.perf_counter()
            net = classifier_net(model, engine, Path(folder) / f"{engine}.onnx")
            exported = time.perf_counter() - started
            one_pass = partial(_cams_pass, net, images, args.scales, bf16=False)
            rate = len(images) / median_seconds(one_pass, device, args.repeats, warmup=1)
            diff = (one_pass() - reference).abs().max().item()
            print(
                f"{engine:<13}{'fp32':<11}{'graph':<15}{rate:>9.1f}{rate / baseline:>7.2f}x"
                f"{diff:>12.1e}   (export + compile {exported:.0f} s, once per model)"
            )
    if device.type == "cpu" and not engines:
        print("no inference engine installed: pip install 'puzzlecam[onnx]' (or [openvino])")


if __name__ == "__main__":
    main()
