"""The plan of a run: its stages as typed records, made once from the config.

Every reader of the pipeline's vocabulary reads these records: the runner (name, command,
settings, inputs, the splits read, the output folders it clears), the stage functions of
``stages.py`` (branch, split, segmentation model, the scores they write and under which
eval file), the printed summary and the report (which stages the run has, and why it has
no others; the time groups and their names; the trained models). Names of branches and
metric keys come from ``pipeline.branches``, paths from ``RunDir``.

The plan lists *every* stage a run may have (``Plan.every``: both CAM branches, every
phase, both segmentation models), each left out by the config with a reason
(``Plan.left_out``); the run's own stages are the others (``Plan.stages``). The names,
groups and scores of ``every`` are the same for every config: only the settings differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from puzzlecam.pipeline.branches import (
    METHOD_NAMES,
    METHODS,
    SEGMENTATION_METHOD,
    VARIANTS,
    Output,
    classifier_settings,
    metric_key,
    segmenter_key,
    segmenter_settings,
)
from puzzlecam.pipeline.config import UNTIL_PHASES, RunConfig
from puzzlecam.pipeline.run_dir import RunDir

__all__ = [
    "Step",
    "Score",
    "Stage",
    "Plan",
    "make_plan",
    "plan_stages",
    "every_stage",
    "EVAL_GROUP",
    "StageTime",
    "stage_times",
]

Step = Literal[
    "data",
    "train-cls",
    "cams",
    "eval-cams",
    "affinity-labels",
    "train-aff",
    "rw",
    "eval-rw",
    "pseudo-labels",
    "eval-pseudo-labels",
    "train-seg",
    "predict-eval",
]
"""What a stage does: which function of ``stages.py`` runs it (``runner``)."""

ROLES = ("train", "val")


@dataclass(frozen=True)
class Score:
    """One evaluation an eval stage writes: a metrics.json key on a split."""

    key: str  # in metrics.json, e.g. "plain_cam_rw" (pipeline.branches)
    split: str  # the role: "train" or "val"
    eval_name: str  # the full result: RunDir.eval_path(eval_name)


def _score(key: str, split: str, output: Output | None = None) -> Score:
    # eval/{key}_{split}.json; the CAMs' carry a cams_ prefix (the names runs have)
    return Score(key, split, f"{'cams_' if output == 'cams' else ''}{key}_{split}")


@dataclass(frozen=True)
class Stage:
    name: str  # key in the manifest, e.g. "cams/puzzle_cam/val"
    command: str  # the CLI command that runs it, e.g. "cams"
    step: Step
    config: Any  # the settings that shape its output (its fingerprint's)
    inputs: tuple[str, ...] = ()
    reads: tuple[str, ...] = ()  # the splits ("train", "val") whose data it reads itself
    method: str = ""  # the CAM branch it belongs to (puzzle_cam, plain_cam)
    variant: str = ""  # the segmentation model it belongs to (weak, full)
    role: str = ""  # the split it makes outputs for
    group: str = ""  # its line in the table of stage times, e.g. "rw/plain_cam"
    label: str = ""  # that line's name for people
    model: str = ""  # a training stage: the model's name for people
    scores: tuple[Score, ...] = ()  # an evaluation: what it writes to metrics.json

    def outputs(self, run: RunDir) -> tuple[Path, ...]:
        """Its output folders, removed before it runs when they hold outputs of other
        inputs; a training stage's first is its model's folder."""
        method, role, variant = self.method, self.role, self.variant
        match self.step:
            case "train-cls":
                return (run.classifier_dir(method),)
            case "cams":
                return run.cams_dir(method, role), run.cam_overlays_dir(method, role)
            case "affinity-labels":
                return (run.affinity_labels_dir(method, role),)
            case "train-aff":
                return (run.affinity_dir(method),)
            case "rw":
                return (run.rw_dir(method, role),)
            case "pseudo-labels":
                return (run.pseudo_labels_dir(method, role),)
            case "train-seg":
                return (run.segmentation_dir(variant),)
            case "predict-eval":
                return (run.predictions_dir(variant, role),)
        return ()

    def folder(self, run: RunDir) -> Path:
        """The folder it writes: its files, or its model's (a training stage)."""
        outputs = self.outputs(run)
        if not outputs:
            raise ValueError(f"stage {self.name} writes no folder of its own")
        return outputs[0]


