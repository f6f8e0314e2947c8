"""The one training loop behind the classifier, AffinityNet and the segmentation model.

A *trainer* is an ``nn.Module`` whose ``forward(*batch, progress=float)`` returns a
``LossOutput``; it owns the model being trained as ``trainer.model``. Keeping the whole
loss computation inside one forward lets DDP wrap it even when the model runs several
times per step (the puzzle module's full image + tiles).

Resumable: a checkpoint (weights, optimiser, position) is written atomically every epoch
and every ``checkpoint_every_steps``; the data order and every augmentation are functions
of (seed, epoch, index), so a resumed run ends with the same weights as one that never
stopped.

As timm's train.py: ``fit`` sets a run up and calls ``train_one_epoch`` per epoch; the
files are ``training.checkpoint.Checkpointer``'s (checkpoint.pt, model.pt) and
``training.metrics_log.MetricsLog``'s (metrics.jsonl, TensorBoard).
"""

from __future__ import annotations

import contextlib
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
from puzzlecam.dataclass_yaml import EXECUTION, NOT_FINGERPRINTED, require
from puzzlecam.errors import ConfigError, TrainingError
from puzzlecam.io import atomic_write
from puzzlecam.training.checkpoint import Checkpointer, load_weights, save_weights
from puzzlecam.training.distributed import DistContext, maybe_no_sync
from puzzlecam.training.metrics_log import LOG_FILE, MetricsLog
from puzzlecam.training.optim import OptimConfig, build_optimizer, set_poly_lr

__all__ = [
    "LoopConfig",
    "LossOutput",
    "StepSampler",
    "TrainingRun",
    "train_one_epoch",
    "fit",
    "load_weights",  # from training.checkpoint, where they live
    "save_weights",
]


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
    num_workers: int = field(default=4, metadata=EXECUTION)
    seed: int = 0
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    channels_last: Literal["auto", "on", "off"] = field(default="auto", metadata=EXECUTION)
    checkpoint_every_steps: int = field(default=0, metadata=EXECUTION)
    log_every_steps: int = field(default=10, metadata=EXECUTION)
    tensorboard: bool = field(default=False, metadata=EXECUTION)
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


def _grads_finite(optimizer: torch.optim.Optimizer) -> bool:
    grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


@dataclass(eq=False)
class TrainingRun:
    """What ``train_one_epoch`` works with: the trainer (``model``: the module the steps run,
    the trainer itself or its DDP wrapper), its optimiser and loss scaler, the data and
    settings, where training stands (``step``, ``nonfinite_in_row``) and its two outputs,
    the checkpoints and the log. ``fit`` builds it."""

    trainer: nn.Module
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    use_scaler: bool
    autocast: contextlib.AbstractContextManager
    dataset: Dataset
    loop: LoopConfig
    optim: OptimConfig
    context: DistContext
    channels_last: bool
    steps_per_epoch: int
    checkpoints: Checkpointer
    log: MetricsLog
    description: str
    section: str
    step: int = 0
    nonfinite_in_row: int = 0
    snapshot: tuple[int, Path] | None = None  # after this step, also keep the state there

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.loop.epochs

    def save_checkpoint(self, path: Path | None = None) -> None:
        """The resume point after ``step`` (to ``path`` instead of the checkpoint when given),
        on the main process, unless the last step was not finite (the last good state is
        saved already)."""
        if not self.context.is_main or self.nonfinite_in_row:
            return
        scaler = self.scaler if self.use_scaler else None
        self.checkpoints.save(self.step, self.trainer.model, self.optimizer, scaler, path)

    def stopped(self, loss: float | None) -> TrainingError:
        """The error that ends training after ``max_nonfinite_steps`` bad steps in a row."""
        first, last = self.step - self.nonfinite_in_row + 1, self.step
        what = f"the loss was {loss}" if loss is not None else "the gradients held NaN/inf"
        saved = self.checkpoints.last_saved
        kept = (
            f"{self.checkpoints.path} keeps the last good state (step {saved})"
            if saved is not None
            else "no checkpoint had been saved yet"
        )
        return TrainingError(
            f"{self.description}: training stopped: {what} at {last - first + 1} steps in a "
            f"row (steps {first}-{last}, {self.section}.loop.max_nonfinite_steps = "
            f"{self.loop.max_nonfinite_steps}); {kept}; lower {self.section}.optim.lr (now "
            f"{self.optim.lr}) and train in a new run directory (--run-dir), or look for "
            "broken images or labels"
        )


