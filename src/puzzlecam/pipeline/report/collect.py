"""What a run directory holds, read once into a typed summary the report is drawn from.

Everything is read leniently: a missing or unreadable file leaves its piece empty and a
note saying so, because a report of a half-finished or damaged run is still useful.
Which stages the run has, their scores, eval files, models and time groups come from the
plan (:mod:`puzzlecam.pipeline.plan`), names from :mod:`puzzlecam.pipeline.branches`,
paths from :class:`RunDir`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from puzzlecam.constants import BACKGROUND
from puzzlecam.data import SplitData, load_split
from puzzlecam.errors import PuzzlecamError
from puzzlecam.io import read_json
from puzzlecam.pipeline.branches import TABLE_METHODS
from puzzlecam.pipeline.config import RunConfig, load_run_config
from puzzlecam.pipeline.kinds import PHASES, Metric, metrics
from puzzlecam.pipeline.plan import Plan, every_stage, make_plan
from puzzlecam.pipeline.report.text import describe
from puzzlecam.pipeline.run_dir import RunDir

__all__ = [
    "PHASES",
    "table_metrics",
    "metric_label",
    "ROLES",
    "TrainedModel",
    "RunSummary",
    "method_order",
    "trained_models",
    "load_run",
    "ClassScores",
    "threshold_curves",
    "per_class",
]

ROLES = ("train", "val")


def _table_order(metric: Metric) -> tuple[int, int]:
    """Phase by phase; within a phase the branches as tables show them (baseline first)."""
    phase = PHASES.index(metric.phase) if metric.phase in PHASES else len(PHASES)
    branch = TABLE_METHODS.index(metric.method) if metric.method in TABLE_METHODS else 0
    return phase, branch


def table_metrics() -> tuple[Metric, ...]:
    """Every metric of the registered stage kinds (``pipeline.kinds``), in the tables'
    order: the report's rows, labels and colours."""
    return tuple(sorted(metrics(), key=_table_order))


def metric_label(key: str) -> str:
    """The name for people of the metrics.json key ``key`` (the key itself if unknown)."""
    return next((m.label for m in metrics() if m.key == key), key)


def method_order(key: str) -> tuple[int, str]:
    """Sort key: pipeline order, unknown keys last by name."""
    order = [m.key for m in table_metrics()]
    return (order.index(key) if key in order else len(order), key)


@dataclass(frozen=True)
class TrainedModel:
    folder: Path
    title: str
    stage: str  # the stage that trains it, whose absence explains a missing model


def trained_models(summary: RunSummary) -> list[TrainedModel]:
    """Every model a run may train, in pipeline order."""
    return [
        TrainedModel(stage.folder(summary.run), stage.model, stage.name)
        for stage in summary.plan.every
        if stage.model
    ]


# --- the summary -----------------------------------------------------------------------------


@dataclass
class RunSummary:
    """Everything read from the run directory (each piece None/empty when absent)."""

    run: RunDir
    config: RunConfig | None
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    evals: dict[tuple[str, str], dict[str, Any]]  # (metrics key, split) -> eval/*.json
    splits: dict[str, SplitData]  # role -> the data set's split
    classes: tuple[str, ...]
    plan: Plan  # every stage a run may have; which this run has (with its config)
    notes: list[str] = field(default_factory=list)  # what could not be read

    @property
    def name(self) -> str:
        return self.config.name if self.config else self.run.root.name

    def entry(self, method: str, split: str) -> dict[str, Any]:
        """metrics.json's values of ``method`` on ``split`` ({} when absent)."""
        splits = self.metrics.get(method)
        values = splits.get(split) if isinstance(splits, dict) else None
        return values if isinstance(values, dict) else {}

    def miou(self, method: str, split: str) -> float | None:
        value = self.entry(method, split).get("miou")
        return value if isinstance(value, (int, float)) else None

    def absence(self, key: str) -> tuple[str, str]:
        """Why the outputs of method ``key`` (and the models and files behind it) are
        absent: a few words for a table cell, and the full reason."""
        stage = self.plan.scoring(key)
        return self.stage_absence(stage.name if stage else "")

    def stage_absence(self, name: str) -> tuple[str, str]:
        """Why the outputs of the stage ``name`` are absent: the plan leaves it out of this
        run (and says why), or it has not finished."""
        if self.config is None:
            return "missing", "missing (config.yaml is missing)"
        why = self.plan.left_out.get(name)
        if why:
            return "not in this run", f"not in this run ({why})"
        return "not done yet", (
            "not done yet: their stages have not finished (`puzzlecam run` completes the run)"
        )