@dataclass(frozen=True)
class Plan:
    every: tuple[Stage, ...]  # every stage a run may have, in the order they run
    left_out: Mapping[str, str] = field(default_factory=dict)  # stage name -> why not here

    @property
    def stages(self) -> list[Stage]:
        """The run's stages, in order (the data stage first)."""
        return [stage for stage in self.every if stage.name not in self.left_out]

    def scoring(self, key: str) -> Stage | None:
        """The stage that writes the metrics.json key ``key`` (None for a key no stage
        writes)."""
        return next((s for s in self.every if any(c.key == key for c in s.scores)), None)


_MODELS = {  # the trained models, for people
    "train_cls/puzzle_cam": "Puzzle-CAM classifier",
    "train_cls/plain_cam": "Plain-CAM classifier (baseline)",
    "train_aff/puzzle_cam": "AffinityNet on Puzzle-CAM labels",
    "train_aff/plain_cam": "AffinityNet on plain-CAM labels",
    "train_seg/weak": "DeepLabV3+ on pseudo labels",
    "train_seg/full": "DeepLabV3+ on ground truth",
}
_VARIANT_LABELS = {  # variant -> (training, prediction) time lines
    "weak": ("Train DeepLabV3+: pseudo labels", "Predict + evaluate: pseudo-label model"),
    "full": ("Train DeepLabV3+: ground truth", "Predict + evaluate: ground-truth model"),
}
EVAL_GROUP = "eval"  # the evaluations of CAMs and labels: one line of the times, last


def _left_out(config: RunConfig, phase: str, method: str = "", variant: str = "") -> str:
    """Why ``config`` has no stage of ``phase`` for ``method`` / ``variant`` ("" if it has)."""
    if method == "plain_cam" and not config.train_cls.baseline_plain_cam:
        return "no plain-CAM baseline: train_cls.baseline_plain_cam is false"
    if UNTIL_PHASES.index(phase) > UNTIL_PHASES.index(config.until):
        after = "the CAMs" if config.until == "cams" else "the pseudo labels"
        return f"it stops after {after}: until: {config.until}"
    if variant == "full" and not config.train_seg.fully_supervised:
        return "no fully supervised model: train_seg.fully_supervised is false"
    return ""


