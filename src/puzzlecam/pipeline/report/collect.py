"""What a run directory holds, read once into a typed summary the report is drawn from.

Everything is read leniently: a missing or unreadable file leaves its piece empty and a
note saying so, because a report of a half-finished or damaged run is still useful.
Names and paths come from :mod:`puzzlecam.pipeline.branches` and :class:`RunDir`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from puzzlecam.constants import BACKGROUND
from puzzlecam.data import SplitData, load_split
from puzzlecam.errors import PuzzlecamError
from puzzlecam.io import read_json
from puzzlecam.pipeline.branches import BRANCH_SCORES, METHOD_NAMES, branch_of
from puzzlecam.pipeline.config import RunConfig, load_run_config
from puzzlecam.pipeline.report.text import describe
from puzzlecam.pipeline.run_dir import RunDir

__all__ = [
    "PHASES",
    "METHODS",
    "METHOD_LABELS",
    "ROLES",
    "Method",
    "TrainedModel",
    "StageTime",
    "RunSummary",
    "method_order",
    "trained_models",
    "eval_name",
    "load_run",
    "stage_times",
    "ClassScores",
    "threshold_curves",
    "per_class",
]

ROLES = ("train", "val")


@dataclass(frozen=True)
class Method:
    """A row of the metrics table: one key of metrics.json."""

    key: str
    label: str
    phase: str
    colour: str  # the same in every figure


PHASES = ("Classifier CAMs", "Random-walk refinement", "Segmentation model")
_COLOURS = {
    "plain_cam": "#7f7f7f",
    "puzzle_cam": "#1f77b4",
    "rw": "#ff7f0e",
    "pseudo_labels_nocrf": "#bcbd22",
    "pseudo_labels": "#2ca02c",
    "plain_cam_rw": "#8c564b",
    "plain_cam_pseudo_labels_nocrf": "#c5b0d5",
    "plain_cam_pseudo_labels": "#17becf",
    "deeplab_weak": "#d62728",
    "deeplab_full": "#9467bd",
}
# the CAM branches' scores (names and order from puzzlecam.pipeline.branches), then
# the segmentation models
METHODS: tuple[Method, ...] = tuple(
    Method(s.key, s.label, PHASES[0 if s.output == "cams" else 1], _COLOURS[s.key])
    for s in BRANCH_SCORES
) + (
    Method("deeplab_weak", "DeepLabV3+ on pseudo labels", PHASES[2], _COLOURS["deeplab_weak"]),
    Method("deeplab_full", "DeepLabV3+ on ground truth", PHASES[2], _COLOURS["deeplab_full"]),
)
METHOD_LABELS: dict[str, str] = {m.key: m.label for m in METHODS}
"""Human names of the methods of metrics.json, in pipeline order."""
_ORDER = [m.key for m in METHODS]


def method_order(key: str) -> tuple[int, str]:
    """Sort key: pipeline order, unknown keys last by name."""
    return (_ORDER.index(key) if key in _ORDER else len(_ORDER), key)


def eval_name(key: str, split: str) -> str:
    """The eval/*.json name the pipeline gives ``key``'s evaluation on ``split`` (the CAMs'
    carry a ``cams_`` prefix; see puzzlecam.pipeline.branches)."""
    score = branch_of(key)
    return f"cams_{key}_{split}" if score and score.output == "cams" else f"{key}_{split}"


@dataclass(frozen=True)
class TrainedModel:
    folder: Path
    title: str
    method: str  # the metrics key whose absence explains a missing model


def trained_models(run: RunDir) -> list[TrainedModel]:
    """Every model a run may train, in pipeline order."""
    return [
        TrainedModel(run.classifier_dir("puzzle_cam"), "Puzzle-CAM classifier", "puzzle_cam"),
        TrainedModel(run.classifier_dir("plain_cam"), "Plain-CAM classifier (baseline)", "plain_cam"),
        TrainedModel(run.affinity_dir("puzzle_cam"), "AffinityNet on Puzzle-CAM labels", "rw"),
        TrainedModel(run.affinity_dir("plain_cam"), "AffinityNet on plain-CAM labels", "plain_cam_rw"),
        TrainedModel(run.segmentation_dir("weak"), "DeepLabV3+ on pseudo labels", "deeplab_weak"),
        TrainedModel(run.segmentation_dir("full"), "DeepLabV3+ on ground truth", "deeplab_full"),
    ]  # fmt: skip


# --- stage times (manifest.json) -------------------------------------------------------------

_PER_METHOD = {  # stage groups whose times are shown per CAM branch
    "affinity_labels": "Affinity labels",
    "train_aff": "Train AffinityNet",
    "rw": "Random walk",
    "pseudo_labels": "Pseudo labels",
}
_GROUP_LABELS = {
    "data": "Data",
    "train_cls/puzzle_cam": "Train classifier: Puzzle-CAM",
    "train_cls/plain_cam": "Train classifier: plain CAM",
    "cams": "CAMs",
    "eval": "Evaluation",
    **{
        f"{group}/{method}": f"{title}: {name}"
        for group, title in _PER_METHOD.items()
        for method, name in METHOD_NAMES.items()
    },
    "train_seg/weak": "Train DeepLabV3+: pseudo labels",
    "train_seg/full": "Train DeepLabV3+: ground truth",
    "predict/weak": "Predict + evaluate: pseudo-label model",
    "predict/full": "Predict + evaluate: ground-truth model",
}


def _stage_group(name: str) -> str:
    parts = name.split("/")
    if parts[0] == "eval" and len(parts) > 2 and parts[1] == "predict":
        return f"predict/{parts[2]}"
    if parts[0] in ("train_cls", "train_seg", *_PER_METHOD) and len(parts) > 1:
        return "/".join(parts[:2])
    return parts[0]


@dataclass(frozen=True)
class StageTime:
    group: str  # e.g. "train_cls/puzzle_cam"
    label: str
    parts: int  # finished stages in the group
    seconds: float


def stage_times(manifest: Mapping[str, Any]) -> list[StageTime]:
    """Seconds per stage group in the order the stages finished, evaluations (which run
    between the other stages) as one line, last."""
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for name, entry in manifest.items():
        if isinstance(entry, Mapping):
            groups.setdefault(_stage_group(name), []).append(entry)
    if "eval" in groups:
        groups["eval"] = groups.pop("eval")
    return [
        StageTime(
            group,
            _GROUP_LABELS.get(group, group),
            len(entries),
            sum(float(e.get("seconds") or 0.0) for e in entries),
        )
        for group, entries in groups.items()
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
        config = self.config
        if config is None:
            return "missing", "missing (config.yaml is missing)"
        branch = branch_of(key)
        if branch and branch.method == "plain_cam" and not config.train_cls.baseline_plain_cam:
            return "not in this run", (
                "not in this run (no plain-CAM baseline: train_cls.baseline_plain_cam is false)"
            )
        if not (branch and branch.output == "cams") and config.until == "cams":
            return "not in this run", "not in this run (it stops after the CAMs: until: cams)"
        if key.startswith("deeplab") and config.until != "train-seg":
            return "not in this run", (
                f"not in this run (it stops after the pseudo labels: until: {config.until})"
            )
        if key == "deeplab_full" and not config.train_seg.fully_supervised:
            return "not in this run", (
                "not in this run (no fully supervised model: train_seg.fully_supervised is false)"
            )
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
    evals = {}
    for method in METHODS:
        for split in ROLES:
            data = _read_json_or_note(run.eval_path(eval_name(method.key, split)), notes)
            if isinstance(data, dict):
                evals[(method.key, split)] = data
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
