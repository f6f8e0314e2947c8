"""A training run's log: ``metrics.jsonl`` (and TensorBoard when asked for).

One record per log interval (the mean of every loss part over the interval's finite steps,
the learning rate, images per second) and one ``"type": "epoch"`` summary per epoch.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from puzzlecam.io import append_jsonl, atomic_write, read_jsonl

__all__ = ["LOG_FILE", "MetricsLog"]

LOG_FILE = "metrics.jsonl"  # a training run's log, in its folder

logger = logging.getLogger(__name__)


class MetricsLog:
    """The log of one training run at ``path``; writes only when ``enabled`` (the main
    process), while every process counts alike.

    ``resumed_at``: the step of the checkpoint training resumes from; records logged after
    it (by the run that was interrupted) are dropped. ``tensorboard_dir``: also write
    TensorBoard scalars there (named ``{description}/{key}``), when installed.
    ``batch_size``: the global batch, for images per second.
    """

    def __init__(
        self,
        path: Path,
        description: str,
        batch_size: int,
        *,
        enabled: bool = True,
        resumed_at: int | None = None,
        tensorboard_dir: Path | None = None,
    ) -> None:
        self.path, self.description, self.batch_size = Path(path), description, batch_size
        self.enabled = enabled
        self.writer = None
        if enabled and resumed_at is not None:
            kept = [r for r in read_jsonl(self.path) if r.get("step", 0) <= resumed_at]
            with atomic_write(self.path) as handle:
                handle.write("".join(json.dumps(r) + "\n" for r in kept).encode())
        if enabled and tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(tensorboard_dir), purge_step=resumed_at or 0)
            except ImportError:
                logger.warning(
                    "tensorboard is not installed: pip install 'puzzlecam[tensorboard]'; "
                    "logging to %s only",
                    self.path.name,
                )
        self.start_epoch()

    def start_epoch(self) -> None:
        """Forget the sums of the epoch before; the first interval starts now."""
        self._sums: dict[str, float] = {}
        self._count = 0
        self._epoch_sums: dict[str, float] = {}
        self._epoch_count = 0
        self._interval_start = time.perf_counter()

    def add_step(self, parts: dict[str, float]) -> None:
        """Count one finite optimiser step with its loss parts (skipped steps are not added)."""
        self._count += 1
        for name, value in parts.items():
            self._sums[name] = self._sums.get(name, 0.0) + value

    def _close_interval(self) -> None:
        for key, value in self._sums.items():
            self._epoch_sums[key] = self._epoch_sums.get(key, 0.0) + value
        self._epoch_count += self._count
        self._sums, self._count = {}, 0

    def log_interval(self, step: int, epoch: int, lr: float) -> dict[str, Any]:
        """Write the interval that ends at ``step`` (``epoch`` 0-based) and start the next;
        returns the record."""
        record: dict[str, Any] = {"step": step, "epoch": epoch + 1, "lr": lr}
        record.update({k: v / self._count for k, v in self._sums.items()})
        elapsed = max(time.perf_counter() - self._interval_start, 1e-9)
        record["images_per_s"] = self._count * self.batch_size / elapsed
        if self.enabled:
            append_jsonl(self.path, record)
            if self.writer:
                for key, value in record.items():
                    if key not in ("step", "epoch"):
                        self.writer.add_scalar(f"{self.description}/{key}", value, step)
        self._close_interval()
        self._interval_start = time.perf_counter()
        return record

    def end_epoch(self, step: int, epoch: int, seconds: float, skipped: int) -> None:
        """Write the epoch's summary: the mean of every loss part over its finite steps,
        ``seconds`` since training started, and the ``skipped`` non-finite steps if any."""
        self._close_interval()
        if not self.enabled:
            return
        summary: dict[str, Any] = {
            "step": step,
            "epoch": epoch + 1,
            "type": "epoch",
            "seconds": seconds,
        }
        summary.update({k: v / max(self._epoch_count, 1) for k, v in self._epoch_sums.items()})
        if skipped:
            summary["nonfinite_steps"] = skipped
        append_jsonl(self.path, summary)

    def close(self) -> None:
        if self.writer:
            self.writer.close()
