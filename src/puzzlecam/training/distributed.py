"""Process-group context: one process by default, DDP under torchrun."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from puzzlecam.errors import ConfigError

__all__ = [
    "DistContext",
    "init_distributed",
    "device_problem",
    "resolve_device",
    "barrier",
    "shard",
    "maybe_no_sync",
]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


_DEVICE_HELP = "use auto, cpu, cuda, cuda:N (N = 0, 1, ...) or mps"


def device_problem(name: str) -> str | None:
    """Why ``name`` is not a device name (``auto``, ``cpu``, ``cuda``, ``cuda:1``, ``mps``),
    or None. Only the spelling: whether the device is there is ``resolve_device``'s check."""
    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        return f"{name!r} is not a device; {_DEVICE_HELP}"
    if device.type not in ("cpu", "cuda", "mps"):
        return f"{name!r}: puzzlecam runs on cpu, cuda or mps; {_DEVICE_HELP}"
    return None


def resolve_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """``auto``: this process's CUDA device when there is one, else the CPU.

    Raises ConfigError (before anything runs) for a misspelt device or one this machine
    does not have.
    """
    problem = device_problem(name)
    if problem is not None:
        raise ConfigError(f"device: {problem}")
    if name == "auto":
        return (
            torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
        )
    device = torch.device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"device: {name!r} asks for a GPU, but torch sees no CUDA device here "
                f"(torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'}); "
                "use --device cpu, or auto to take a GPU only when there is one"
            )
        if device.index >= count:
            raise ConfigError(
                f"device: {name!r} does not exist; this machine has {count} CUDA device(s), "
                f"cuda:0..cuda:{count - 1}"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device: {name!r}: MPS is not available here; use cpu or auto")
    return device


def init_distributed(device: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment (if any).

    Backend: NCCL on CUDA, gloo on the CPU. Without torchrun's variables this is a
    one-process context and no process group is made. On CUDA the device becomes the
    process's current device.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if resolved.type == "cuda":
        # also with one process: the loaders' pinned memory and the bf16 check use the
        # current device, which would otherwise be cuda:0 under --device cuda:1
        torch.cuda.set_device(resolved)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if resolved.type == "cuda" else "gloo")
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=resolved)


def barrier(context: DistContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.barrier()


def shard(items: list, context: DistContext) -> list:
    """This rank's share of a list (every item in exactly one rank, order kept)."""
    return items[context.rank :: context.world_size]


@contextlib.contextmanager
def maybe_no_sync(model: torch.nn.Module, skip_sync: bool) -> Iterator[None]:
    """DDP's no_sync() for accumulation micro-steps; a no-op for plain modules."""
    if skip_sync and hasattr(model, "no_sync"):
        with model.no_sync():
            yield
    else:
        yield
