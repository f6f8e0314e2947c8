"""The run's settings schema: ``RunConfig`` and every section of it, in one module.

The rule (docs/ARCHITECTURE.md): a settings dataclass that a library function takes lives
next to that function, in its own layer (``data.DataConfig``, ``data.AugmentConfig``,
``models.BackboneConfig``, ``puzzle.PuzzleConfig``, ``training.OptimConfig`` /
``LoopConfig``, ``segmentation.PredictConfig``); the sections only the pipeline reads are
defined here, and the pipeline passes their fields to the library as keyword arguments.
This module assembles ``RunConfig`` from both and re-exports every section type, so the
whole schema can be read, and imported, from here.

Defaults are the paper's VOC settings (DESIGN.md); presets under ``configs/`` override
them. Relative paths are relative to the working directory.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, get_args

from puzzlecam.cams.inference import check_scales
from puzzlecam.data.demo import DemoDataConfig
from puzzlecam.data.splits import DataConfig
from puzzlecam.data.transforms import AugmentConfig
from puzzlecam.dataclass_yaml import (
    EXECUTION,
    NOT_FINGERPRINTED,
    apply_overrides,
    from_dict,
    load_yaml,
    require,
    require_at_least,
)
from puzzlecam.errors import ConfigError
from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.models.engine import Engine
from puzzlecam.puzzle.losses import PuzzleConfig
from puzzlecam.segmentation.predict import PredictConfig
from puzzlecam.training.distributed import device_problem
from puzzlecam.training.loop import LoopConfig
from puzzlecam.training.optim import OptimConfig

__all__ = [
    # sections defined here (only the pipeline reads them)
    "TrainClsConfig",
    "CamConfig",
    "EvalConfig",
    "AffinityLabelConfig",
    "TrainAffConfig",
    "RandomWalkConfig",
    "PseudoLabelConfig",
    "TrainSegConfig",
    "ReportConfig",
    "RunConfig",
    # sections owned by the library layer that takes them, re-exported
    "DataConfig",
    "DemoDataConfig",
    "AugmentConfig",
    "BackboneConfig",
    "PuzzleConfig",
    "OptimConfig",
    "LoopConfig",
    "PredictConfig",
    "load_run_config",
    "resolve_preset",
    "PRESETS_DIR",
    "UNTIL_PHASES",
]

PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs"

THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95

_RUN_NAME = re.compile(r"[\w\-]([\w.+ \-]*[\w.+\-])?")

MAX_EXP_TIMES = 12  # 2**12 random-walk steps: 16x the paper's 2**8


def _check_fraction(value: float, name: str, what: str) -> None:
    require(0.0 < value < 1.0, name, f"{what} must lie strictly between 0 and 1, got {value}")


def _one_batch(section: Any, batch_statistics: bool) -> Any:
    """``section`` (a training stage's settings) with ``loop.grad_accum`` 1 when its global
    batch is the same whatever its split into micro-batches: no BatchNorm layer computes
    statistics from a micro-batch (``batch_statistics`` false). Then
    splitting the batch to save memory (the advice after an out-of-memory error) keeps
    the run's finished stages; the sum of the micro-batches' gradients differs from one
    batch's only in float rounding."""
    if batch_statistics or section.loop.grad_accum == 1:
        return section
    return replace(section, loop=replace(section.loop, grad_accum=1))


@dataclass(frozen=True)
class TrainClsConfig:
    """Stage 1: the classifier with the puzzle module."""

    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig(norm="train"))
    puzzle: PuzzleConfig = field(default_factory=PuzzleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    baseline_plain_cam: bool = False  # also train plain CAM (puzzle terms off) to compare

    def fingerprint_form(self) -> TrainClsConfig:
        return _one_batch(self, batch_statistics=self.backbone.norm == "train")


@dataclass(frozen=True)
class CamConfig:
    """Stage 2: CAMs of every image. ``overlays``: how many PNG overlays to write.
    ``channels_last``: the model's memory layout, a speed setting (the same maps up to
    float rounding, so not part of the fingerprint); off for a CPU where it is slower."""

    scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    flip: bool = True
    batch_size: int = field(default=8, metadata=EXECUTION)
    num_workers: int = field(default=2, metadata=EXECUTION)
    overlays: int = field(default=8, metadata=EXECUTION)
    channels_last: bool = field(default=True, metadata=NOT_FINGERPRINTED)

    def __post_init__(self) -> None:
        check_scales(self.scales)
        require_at_least(self.batch_size, "batch_size", 1)
        require_at_least(self.num_workers, "num_workers", 0)
        require_at_least(self.overlays, "overlays", 0)


@dataclass(frozen=True)
class EvalConfig:
    """``thresholds``: the background thresholds of the score-file sweep, increasing, in (0, 1)."""

    thresholds: tuple[float, ...] = THRESHOLDS

    def __post_init__(self) -> None:
        values = list(self.thresholds)
        require(len(values) > 0, "thresholds", "is empty; give at least one, e.g. [0.3]")
        require(
            all(0.0 < t < 1.0 for t in values),
            "thresholds",
            f"{values}: every threshold must lie strictly between 0 and 1",
        )
        require(
            all(a < b for a, b in zip(values, values[1:], strict=False)),
            "thresholds",
            f"{values}: must be strictly increasing (sorted, no repeats)",
        )


@dataclass(frozen=True)
class AffinityLabelConfig:
    """Stage 4: confident foreground / background / ignore from the CAMs."""

    fg_threshold: float = 0.40
    bg_threshold: float = 0.10
    crf: bool = True
    crf_iterations: int = 10

    def __post_init__(self) -> None:
        _check_fraction(self.fg_threshold, "fg_threshold", "the foreground threshold")
        _check_fraction(self.bg_threshold, "bg_threshold", "the background threshold")
        require(
            self.fg_threshold > self.bg_threshold,
            "fg_threshold",
            f"{self.fg_threshold} must be above bg_threshold {self.bg_threshold} (scores "
            "between the two are the uncertain band, labelled ignore)",
        )
        require_at_least(self.crf_iterations, "crf_iterations", 0)


@dataclass(frozen=True)
class TrainAffConfig:
    """Stage 5: AffinityNet (frozen ImageNet backbone + edge head) on the affinity labels."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    radius: int = 10
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=3))
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def fingerprint_form(self) -> TrainAffConfig:
        return _one_batch(self, batch_statistics=False)  # frozen backbone, GroupNorm head

    def __post_init__(self) -> None:
        require_at_least(self.radius, "radius", 2)
        crop = self.augment.crop_size
        require(
            crop % 4 == 0,
            "augment.crop_size",
            f"{crop} is not divisible by 4: AffinityNet learns from labels at a quarter of "
            f"the crop; use {crop - crop % 4} or {crop - crop % 4 + 4}",
        )


@dataclass(frozen=True)
class RandomWalkConfig:
    """Stage 6: random walk of the stride-4 CAMs over the learned affinities."""

    beta: float = 10.0
    exp_times: int = 8
    radius: int = 5

    def __post_init__(self) -> None:
        require(0 < self.beta < math.inf, "beta", f"must be a positive number, got {self.beta}")
        require(
            0 <= self.exp_times <= MAX_EXP_TIMES,
            "exp_times",
            f"must be in 0..{MAX_EXP_TIMES} (2**exp_times steps), got {self.exp_times}",
        )
        require_at_least(self.radius, "radius", 2)


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Stage 6b: argmax of the random-walk scores with a background threshold, then CRF."""

    threshold: float = 0.35
    crf: bool = True
    crf_iterations: int = 1

    def __post_init__(self) -> None:
        _check_fraction(self.threshold, "threshold", "the background threshold")
        require_at_least(self.crf_iterations, "crf_iterations", 0)


@dataclass(frozen=True)
class TrainSegConfig:
    """Stage 7: DeepLabV3+ (smp) on the pseudo labels; ``fully_supervised`` also trains
    the same model on ground truth, the upper bound to compare with."""

    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig(name="resnest101e"))
    head_norm: Literal["batch", "group"] = "group"
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(lr=0.007, weight_decay=4e-5))
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=50))
    augment: AugmentConfig = field(default_factory=lambda: AugmentConfig(256, 1024, 512))
    fully_supervised: bool = False

    def fingerprint_form(self) -> TrainSegConfig:
        statistics = self.backbone.norm == "train" or self.head_norm == "batch"
        return _one_batch(self, batch_statistics=statistics)


