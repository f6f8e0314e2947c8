"""Puzzle-CAM training step against its limit, and AMP / channels_last / DDP throughput.

The puzzle step runs the network on the full batch and on its tiles, then backpropagates
both: its natural limit is a plain step on the full batch plus a plain step on the tiles,
measured here in the same process. Prints seconds per step, images/s and the ratios.

    python bench/bench_puzzle_step.py                        # CPU defaults (Lite0, 128 px)
    python bench/bench_puzzle_step.py --backbone resnet50 --size 512 --batch 16 --amp all
    python bench/bench_puzzle_step.py --ddp 2                # scaling from 1 to 2 processes
"""

from __future__ import annotations

import argparse
import os
import socket

import torch
import torch.multiprocessing as mp

from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.puzzle.losses import PuzzleConfig, classification_loss
from puzzlecam.puzzle.tiling import tile
from puzzlecam.puzzle.trainer import PuzzleCamTrainer
from puzzlecam.training.distributed import resolve_device
from timing import device_label, median_seconds, offline_weights


def _setup(args, device: torch.device, channels_last: bool):
    torch.manual_seed(0)
    pretrained = offline_weights(args.backbone)
    model = CamClassifier(BackboneConfig(args.backbone, pretrained, args.norm), 20).to(device)
    images = torch.randint(
        0, 255, (args.batch, 3, args.size, args.size), dtype=torch.uint8, device=device
    )
    targets = (torch.rand(args.batch, 20, device=device) < 0.15).float()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    return model, images, targets, optimizer


def measure(args, device: torch.device, amp: str, channels_last: bool) -> dict[str, float]:
    model, images, targets, optimizer = _setup(args, device, channels_last)
    trainer = PuzzleCamTrainer(model, PuzzleConfig(grid=args.grid, alpha_max=4.0))
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == "fp16")
    tiles = tile(images, args.grid)
    tile_targets = targets.repeat(args.grid * args.grid, 1)

    def run(loss_fn):
        def step():
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(
                device.type, dtype=dtype or torch.float32, enabled=dtype is not None
            ):
                loss = loss_fn()
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()

        return step

    puzzle = median_seconds(
        run(lambda: trainer(images, targets, progress=1.0).total), device, args.repeats
    )
    full = median_seconds(
        run(lambda: classification_loss(model(images).logits, targets)), device, args.repeats
    )
    tiled = median_seconds(
        run(lambda: classification_loss(model(tiles).logits, tile_targets)), device, args.repeats
    )
    return {"puzzle": puzzle, "full": full, "tiles": tiled}


def _ddp_worker(rank: int, world: int, port: int, args, queue) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world)
    )
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{rank}") if cuda else torch.device("cpu")
    if not cuda:
        torch.set_num_threads(max(1, args.threads // world))
    torch.distributed.init_process_group("nccl" if cuda else "gloo", rank=rank, world_size=world)
    model, images, targets, optimizer = _setup(args, device, channels_last=False)
    trainer = torch.nn.parallel.DistributedDataParallel(
        PuzzleCamTrainer(model, PuzzleConfig(grid=args.grid)), device_ids=[rank] if cuda else None
    )

    def step():
        optimizer.zero_grad(set_to_none=True)
        trainer(images, targets, progress=1.0).total.backward()
        optimizer.step()

    seconds = median_seconds(step, device, args.repeats)
    if rank == 0:
        queue.put(seconds)
    torch.distributed.destroy_process_group()


def ddp_images_per_second(args, world: int) -> float:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_ddp_worker, args=(world, port, args, queue), nprocs=world, join=True)
    return world * args.batch / queue.get()  # every process runs args.batch images per step


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backbone", default="tf_efficientnet_lite0")
    parser.add_argument("--norm", default="fix", choices=["fix", "train"])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--grid", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--amp", default="off", choices=["off", "bf16", "fp16", "all"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument(
        "--ddp", type=int, default=0, help="also measure DDP with this many processes"
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    name = device_label(device)
    print(
        f"device: {name}; {args.backbone} ({args.norm} BN), batch {args.batch} at {args.size}x{args.size}, grid {args.grid}"
    )

    variants = [("off", False)]
    if args.amp == "all":
        variants = [("off", False), ("off", True), ("bf16", False), ("bf16", True), ("fp16", True)]
    elif args.amp != "off":
        variants = [("off", False), (args.amp, True)]
    baseline = None
    print(f"{'precision':<10}{'layout':<15}{'puzzle s':>10}{'full s':>9}{'tiles s':>9}{'limit s':>9}"
          f"{'puzzle/limit':>14}{'img/s':>9}{'vs fp32':>9}")  # fmt: skip
    for amp, channels_last in variants:
        if amp == "fp16" and device.type != "cuda":
            continue
        t = measure(args, device, amp, channels_last)
        limit = t["full"] + t["tiles"]
        rate = args.batch / t["puzzle"]
        baseline = baseline or rate
        layout = "channels_last" if channels_last else "contiguous"
        print(f"{'fp32' if amp == 'off' else amp:<10}{layout:<15}{t['puzzle']:>10.3f}{t['full']:>9.3f}"
              f"{t['tiles']:>9.3f}{limit:>9.3f}{t['puzzle'] / limit:>14.2f}{rate:>9.1f}{rate / baseline:>8.2f}x")  # fmt: skip
    if args.ddp > 1:
        one = ddp_images_per_second(args, 1)
        many = ddp_images_per_second(args, args.ddp)
        print(f"DDP scaling (fp32, {args.batch} images per process per step): 1 process {one:.1f} img/s, "
              f"{args.ddp} processes {many:.1f} img/s, speed-up {many / one:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