def train_one_epoch(run: TrainingRun, epoch: int, progress: bool = True) -> int:
    """Train ``epoch`` (0-based) from ``run.step`` to its end; returns how many of its steps
    were skipped as non-finite.

    Every optimiser step takes ``grad_accum`` micro-batches; its learning rate follows the
    poly schedule over all of training. A non-finite step (NaN/inf loss; without fp16 loss
    scaling also NaN/inf gradients) changes nothing: no update, BatchNorm statistics
    restored, a warning; ``max_nonfinite_steps`` in a row raise ``run.stopped``. The log
    gets an interval every ``log_every_steps``; a checkpoint is saved every
    ``checkpoint_every_steps`` (the epoch's own is ``fit``'s).
    """
    loop, optim, context, trainer = run.loop, run.optim, run.context, run.trainer
    device = context.device
    done_in_epoch = run.step - epoch * run.steps_per_epoch
    if hasattr(run.dataset, "set_epoch"):
        run.dataset.set_epoch(epoch)
    micro_batch = loop.micro_batch(context.world_size)
    sampler = StepSampler(
        len(run.dataset), micro_batch, context, loop.seed, epoch, done_in_epoch * loop.grad_accum
    )
    loader = CheckedLoader(
        run.dataset,
        batch_sampler=sampler,
        num_workers=loop.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    torch.manual_seed(loop.seed * 1_000_003 + epoch)  # dropout etc. reproducible per epoch
    bar = tqdm(
        total=run.steps_per_epoch,
        initial=done_in_epoch,
        desc=f"{run.description} epoch {epoch + 1}/{loop.epochs}",
        disable=not (progress and context.is_main),
        dynamic_ncols=True,
        leave=False,
    )
    run.log.start_epoch()
    micro, skipped = 0, 0
    for batch in loader:
        if micro == 0:
            lr_factor = set_poly_lr(
                run.optimizer, run.step, run.total_steps, optim.poly_power, optim.warmup
            )
            run.optimizer.zero_grad(set_to_none=True)
            step_parts: dict[str, float] = {}
            bad_loss: float | None = None
            # a NaN forward pass poisons BatchNorm statistics: keep them to restore
            buffers = [b.detach().clone() for b in trainer.buffers()]
        batch = [t.to(device, non_blocking=True) for t in batch]
        if run.channels_last:
            batch = [
                t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t
                for t in batch
            ]
        last_micro = micro == loop.grad_accum - 1
        with maybe_no_sync(run.model, not last_micro), run.autocast:
            output = run.model(*batch, progress=run.step / run.total_steps)
        loss = output.total / loop.grad_accum
        if bad_loss is None and not torch.isfinite(loss):
            bad_loss = float(output.total.detach())
        # backward even so: under DDP every process must join the gradient all-reduce
        run.scaler.scale(loss).backward()
        for name, value in output.parts.items():
            step_parts[name] = step_parts.get(name, 0.0) + float(value) / loop.grad_accum
        micro += 1
        if not last_micro:
            continue
        micro = 0
        finite = bad_loss is None and (run.use_scaler or _grads_finite(run.optimizer))
        if context.enabled:  # every process takes (or skips) the same steps
            flag = torch.tensor(float(finite), device=device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MIN)
            finite = bool(flag.item())
        run.step += 1
        bar.update(1)
        if finite:
            run.scaler.step(run.optimizer)
            run.scaler.update()
            run.nonfinite_in_row = 0
            run.log.add_step(step_parts)
        else:
            run.optimizer.zero_grad(set_to_none=True)
            with torch.no_grad():
                for buffer, kept in zip(trainer.buffers(), buffers, strict=True):
                    buffer.copy_(kept)
            run.nonfinite_in_row += 1
            skipped += 1
            if run.nonfinite_in_row >= loop.max_nonfinite_steps:
                bar.close()
                raise run.stopped(bad_loss)
            if context.is_main:
                what = f"loss {bad_loss}" if bad_loss is not None else "NaN/inf gradients"
                tqdm.write(
                    f"{run.description}: warning: step {run.step}: {what}; step skipped "
                    f"({run.nonfinite_in_row} in a row, stopping at "
                    f"{loop.max_nonfinite_steps})",
                    file=sys.stderr,
                )
        if loop.log_every_steps and (
            run.step % loop.log_every_steps == 0 or run.step == run.total_steps
        ):
            record = run.log.log_interval(run.step, epoch, optim.lr * lr_factor)
            if context.is_main:
                bar.set_postfix(loss=f"{record.get('loss', float('nan')):.4f}")
        if loop.checkpoint_every_steps and run.step % loop.checkpoint_every_steps == 0:
            run.save_checkpoint()
        if run.snapshot is not None and run.step == run.snapshot[0]:
            run.save_checkpoint(run.snapshot[1])
    bar.close()
    return skipped


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
    snapshot: tuple[int, Path] | None = None,
    start_from: Path | None = None,
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

    ``snapshot`` (step, path) keeps the state after that step in that file too; a run whose
    steps up to there are the same computation starts from it with ``start_from`` (that
    file, and its run's log up to it) instead of step 0: the same weights as training from
    scratch, bit for bit, in fewer steps.
    """
    context = context or DistContext()
    out_dir = Path(out_dir)
    section = section or description
    checkpoints = Checkpointer(out_dir, fingerprint, description, section, optim.lr)
    if checkpoints.finished():
        return checkpoints.weights_path

    device = context.device
    loop.micro_batch(context.world_size)  # a batch the processes cannot share: ConfigError now
    steps_per_epoch = len(dataset) // loop.batch_size
    if steps_per_epoch == 0:
        raise ConfigError(
            f"{description}: {len(dataset)} training images, fewer than batch_size {loop.batch_size}"
        )

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
    if start_from is not None:
        if context.is_main and not checkpoints.path.is_file():
            checkpoints.adopt(start_from)
            source_log = Path(start_from).parent / LOG_FILE
            if source_log.is_file():  # MetricsLog keeps its records up to the step resumed at
                with atomic_write(out_dir / LOG_FILE) as handle:
                    handle.write(source_log.read_bytes())
        if context.enabled:
            torch.distributed.barrier()  # every process resumes from the adopted checkpoint
    resuming = checkpoints.path.is_file()
    start_step = checkpoints.resume(trainer.model, optimizer, scaler if use_scaler else None)

    model = trainer
    if context.enabled:
        if sync_batchnorm and device.type == "cuda":  # torch's SyncBatchNorm is CUDA-only
            trainer = convert_sync_batchnorm(trainer)
        model = nn.parallel.DistributedDataParallel(
            trainer, device_ids=[device.index] if device.type == "cuda" else None
        )
    model.train()

    log = MetricsLog(
        out_dir / LOG_FILE,
        description,
        loop.batch_size,
        enabled=context.is_main,
        resumed_at=start_step if resuming else None,
        tensorboard_dir=out_dir / "tensorboard" if loop.tensorboard else None,
    )
    run = TrainingRun(
        trainer, model, optimizer, scaler, use_scaler, autocast, dataset, loop, optim, context,
        channels_last, steps_per_epoch, checkpoints, log, description, section, step=start_step,
        snapshot=snapshot,
    )  # fmt: skip
    started = time.perf_counter()
    try:
        for epoch in range(start_step // steps_per_epoch, loop.epochs):
            skipped = train_one_epoch(run, epoch, progress)
            run.save_checkpoint()
            log.end_epoch(run.step, epoch, time.perf_counter() - started, skipped)
    finally:
        log.close()
    if context.is_main:
        checkpoints.save_weights(trainer.model, meta)
    if context.enabled:
        torch.distributed.barrier()
    return checkpoints.weights_path
