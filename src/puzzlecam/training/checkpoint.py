"""A training run's two files: the resume point ``checkpoint.pt`` and the final ``model.pt``.

``save_weights`` / ``load_weights`` read and write final weights (state dict, the config
fingerprint, metadata); ``Checkpointer`` is the training loop's saver (timm's
CheckpointSaver, trimmed to resuming): it refuses files of another configuration and never
writes weights that hold NaN/inf. No pickle: files load with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from puzzlecam.errors import DataError, RunDirError, TrainingError
from puzzlecam.io import atomic_write, load_tensor_file

__all__ = [
    "WEIGHTS_FILE",
    "CHECKPOINT_FILE",
    "save_weights",
    "load_weights",
    "Checkpointer",
]

WEIGHTS_FILE = "model.pt"  # a training run's final weights, in its folder
CHECKPOINT_FILE = "checkpoint.pt"  # its resume point


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


def _is_finite(tensor: torch.Tensor) -> bool:
    return not tensor.is_floating_point() or bool(torch.isfinite(tensor).all())


class Checkpointer:
    """``out_dir/checkpoint.pt`` (weights, optimiser, loss scaler, step) and
    ``out_dir/model.pt`` of one training run made with the config ``fingerprint``.

    ``description`` (``train-cls puzzle_cam``...) and ``section`` (``train_cls``...) name
    the stage and its settings in messages; ``lr`` is quoted in the advice to lower it.
    ``last_saved``: the step of the checkpoint on disk (None before the first).
    """

    def __init__(
        self, out_dir: Path, fingerprint: str, description: str, section: str, lr: float
    ) -> None:
        self.path = Path(out_dir) / CHECKPOINT_FILE
        self.weights_path = Path(out_dir) / WEIGHTS_FILE
        self.fingerprint, self.description, self.section, self.lr = (
            fingerprint, description, section, lr,
        )  # fmt: skip
        self.last_saved: int | None = None

    def finished(self) -> bool:
        """Whether ``model.pt`` of this fingerprint exists; RunDirError for another's."""
        if not self.weights_path.is_file():
            return False
        if load_weights(self.weights_path).get("fingerprint") == self.fingerprint:
            return True
        raise RunDirError(
            f"{self.weights_path} was trained with another configuration; use a new run directory"
        )

    def resume(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None,
    ) -> int:
        """Load the checkpoint, if there is one, into ``model``, ``optimizer`` and ``scaler``
        (when given and saved); the step it was saved at, 0 without one."""
        if not self.path.is_file():
            return 0
        fix = "delete it to start this training stage over"
        state = load_tensor_file(self.path, fix)
        if not isinstance(state, dict) or not {"model", "optimizer", "step"} <= set(state):
            raise DataError(self.path, f"not a puzzlecam training checkpoint; {fix}")
        if state.get("fingerprint") != self.fingerprint:
            raise RunDirError(
                f"{self.path} belongs to another configuration; use a new run directory "
                "or delete the checkpoint to start over"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        self.last_saved = int(state["step"])
        return self.last_saved

    def _require_finite(self, model: nn.Module, target: Path) -> None:
        bad = [n for n, t in model.state_dict().items() if not _is_finite(t)]
        if bad:
            raise TrainingError(
                f"{self.description}: {target}: not written: the weights hold NaN/inf ({bad[0]}"
                f"{f' and {len(bad) - 1} more' if len(bad) > 1 else ''}); lower "
                f"{self.section}.optim.lr (now {self.lr}) and train in a new run directory "
                "(--run-dir)"
            )

    def save(
        self,
        step: int,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None,
        path: Path | None = None,
    ) -> None:
        """Write the resume point after ``step`` atomically (TrainingError, nothing written,
        when the weights hold NaN/inf); to ``path`` instead of the checkpoint when given."""
        target = path or self.path
        self._require_finite(model, target)
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "fingerprint": self.fingerprint,
        }
        if scaler is not None:
            state["scaler"] = scaler.state_dict()
        with atomic_write(target) as handle:
            torch.save(state, handle)
        if path is None:
            self.last_saved = step

    def adopt(self, snapshot: Path) -> int:
        """Make ``snapshot`` (another run's resume point, saved by ``save(path=...)``) this
        run's checkpoint, as if this run had saved it; returns its step."""
        fix = "delete it to train from the start"
        state = load_tensor_file(snapshot, fix)
        if not isinstance(state, dict) or not {"model", "optimizer", "step"} <= set(state):
            raise DataError(snapshot, f"not a puzzlecam training checkpoint; {fix}")
        state["fingerprint"] = self.fingerprint
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(self.path) as handle:
            torch.save(state, handle)
        return int(state["step"])

    def save_weights(self, model: nn.Module, meta: dict | None = None) -> Path:
        """Write ``model.pt`` (TrainingError, nothing written, when the weights hold NaN/inf)."""
        self._require_finite(model, self.weights_path)
        save_weights(self.weights_path, model, self.fingerprint, meta)
        return self.weights_path
