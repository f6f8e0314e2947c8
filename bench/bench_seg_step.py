"""DeepLabV3+ training step: float32 against channels_last and bf16 autocast, same process.

The segmentation stage's step as the demo runs it (the model, its loss with 255 ignored,
AdamW over the four parameter groups) on random images and labels. Prints seconds per
step, images/s and the ratio to float32 in the contiguous layout.

    python bench/bench_seg_step.py                          # CPU defaults (Lite0, 128 px)
    python bench/bench_seg_step.py --backbone resnet50 --size 512 --batch 8 --amp all
"""

from __future__ import annotations

import argparse

import torch

from puzzlecam.constants import IGNORE_INDEX
from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.segmentation.trainer import SegmentationTrainer
from puzzlecam.training.distributed import resolve_device
from puzzlecam.training.optim import OptimConfig, build_optimizer, parameter_groups
from timing import device_label, median_seconds, offline_weights


def measure(args, device: torch.device, amp: str, channels_last: bool) -> float:
    """Median seconds per step of a fresh model (same seed) in one precision and layout."""
    torch.manual_seed(0)
    pretrained = offline_weights(args.backbone)
    model = Segmenter(BackboneConfig(args.backbone, pretrained, args.norm), args.labels)
    trainer = SegmentationTrainer(model).to(device)
    images = torch.randint(0, 255, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    labels = torch.randint(0, args.labels, (args.batch, args.size, args.size))
    labels[:, : args.size // 8] = IGNORE_INDEX  # some ignored pixels, as pseudo labels have
    images, labels = images.to(device), labels.to(device)
    if channels_last:
        trainer = trainer.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optim = OptimConfig(name=args.optim, lr=3e-4)
    optimizer = build_optimizer(parameter_groups(model, model.new_modules, optim), optim)
    dtype = {"bf16": torch.bfloat16}.get(amp)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = trainer(images, labels).total
        loss.backward()
        optimizer.step()

    return median_seconds(step, device, args.repeats)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--norm", default="fix", choices=["fix", "train"])
    parser.add_argument("--optim", default="adamw", choices=["sgd", "adamw"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--labels", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="off", choices=["off", "all"])
    args = parser.parse_args()
    device = resolve_device(args.device)
    name = device_label(device)
    print(
        f"device: {name}; DeepLabV3+ {args.backbone} ({args.norm} BN), {args.optim}, "
        f"batch {args.batch} at {args.size}x{args.size}"
    )
    variants = [("fp32", False), ("fp32", True)]
    if args.amp == "all":
        variants += [("bf16", False), ("bf16", True)]
    baseline = None
    print(f"{'precision':<10}{'layout':<15}{'step s':>9}{'img/s':>9}{'vs fp32':>9}")
    for precision, channels_last in variants:
        seconds = measure(args, device, precision, channels_last)
        rate = args.batch / seconds
        baseline = baseline or rate
        layout = "channels_last" if channels_last else "contiguous"
        print(f"{precision:<10}{layout:<15}{seconds:>9.3f}{rate:>9.1f}{rate / baseline:>8.2f}x")


if __name__ == "__main__":
    main()
