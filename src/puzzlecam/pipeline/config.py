"""One typed config per stage, and the run config that holds them all.

Defaults are the paper's VOC settings (DESIGN.md); presets under ``configs/`` override
them. Relative paths are relative to the working directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from puzzlecam.config import apply_overrides, from_dict, load_yaml
from puzzlecam.data.demo import DemoDataConfig
from puzzlecam.data.transforms import AugmentConfig
from puzzlecam.errors import ConfigError
from puzzlecam.models.backbone import BackboneConfig
from puzzlecam.puzzle.losses import PuzzleConfig
from puzzlecam.training.loop import LoopConfig
from puzzlecam.training.optim import OptimConfig

__all__ = [
    "DataConfig",
    "TrainClsConfig",
    "CamConfig",
    "EvalConfig",
    "AffinityLabelConfig",
    "TrainAffConfig",
    "RandomWalkConfig",
    "PseudoLabelConfig",
    "TrainSegConfig",
    "PredictConfig",
    "ReportConfig",
    "RunConfig",
    "load_run_config",
    "PRESETS_DIR",
]

PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs"

THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))  # 0.05 .. 0.95


@dataclass(frozen=True)
class DataConfig:
    """Where the images, tags and masks are.

    format: ``voc`` (VOC devkit layout), ``folder`` (images/ + labels.csv), ``coco``
    (COCO 2014 instances json) or ``demo`` (built into ``root`` first, then read as voc).
    classes: replaces the data set's class list (else ``root/classes.txt``, else VOC's).
    train_split ``auto``: ``train_aug`` when its list is present, else ``train``.
    """

    format: Literal["voc", "folder", "coco", "demo"] = "voc"
    root: str = "data/VOC2012"
    classes: tuple[str, ...] = ()
    train_split: str = "auto"
    val_split: str = "val"
    tags_from: Literal["auto", "xml", "masks"] = "auto"
    demo: DemoDataConfig = field(default_factory=DemoDataConfig)


@dataclass(frozen=True)
class TrainClsConfig:
    """Stage 1: the classifier with the puzzle module."""

    backbone: BackboneConfig = field(default_factory=lambda: BackboneConfig(norm="train"))
    puzzle: PuzzleConfig = field(default_factory=PuzzleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    baseline_plain_cam: bool = False  # also train plain CAM (puzzle terms off) to compare


@dataclass(frozen=True)
class CamConfig:
    """Stage 2: CAMs of every image. ``overlays``: how many PNG overlays to write."""

    scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    flip: bool = True
    batch_size: int = 8
    num_workers: int = 2
    overlays: int = 8


@dataclass(frozen=True)
class EvalConfig:
    thresholds: tuple[float, ...] = THRESHOLDS


@dataclass(frozen=True)
class AffinityLabelConfig:
    """Stage 4: confident foreground / background / ignore from the CAMs."""

    fg_threshold: float = 0.40
    bg_threshold: float = 0.10
    crf: bool = True
    crf_iterations: int = 10


@dataclass(frozen=True)
class TrainAffConfig:
    """Stage 5: AffinityNet (frozen ImageNet backbone + edge head) on the affinity labels."""

    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    radius: int = 10
    optim: OptimConfig = field(default_factory=OptimConfig)
    loop: LoopConfig = field(default_factory=lambda: LoopConfig(epochs=3))
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@dataclass(frozen=True)
class RandomWalkConfig:
    """Stage 6: random walk of the stride-4 CAMs over the learned affinities."""

    beta: float = 10.0
    exp_times: int = 8
    radius: int = 5


@dataclass(frozen=True)
class PseudoLabelConfig:
    """Stage 6b: argmax of the random-walk scores with a background threshold, then CRF."""

    threshold: float = 0.35
    crf: bool = True
    crf_iterations: int = 1


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


@dataclass(frozen=True)
class PredictConfig:
    """Stage 8: the segmentation model on images: scales x flip, optional CRF.

    Images whose long side exceeds ``max_long_side`` are segmented at that size and the
    masks resized back to the image (a 4000x3000 photo at scale 2 would not fit memory).
    """

    scales: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0)
    flip: bool = True
    crf: bool = False
    crf_iterations: int = 10
    batch_size: int = 4
    max_long_side: int = 1024


@dataclass(frozen=True)
class ReportConfig:
    num_samples: int = 6


@dataclass(frozen=True)
class RunConfig:
    """Every stage's settings. ``until`` stops the pipeline early: after the CAMs, after
    the pseudo labels, or (default) after the segmentation model."""

    name: str = "run"
    device: str = "auto"
    until: Literal["cams", "pseudo-labels", "train-seg"] = "train-seg"
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
    data: dict[str, Any] = load_yaml(resolve_preset(source)) if source else {}
    return from_dict(RunConfig, apply_overrides(data, overrides))