def make_plan(config: RunConfig) -> Plan:
    """Every stage a run may have, and why ``config`` leaves out those it does."""
    every: list[Stage] = []
    left_out: dict[str, str] = {}

    def add(why: str, name: str, command: str, step: Step, settings: Any, **fields: Any) -> None:
        every.append(Stage(name, command, step, settings, **fields))
        if why:
            left_out[name] = why

    def evaluation(why: str, of: str, step: Step, settings: Any, **fields: Any) -> None:
        add(why, f"eval/{of}", "eval", step, settings, inputs=(of,), group=EVAL_GROUP,
            label="Evaluation", **fields)  # fmt: skip

    add("", "data", "data", "data", config.data, group="data", label="Data")
    for method in METHODS:
        why, group = _left_out(config, "cams", method), f"train_cls/{method}"
        add(why, group, "train-cls", "train-cls",
            {"train_cls": classifier_settings(config.train_cls, method), "method": method},
            inputs=("data",), reads=("train",), method=method, group=group,
            label=f"Train classifier: {METHOD_NAMES[method]}", model=_MODELS[group])  # fmt: skip
    for method in METHODS:
        why = _left_out(config, "cams", method)
        for role in ROLES:
            cams = f"cams/{method}/{role}"
            add(why, cams, "cams", "cams", {"cams": config.cams, "role": role},
                inputs=(f"train_cls/{method}",), reads=(role,), method=method, role=role,
                group=f"cams/{method}", label=f"CAMs: {METHOD_NAMES[method]}")  # fmt: skip
            score = _score(metric_key(method, "cams"), role, "cams")
            evaluation(why, cams, "eval-cams", config.eval, reads=(role,), method=method,
                       role=role, scores=(score,))  # fmt: skip

    # the random-walk refinement of each branch, same settings (the paper's Table 2)
    for method in METHODS:
        why, name = _left_out(config, "pseudo-labels", method), METHOD_NAMES[method]
        labels, aff = f"affinity_labels/{method}", f"train_aff/{method}"
        add(why, labels, "affinity-labels", "affinity-labels",
            {"affinity_labels": config.affinity_labels, "method": method},
            inputs=(f"cams/{method}/train",), reads=("train",), method=method, role="train",
            group=labels, label=f"Affinity labels: {name}")  # fmt: skip
        add(why, aff, "train-aff", "train-aff", {"train_aff": config.train_aff, "method": method},
            inputs=(labels,), reads=("train",), method=method, group=aff,
            label=f"Train AffinityNet: {name}", model=_MODELS[aff])  # fmt: skip
        for role in ROLES:
            rw, pseudo = f"rw/{method}/{role}", f"pseudo_labels/{method}/{role}"
            common: dict[str, Any] = {"reads": (role,), "method": method, "role": role}
            add(why, rw, "rw", "rw", {"rw": config.rw, "method": method, "role": role},
                inputs=(aff, f"cams/{method}/{role}"), group=f"rw/{method}",
                label=f"Random walk: {name}", **common)  # fmt: skip
            evaluation(why, rw, "eval-rw", config.eval,
                       scores=(_score(metric_key(method, "rw"), role),), **common)  # fmt: skip
            add(why, pseudo, "pseudo-labels", "pseudo-labels",
                {"pseudo_labels": config.pseudo_labels, "method": method, "role": role},
                inputs=(rw,), group=f"pseudo_labels/{method}", label=f"Pseudo labels: {name}",
                **common)  # fmt: skip
            scores = tuple(
                _score(metric_key(method, output), role)
                for output in ("pseudo_labels_nocrf", "pseudo_labels")
            )
            evaluation(why, pseudo, "eval-pseudo-labels", config.eval, scores=scores, **common)

    for variant in VARIANTS:
        why, train = _left_out(config, "train-seg", variant=variant), f"train_seg/{variant}"
        trains, predicts = _VARIANT_LABELS[variant]
        add(why, train, "train-seg", "train-seg",
            {"train_seg": segmenter_settings(config.train_seg, variant), "variant": variant},
            inputs=(f"pseudo_labels/{SEGMENTATION_METHOD}/train",) if variant == "weak"
            else ("data",),
            reads=("train",), variant=variant, group=train, label=trains,
            model=_MODELS[train])  # fmt: skip
        add(why, f"eval/predict/{variant}", "eval", "predict-eval",
            {"predict": config.predict, "eval": config.eval}, inputs=(train,), reads=("val",),
            variant=variant, role="val", group=f"predict/{variant}", label=predicts,
            scores=(_score(segmenter_key(variant), "val"),))  # fmt: skip
    return Plan(tuple(every), left_out)


def plan_stages(config: RunConfig) -> list[Stage]:
    """Every stage the config asks for, in order (the data stage first)."""
    return make_plan(config).stages


def every_stage() -> tuple[Stage, ...]:
    """Every stage a run may have, for readers without a config (their names, groups and
    scores are the same for every config; the settings are the defaults')."""
    return make_plan(RunConfig()).every


# --- the time each stage group took (manifest.json): the summary's and the report's -------


@dataclass(frozen=True)
class StageTime:
    group: str  # e.g. "train_cls/puzzle_cam"
    label: str
    parts: int  # finished stages in the group
    seconds: float


def stage_times(stages: Iterable[Stage], manifest: Mapping[str, Any]) -> list[StageTime]:
    """Seconds per stage group of the finished stages: the groups in pipeline order, the
    evaluations (which run between the other stages) as one line, last; a finished stage
    that ``stages`` does not know (a name of an older version) as a line of its own."""
    known = {stage.name: stage for stage in stages}
    rank: dict[str, int] = {}
    for stage in known.values():
        rank.setdefault(stage.group, len(rank))
    groups: dict[str, list[Mapping[str, Any]]] = {}
    labels: dict[str, str] = {}
    for name, entry in manifest.items():
        if isinstance(entry, Mapping):
            stage = known.get(name)
            group = stage.group if stage else name
            labels[group] = stage.label if stage else name
            groups.setdefault(group, []).append(entry)
    order = sorted(groups, key=lambda g: (g == EVAL_GROUP, rank.get(g, len(rank))))
    return [
        StageTime(
            group,
            labels[group],
            len(groups[group]),
            sum(float(entry.get("seconds") or 0.0) for entry in groups[group]),
        )
        for group in order
    ]