def _read_json_or_note(path: Path, notes: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except PuzzlecamError as error:
        notes.append(f"A file could not be read: {describe(error)}.")
        return None


def _load_config(run: RunDir, notes: list[str]) -> RunConfig | None:
    if not run.config_path.is_file():
        notes.append("config.yaml is missing: this folder holds no run, or only part of one.")
        return None
    try:
        return load_run_config(run.config_path)
    except (PuzzlecamError, ValueError, TypeError) as error:
        notes.append(f"config.yaml could not be read ({describe(error)}).")
        return None


def _load_splits(config: RunConfig | None, notes: list[str]) -> dict[str, SplitData]:
    splits: dict[str, SplitData] = {}
    if config is None:
        return splits
    for role in ("val", "train"):
        try:
            splits[role] = load_split(config.data, role)
        except (PuzzlecamError, OSError, ValueError) as error:
            notes.append(
                f"The {role} split of the data set could not be read ({describe(error)}): "
                "its sample images are not shown."
            )
    return splits


def load_run(run: RunDir) -> RunSummary:
    """Read what ``run`` holds; never raises for a missing or damaged file."""
    notes: list[str] = []
    config = _load_config(run, notes)
    metrics = _read_json_or_note(run.metrics_path, notes)
    manifest = _read_json_or_note(run.manifest_path, notes)
    # without a config, every stage a run may have (the names are the same for all)
    plan = make_plan(config) if config else Plan(every_stage())
    evals = {}
    for score in (score for stage in plan.every for score in stage.scores):
        data = _read_json_or_note(run.eval_path(score.eval_name), notes)
        if isinstance(data, dict):
            evals[(score.key, score.split)] = data
    splits = _load_splits(config, notes)
    classes: tuple[str, ...] = next((data.classes for data in splits.values()), ())
    if not classes:  # the data set is gone: the class names are in the evaluations
        for data in evals.values():
            names = [n for n in data.get("per_class", {}) if n != BACKGROUND]
            if names:
                classes = tuple(names)
                break
    return RunSummary(
        run,
        config,
        metrics if isinstance(metrics, dict) else {},
        manifest if isinstance(manifest, dict) else {},
        evals,
        splits,
        classes,
        plan,
        notes,
    )


# --- what the figures show (eval/*.json) -------------------------------------------------------

Sweep = list[dict[str, Any]]  # [{"threshold": t, "miou": m, ...}], one per threshold tried


def threshold_curves(summary: RunSummary) -> dict[str, list[tuple[str, Sweep]]]:
    """Per split (train first), the threshold sweeps of the methods that have one, in
    pipeline order."""
    curves: dict[str, list[tuple[str, Sweep]]] = {}
    for (method, split), data in sorted(summary.evals.items(), key=lambda e: method_order(e[0][0])):
        sweep = [p for p in data.get("sweep") or [] if isinstance(p.get("miou"), (int, float))]
        if len(sweep) >= 2:
            curves.setdefault(split, []).append((method, sweep))
    return {split: curves[split] for split in ROLES if split in curves}


@dataclass(frozen=True)
class ClassScores:
    method: str
    ious: list[float | None]  # percent, per class in the order of the class names
    miou: float | None


def per_class(summary: RunSummary) -> tuple[list[str], list[ClassScores]]:
    """Class names (background first) and the IoUs of each method evaluated on val."""
    entries = []
    for (method, split), data in sorted(summary.evals.items(), key=lambda e: method_order(e[0][0])):
        scores = data.get("per_class")
        if split == "val" and isinstance(scores, dict) and scores:
            miou = data.get("miou")
            entries.append((method, scores, miou if isinstance(miou, (int, float)) else None))
    if not entries:
        return [], []
    names = list(entries[0][1])
    return names, [
        ClassScores(method, [scores.get(n, {}).get("iou") for n in names], miou)
        for method, scores, miou in entries
    ]