@dataclass(frozen=True)
class ReportConfig:
    """``num_samples``: images of each split in the report's sample tables;
    ``explore_images``: at most this many images of each split on the threshold explorer
    (``report/explore.html``; all of them when fewer, 0 for no explorer)."""

    num_samples: int = field(default=6, metadata=EXECUTION)
    explore_images: int = field(default=100, metadata=EXECUTION)

    def __post_init__(self) -> None:
        require_at_least(self.num_samples, "num_samples", 0)
        require_at_least(self.explore_images, "explore_images", 0)


Until = Literal["cams", "pseudo-labels", "train-seg"]
UNTIL_PHASES: tuple[str, ...] = get_args(Until)
"""The pipeline's phases in order, each named by the ``until`` that ends it."""


@dataclass(frozen=True)
class RunConfig:
    """Every stage's settings. ``until`` stops the pipeline early: after the CAMs, after
    the pseudo labels, or (default) after the segmentation model. It is a stopping point,
    not part of the run: a run continued with a later ``until`` keeps its finished stages.

    ``name`` is the run's folder under ``runs/``: a plain folder name. ``device`` is
    not part of the run's identity (the same run can be resumed on another device), nor is
    ``engine``: what runs the trained networks' forward passes in the stages that only
    infer (CAMs, random walk, prediction): ``auto`` (on a CPU ONNX Runtime, else OpenVINO,
    else PyTorch; PyTorch on a GPU), ``torch``, ``onnxruntime`` or ``openvino``
    (``models.engine``); they differ by float rounding only. Under ``auto`` the stages that
    run one image at a time keep PyTorch (``stages.common.inference_net``).
    """

    name: str = "run"
    device: str = field(default="auto", metadata=NOT_FINGERPRINTED)
    until: Until = field(default="train-seg", metadata=NOT_FINGERPRINTED)
    engine: Engine = field(default="auto", metadata=NOT_FINGERPRINTED)
    data: DataConfig = field(default_factory=DataConfig)
    train_cls: TrainClsConfig = field(default_factory=TrainClsConfig)
    cams: CamConfig = field(default_factory=CamConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    affinity_labels: AffinityLabelConfig = field(default_factory=AffinityLabelConfig)
    train_aff: TrainAffConfig = field(default_factory=TrainAffConfig)
    rw: RandomWalkConfig = field(default_factory=RandomWalkConfig)
    pseudo_labels: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    train_seg: TrainSegConfig = field(default_factory=TrainSegConfig)
    predict: PredictConfig = field(default_factory=PredictConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def __post_init__(self) -> None:
        require(
            _RUN_NAME.fullmatch(self.name) is not None and ".." not in self.name,
            "name",
            f"{self.name!r} is not a plain folder name (the run goes to runs/NAME): use "
            "letters, digits, '.', '-' and '_', without '/', '\\', '..' or a leading '.'",
        )
        problem = device_problem(self.device)
        require(problem is None, "device", f"{problem}")


def resolve_preset(name_or_path: str | Path) -> Path:
    """A config file path, or the name of a bundled preset (``demo``, ``voc_resnet50``...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    preset = PRESETS_DIR / f"{name_or_path}.yaml"
    if preset.is_file():
        return preset
    available = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
    raise ConfigError(f"config {name_or_path!s} not found; bundled presets: {available}")


def load_run_config(source: str | Path | None = None, overrides: tuple[str, ...] = ()) -> RunConfig:
    """RunConfig from a YAML file or preset name, with ``section.key=value`` overrides."""
    path = resolve_preset(source) if source else None
    data: dict[str, Any] = load_yaml(path) if path else {}
    try:
        return from_dict(RunConfig, apply_overrides(data, overrides))
    except ConfigError as error:
        if path is None or not _fails(data):
            raise  # the bad value came from an override (--set, --device)
        raise ConfigError(f"{path}: {error}") from error


def _fails(data: dict[str, Any]) -> bool:
    try:
        from_dict(RunConfig, data)
    except ConfigError:
        return True
    return False
