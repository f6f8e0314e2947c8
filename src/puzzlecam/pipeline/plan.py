"""The plan of a run: its stages as typed records, made once from the config.

Each registered stage kind (``pipeline.kinds``; puzzlecam's own in ``pipeline.stages``)
gives the records of its stages for a config; the plan is all of them, kind after kind in
registration order. Every reader of the pipeline's vocabulary reads these records: the
runner (name, kind, settings, inputs, the splits read, the output folders it clears), the
stage functions (branch, split, segmentation model, settings, the scores they write), the
printed summary and the report (which stages the run has, and why it has no others; the
time groups and their names; the trained models).

The plan lists *every* stage a run may have (``Plan.every``: both CAM branches, every
phase, both segmentation models), each left out by the config with a reason
(``Plan.left_out``); the run's own stages are the others (``Plan.stages``). The names,
groups and scores of ``every`` are the same for every config: only the settings differ.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import puzzlecam.pipeline.stages  # noqa: F401  (registers puzzlecam's stage kinds)
from puzzlecam.pipeline.config import RunConfig
from puzzlecam.pipeline.kinds import EVAL_GROUP, ROLES, Score, Stage, stage_kinds

__all__ = [
    "ROLES",
    "Score",
    "Stage",
    "Plan",
    "make_plan",
    "plan_stages",
    "stage_commands",
    "every_stage",
    "EVAL_GROUP",
    "StageTime",
    "stage_times",
]


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


def make_plan(config: RunConfig) -> Plan:
    """Every stage a run may have, and why ``config`` leaves out those it does."""
    every: list[Stage] = []
    known: set[str] = set()
    left_out: dict[str, str] = {}
    for kind in stage_kinds():
        for why, stage in kind.plan(config):
            missing = [name for name in stage.inputs if name not in known]
            if stage.name in known or missing:
                problem = (
                    "a second stage of that name"
                    if stage.name in known
                    else (f"its inputs {missing} come from no stage before it")
                )
                raise ValueError(f"stage kind {kind.name}: stage {stage.name}: {problem}")
            every.append(stage)
            known.add(stage.name)
            if why:
                left_out[stage.name] = why
    return Plan(tuple(every), left_out)


def stage_commands() -> dict[str, str]:
    """The CLI command of each registered stage kind that has help, and that help, in
    pipeline order (a kind without help runs under another's command)."""
    out: dict[str, str] = {}
    for kind in stage_kinds():
        if kind.help:
            out.setdefault(kind.command, kind.help)
    return out


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
