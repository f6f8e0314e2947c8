"""The one training loop behind the classifier, AffinityNet and the segmentation model.

A *trainer* is an ``nn.Module`` whose ``forward(*batch, progress=float)`` returns a
``LossOutput``; it owns the model being trained as ``trainer.model``. Keeping the whole
loss computation inside one forward lets DDP wrap it even when the model runs several
times per step (the puzzle module's full image + tiles).

Resumable: a checkpoint (weights, optimiser, position) is written atomically every epoch
and every ``checkpoint_every_steps``; the data order and every augmentation are functions
of (seed, epoch, index), so a resumed run ends with the same weights as one that never
stopped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import torch
from timm.layers import convert_sync_batchnorm
from torch import nn
from torch.utils.data import Dataset, Sampler
from tqdm import tqdm

from puzzlecam.data.loader import CheckedLoader
from puzzlecam.dataclass_yaml import NOT_FINGERPRINTED, require
from puzzlecam.errors import ConfigError, DataError, RunDirError, TrainingError
from puzzlecam.io import append_jsonl, atomic_write, load_tensor_file, read_jsonl
from puzzlecam.training.distributed import DistContext, maybe_no_sync
from puzzlecam.training.optim import OptimConfig, build_optimizer, set_poly_lr

__all__ = ["LoopConfig", "LossOutput", "StepSampler", "fit", "load_weights", "save_weights"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoopConfig:
    """Training-loop settings shared by the three models.

    batch_size is the global batch per optimiser step: processes x per-process batch x
    ``grad_accum`` micro-steps (the paper's 32 = 4 GPUs x 8).

    A step whose loss or gradients are NaN/inf is skipped (no update, a warning); after
    ``max_nonfinite_steps`` such steps in a row training stops with a TrainingError and
    the last checkpoint, which never holds a non-finite step, is kept.
    """

    epochs: int = 15
    batch_size: int = 32
    grad_accum: int = 1
    num_workers: int = 4
    seed: int = 0
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = "auto"
    checkpoint_every_steps: int = 0
    log_every_steps: int = 10
    tensorboard: bool = False
    max_nonfinite_steps: int = field(default=5, metadata=NOT_FINGERPRINTED)

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "grad_accum", "max_nonfinite_steps"):
            value = getattr(self, name)
            require(value >= 1, name, f"must be at least 1, got {value}")
        for name in ("num_workers", "seed", "checkpoint_every_steps", "log_every_steps"):
            value = getattr(self, name)
            require(value >= 0, name, f"must be 0 or more, got {value}")
        require(
            self.batch_size % self.grad_accum == 0,
            "batch_size",
            f"{self.batch_size} is not divisible by grad_accum ({self.grad_accum}); "
            "the global batch is split into grad_accum equal micro-batches",
        )

    def micro_batch(self, world_size: int) -> int:
        per_step = world_size * self.grad_accum
        if self.batch_size % per_step:
            raise ConfigError(
                f"batch_size {self.batch_size} is not divisible by processes ({world_size}) x "
                f"grad_accum ({self.grad_accum}); pick a batch size that is"
            )
        return self.batch_size // per_step


class LossOutput(NamedTuple):
    total: torch.Tensor  # scalar to minimise
    parts: dict[str, torch.Tensor]  # detached scalars for the log


class StepSampler(Sampler[list[int]]):
    """Batches of this process for one epoch: a seeded permutation cut into global batches.

    Global micro-batch m holds ``perm[m*G:(m+1)*G]`` (G = micro batch x processes); rank r
    takes its r-th contiguous slice, so the processes together see exactly what one
    process with the global batch would. The incomplete last batch is dropped (training
    only); ``start_micro`` skips what a resumed run has already done.
    """

    def __init__(
        self,
        num_samples: int,
        micro_batch: int,
        context: DistContext,
        seed: int,
        epoch: int,
        start_micro: int = 0,
    ) -> None:
        self.num_samples, self.micro_batch, self.context = num_samples, micro_batch, context
        self.seed, self.epoch, self.start_micro = seed, epoch, start_micro

    @property
    def global_micro(self) -> int:
        return self.micro_batch * self.context.world_size

    def __len__(self) -> int:
        return self.num_samples // self.global_micro - self.start_micro

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=generator).tolist()
        width = self.global_micro
        for micro in range(self.start_micro, self.num_samples // width):
            block = order[micro * width : (micro + 1) * width]
            rank = self.context.rank
            yield block[rank * self.micro_batch : (rank + 1) * self.micro_batch]


def save_weights(path: Path, model: nn.Module, fingerprint: str, meta: dict | None = None) -> None:
    """Final weights (state dict + the config fingerprint + metadata), atomically."""
    payload = {"state_dict": model.state_dict(), "fingerprint": fingerprint, "meta": meta or {}}
    with atomic_write(path) as handle:
        torch.save(payload, handle)


_OWN_WEIGHTS = (
    "use a model.pt that puzzlecam wrote (runs/NAME/.../model.pt); a damaged one in a run "
    "directory can be deleted to train that stage again"
)


def load_weights(path: Path) -> dict:
    """Read a weights file written by save_weights (no pickle: weights_only=True)."""
    if not Path(path).is_file():
        raise RunDirError(f"{path}: weights file not found (has the training stage finished?)")
    payload = load_tensor_file(path, _OWN_WEIGHTS)
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise DataError(path, f"not a puzzlecam weights file (no state_dict); {_OWN_WEIGHTS}")
    return payload


def _autocast(
    config: LoopConfig, device: torch.device
) -> tuple[contextlib.AbstractContextManager, bool]:
    mode = config.amp
    if mode == "auto":
        mode = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "off"
    if mode == "off":
        return contextlib.nullcontext(), False
    dtype = torch.bfloat16 if mode == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype), mode == "fp16"


def _is_finite(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())


def _grads_finite(optimizer: torch.optim.Optimizer) -> bool:
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def fit(
    trainer: nn.Module,
    dataset: Dataset,
    param_groups: list[dict],
    optim: OptimConfig,
    loop: LoopConfig,
    out_dir: Path,
    fingerprint: str,
    context: DistContext | None = None,
    description: str = "train",
    meta: dict | None = None,
    progress: bool = True,
    sync_batchnorm: bool = False,
    section: str = "",
) -> Path:
    """Train ``trainer.model`` and return the path of its final weights (``model.pt``).

    Files in ``out_dir``: ``checkpoint.pt`` (resume point), ``model.pt`` (final weights),
    ``metrics.jsonl`` (one record per log interval and per epoch), ``tensorboard/``.
    A finished run with the same fingerprint returns at once; a checkpoint from another
    fingerprint is refused. ``sync_batchnorm``: under DDP, BatchNorm statistics are
    computed over the global batch (for models whose BatchNorm trains; CUDA only, as torch's
    SyncBatchNorm: on the CPU each process normalises with its own batch).

    A non-finite step (NaN/inf loss; without fp16 loss scaling also NaN/inf gradients,
    which fp16's GradScaler skips itself) changes nothing: no update, BatchNorm statistics
    restored, a warning. ``loop.max_nonfinite_steps`` of them in a row raise a
    TrainingError and keep the last checkpoint; weights or a checkpoint holding NaN/inf
    are never written. ``section`` (``train_cls``...) names the settings in messages.
    """
    context = context or DistContext()
    out_dir = Path(out_dir)
    weights_path, checkpoint_path, log_path = (
        out_dir / "model.pt",
        out_dir / "checkpoint.pt",
        out_dir / "metrics.jsonl",
    )
    if weights_path.is_file():
        if load_weights(weights_path).get("fingerprint") == fingerprint:
            return weights_path
        raise RunDirError(
            f"{weights_path} was trained with another configuration; use a new run directory"
        )

    device = context.device
    micro_batch = loop.micro_batch(context.world_size)
    steps_per_epoch = len(dataset) // loop.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"{description}: {len(dataset)} training images, fewer than batch_size {loop.batch_size}"
        )
    total_steps = steps_per_epoch * loop.epochs

    torch.manual_seed(loop.seed)
    trainer.to(device)
    channels_last = loop.channels_last == "on" or (
        loop.channels_last == "auto" and device.type == "cuda"
    )
    if channels_last:
        trainer.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(param_groups, optim)
    autocast, use_scaler = _autocast(loop, device)
    scaler = torch.amp.GradScaler(device.type, enabled=use_scaler)

    start_step = 0
    if checkpoint_path.is_file():
        fix = "delete it to start this training stage over"
        state = load_tensor_file(checkpoint_path, fix)
        if not isinstance(state, dict) or not {"model", "optimizer", "step"} <= set(state):
            raise DataError(checkpoint_path, f"not a puzzlecam training checkpoint; {fix}")
        if state.get("fingerprint") != fingerprint:
            raise RunDirError(
                f"{checkpoint_path} belongs to another configuration; use a new run directory "
                "or delete the checkpoint to start over"
            )
        trainer.model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if use_scaler and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        start_step = int(state["step"])
        if context.is_main:  # drop log lines written after the checkpoint
            kept = [r for r in read_jsonl(log_path) if r.get("step", 0) <= start_step]
            with atomic_write(log_path) as handle:
                handle.write("".join(json.dumps(r) + "\n" for r in kept).encode())

    model = trainer
    if context.enabled:
        if sync_batchnorm and device.type == "cuda":  # torch's SyncBatchNorm is CUDA-only
            trainer = convert_sync_batchnorm(trainer)
        model = nn.parallel.DistributedDataParallel(
            trainer, device_ids=[device.index] if device.type == "cuda" else None
        )
    model.train()

    writer = None
    if loop.tensorboard and context.is_main:
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out_dir / "tensorboard"), purge_step=start_step)
        except ImportError:
            logger.warning(
                "tensorboard is not installed: pip install 'puzzlecam[tensorboard]'; "
                "logging to metrics.jsonl only"
            )

    section = section or description
    last_saved = start_step if checkpoint_path.is_file() else None

    def require_finite_weights(target: Path) -> None:
        bad = [n for n, t in trainer.model.state_dict().items() if not _is_finite(t)]
        if bad:
            raise TrainingError(
                f"{description}: {target}: not written: the weights hold NaN/inf ({bad[0]}"
                f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}); lower "
                f"{section}.optim.lr (now {optim.lr}) and train in a new run directory "
                "(--run-dir)"
            )

    def save_checkpoint(step: int) -> None:
        nonlocal last_saved
        if not context.is_main or nonfinite_in_row:  # the last good state is saved already
            return
        require_finite_weights(checkpoint_path)
        state = {
            "model": trainer.model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "fingerprint": fingerprint,
        }
        if use_scaler:
            state["scaler"] = scaler.state_dict()
        with atomic_write(checkpoint_path) as handle:
            torch.save(state, handle)
        last_saved = step

    def stop(first: int, last: int, loss: float | None) -> TrainingError:
        what = f"the loss was {loss}" if loss is not None else "the gradients held NaN/inf"
        kept = (
            f"{checkpoint_path} keeps the last good state (step {last_saved})"
            if last_saved is not None
            else "no checkpoint had been saved yet"
        )
        return TrainingError(
            f"{description}: training stopped: {what} at {last - first + 1} steps in a row "
            f"(steps {first}-{last}, {section}.loop.max_nonfinite_steps = "
            f"{loop.max_nonfinite_steps}); {kept}; lower {section}.optim.lr (now {optim.lr}) "
            "and train in a new run directory (--run-dir), or look for broken images or labels"
        )

    step = start_step
    nonfinite_in_row = 0
    started = time.perf_counter()
    for epoch in range(start_step // steps_per_epoch, loop.epochs):
        done_in_epoch = step - epoch * steps_per_epoch
        if hasattr(dataset, "set_epoch"):
            dataset.set_epoch(epoch)
        sampler = StepSampler(
            len(dataset), micro_batch, context, loop.seed, epoch, done_in_epoch * loop.grad_accum
        )
        loader = CheckedLoader(
            dataset,
            batch_sampler=sampler,
            num_workers=loop.num_workers,
            pin_memory=device.type == "cuda",
            persistent_workers=False,
        )
        torch.manual_seed(loop.seed * 1_000_003 + epoch)  # dropout etc. reproducible per epoch
        bar = tqdm(
            total=steps_per_epoch,
            initial=done_in_epoch,
            desc=f"{description} epoch {epoch + 1}/{loop.epochs}",
            disable=not (progress and context.is_main),
            dynamic_ncols=True,
            leave=False,
        )
        sums: dict[str, float] = {}
        count, epoch_sums, epoch_count, interval_start = 0, {}, 0, time.perf_counter()
        micro, skipped = 0, 0
        for batch in loader:
            if micro == 0:
                lr_factor = set_poly_lr(
                    optimizer, step, total_steps, optim.poly_power, optim.warmup
                )
                optimizer.zero_grad(set_to_none=True)
                step_parts: dict[str, float] = {}
                bad_loss: float | None = None
                # a NaN forward pass poisons BatchNorm statistics: keep them to restore
                buffers = [b.detach().clone() for b in trainer.buffers()]
            batch = [t.to(device, non_blocking=True) for t in batch]
            if channels_last:
                batch = [
                    t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
                    for t in batch
                ]
            last_micro = micro == loop.grad_accum - 1
            with maybe_no_sync(model, not last_micro), autocast:
                output = model(*batch, progress=step / total_steps)
            loss = output.total / loop.grad_accum
            if bad_loss is None and not torch.isfinite(loss):
                bad_loss = float(output.total.detach())
            # backward even so: under DDP every process must join the gradient all-reduce
            scaler.scale(loss).backward()
            for name, value in output.parts.items():
                step_parts[name] = step_parts.get(name, 0.0) + float(value) / loop.grad_accum
            micro += 1
            if not last_micro:
                continue
            micro = 0
            finite = bad_loss is None and (use_scaler or _grads_finite(optimizer))
            if context.enabled:  # every process takes (or skips) the same steps
                flag = torch.tensor(float(finite), device=device)
                torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
                finite = bool(flag.item())
            step += 1
            bar.update(1)
            if finite:
                scaler.step(optimizer)
                scaler.update()
                nonfinite_in_row = 0
                count += 1
                for name, value in step_parts.items():
                    sums[name] = sums.get(name, 0.0) + value
            else:
                optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    for buffer, kept in zip(trainer.buffers(), buffers, strict=True):
                        buffer.copy_(kept)
                nonfinite_in_row += 1
                skipped += 1
                if nonfinite_in_row >= loop.max_nonfinite_steps:
                    bar.close()
                    raise stop(step - nonfinite_in_row + 1, step, bad_loss)
                if context.is_main:
                    what = f"loss {bad_loss}" if bad_loss is not None else "NaN/inf gradients"
                    tqdm.write(
                        f"{description}: warning: step {step}: {what}; step skipped "
                        f"({nonfinite_in_row} in a row, stopping at "
                        f"{loop.max_nonfinite_steps})",
                        file=sys.stderr,
                    )
            if loop.log_every_steps and (step % loop.log_every_steps == 0 or step == total_steps):
                record = {"step": step, "epoch": epoch + 1, "lr": optim.lr * lr_factor}
                record.update({k: v / count for k, v in sums.items()})
                record["images_per_s"] = (
                    count * loop.batch_size / max(time.perf_counter() - interval_start, 1e-9)
                )
                if context.is_main:
                    append_jsonl(log_path, record)
                    bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}")
                    if writer:
                        for key, value in record.items():
                            if key not in ("step", "epoch"):
                                writer.add_scalar(f"{description}/{key}", value, step)
                for key, value in sums.items():
                    epoch_sums[key] = epoch_sums.get(key, 0.0) + value
                epoch_count += count
                sums, count, interval_start = {}, 0, time.perf_counter()
            if loop.checkpoint_every_steps and step % loop.checkpoint_every_steps == 0:
                save_checkpoint(step)
        bar.close()
        for key, value in sums.items():
            epoch_sums[key] = epoch_sums.get(key, 0.0) + value
        epoch_count += count
        save_checkpoint(step)
        if context.is_main:
            summary = {
                "step": step,
                "epoch": epoch + 1,
                "type": "epoch",
                "seconds": time.perf_counter() - started,
            }
            summary.update({k: v / max(epoch_count, 1) for k, v in epoch_sums.items()})
            if skipped:
                summary["nonfinite_steps"] = skipped
            append_jsonl(log_path, summary)
    if writer:
        writer.close()
    if context.is_main:
        require_finite_weights(weights_path)
        save_weights(weights_path, trainer.model, fingerprint, meta)
    if context.enabled:
        torch.distributed.barrier()
    return weights_path
