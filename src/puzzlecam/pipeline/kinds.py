"""Stage kinds: each kind of stage is one definition, registered in pipeline order.

A ``StageKind`` holds everything about one kind of stage (timm's registry, smp's
composition): its name, the CLI command that runs it and its help, the stage records a
config gives it (``plan``: settings, inputs, branch, split, time group, why a config leaves
one out), the function that runs a stage (``run``), its output folders, the model it
trains and how that is built, the metrics its evaluations write and how the report shows
them (label, colour, phase) and the picture its outputs make in the report's sample
tables. The plan, the runner, the CLI, the printed summary and the report iterate over
``stage_kinds()``; nothing else names a kind. The kinds of puzzlecam are defined beside
their stage functions in ``pipeline/stages/`` (docs/ARCHITECTURE.md "Adding a stage").

A stage function reads its settings one way: ``stage.config``, the settings its
fingerprint covers (the plan puts there everything the stage reads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # only for annotations: the context imports nothing of this module
    from puzzlecam.pipeline.config import RunConfig
    from puzzlecam.pipeline.context import RunContext
    from puzzlecam.pipeline.run_dir import RunDir

__all__ = [
    "ROLES",
    "EVAL_GROUP",
    "PHASES",
    "Metric",
    "Score",
    "Picture",
    "Stage",
    "StageKind",
    "register",
    "registered",
    "stage_kinds",
    "kind_of",
    "metrics",
]

ROLES = ("train", "val")
"""The splits a run makes outputs for."""

EVAL_GROUP = "eval"
"""The evaluations of CAMs and labels: one line of the table of stage times, last."""

PHASES = ("Classifier CAMs", "Random-walk refinement", "Segmentation model")
"""The report's groups of metrics, in pipeline order."""


@dataclass(frozen=True)
class Metric:
    """A key of metrics.json (one row of the report's metrics table)."""

    key: str  # e.g. "plain_cam_rw"
    label: str  # for people
    colour: str  # the same in every figure
    phase: str  # one of PHASES (another string: shown after them)
    method: str = ""  # the CAM branch it scores (the paper's Table 2 reads these)
    output: str = ""  # what of the branch: cams, rw, pseudo_labels_nocrf, pseudo_labels
    variant: str = ""  # the segmentation model it scores


@dataclass(frozen=True)
class Score:
    """One evaluation an eval stage writes: a metrics.json key on a split."""

    key: str  # a Metric's key
    split: str  # the role: "train" or "val"
    eval_name: str  # the full result: RunDir.eval_path(eval_name)


@dataclass(frozen=True)
class Picture:
    """How a stage's per-image outputs show in the report's sample tables."""

    title: Callable[[Stage], str]  # the column's title, e.g. "Random walk (plain CAM)"
    kind: Literal["scores", "labels"]  # score files as heat maps, or label PNGs


@dataclass(frozen=True)
class Stage:
    name: str  # key in the manifest, e.g. "cams/puzzle_cam/val"
    kind: str  # its StageKind's name, e.g. "cams"
    config: Any  # the settings that shape its output (its fingerprint's), all it reads
    inputs: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()  # the splits ("train", "val") whose data it reads itself
    method: str = ""  # the CAM branch it belongs to (puzzle_cam, plain_cam)
    variant: str = ""  # the segmentation model it belongs to (weak, full)
    role: str = ""  # the split it makes outputs for
    group: str = ""  # its line in the table of stage times, e.g. "rw/plain_cam"
    label: str = ""  # that line's name for people
    model: str = ""  # a training stage: the model's name for people
    scores: tuple[Score, ...] = ()  # an evaluation: what it writes to metrics.json

    @property
    def command(self) -> str:
        """The CLI command that runs it, e.g. ``cams``."""
        return kind_of(self).command

    def outputs(self, run: RunDir) -> tuple[Path, ...]:
        """Its output folders, removed before it runs when they hold outputs of other
        inputs; a training stage's first is its model's folder."""
        return kind_of(self).outputs(run, self)

    def folder(self, run: RunDir) -> Path:
        """The folder it writes: its files, or its model's (a training stage)."""
        outputs = self.outputs(run)
        if not outputs:
            raise ValueError(f"stage {self.name} writes no folder of its own")
        return outputs[0]


StageFunction = Callable[["RunContext", Stage, str], None]
"""``run(ctx, stage, fingerprint)``: read the inputs from the run directory, write the
outputs there (claiming the output folder for ``fingerprint``, skipping finished files)."""


def _no_outputs(run: RunDir, stage: Stage) -> tuple[Path, ...]:
    return ()


@dataclass(frozen=True)
class StageKind:
    name: str  # e.g. "train-cls"
    command: str  # the CLI command that runs its stages (several kinds may share one)
    help: str  # the command's help ("" for a kind that runs under another's command)
    plan: Callable[[RunConfig], Iterable[tuple[str, Stage]]]  # (why left out or "", stage)
    run: StageFunction
    outputs: Callable[[RunDir, Stage], tuple[Path, ...]] = _no_outputs
    # a training stage: its settings' section (whose loop.batch_size is checked before the
    # run) and its model, built from those settings (on the meta device, before the run)
    trains: str = ""
    build: Callable[[Any], Any] | None = None
    metrics: tuple[Metric, ...] = ()  # what its evaluations write to metrics.json
    picture: Picture | None = None  # its per-image outputs in the report's sample tables


_KINDS: dict[str, StageKind] = {}


def register(kind: StageKind) -> StageKind:
    """Add ``kind`` after the kinds registered before it (its stages run after theirs)."""
    if kind.name in _KINDS:
        raise ValueError(f"a stage kind named '{kind.name}' is registered already")
    _KINDS[kind.name] = kind
    return kind


@contextmanager
def registered(kind: StageKind) -> Iterator[StageKind]:
    """``kind`` registered for the ``with`` block only (a plug-in's test)."""
    register(kind)
    try:
        yield kind
    finally:
        del _KINDS[kind.name]


def stage_kinds() -> tuple[StageKind, ...]:
    """The registered kinds, in pipeline order (puzzlecam's own are in ``pipeline.stages``,
    which ``pipeline.plan`` imports)."""
    return tuple(_KINDS.values())


def kind_of(stage: Stage) -> StageKind:
    try:
        return _KINDS[stage.kind]
    except KeyError:
        raise KeyError(f"stage {stage.name}: no stage kind '{stage.kind}' is registered") from None


def metrics() -> tuple[Metric, ...]:
    """Every metric the registered kinds write, in registration order."""
    return tuple(metric for kind in _KINDS.values() for metric in kind.metrics)
