"""The CAM branches of a run and the names their scores go by in metrics.json.

Each classifier a run trains is a *branch*: ``puzzle_cam`` always, ``plain_cam`` (the
same classifier with the puzzle terms off) when ``train_cls.baseline_plain_cam`` is set.
Both branches go through the same refinement (affinity labels, AffinityNet, random
walk, pseudo labels) with the same settings, which is the paper's Table 2; the
segmentation model learns from the Puzzle-CAM branch's pseudo labels only.

A flag that adds a branch (``train_cls.baseline_plain_cam``, ``train_seg.fully_supervised``)
changes no other stage's output, so it enters a stage's settings (and so its fingerprint)
only as whether the stage belongs to that branch (``classifier_settings``,
``segmenter_settings``): adding a branch leaves the others done, and a run without the
branch keeps the fingerprints it had. The plain-CAM classifier trains with the puzzle
terms off, so no puzzle setting reaches it (``PLAIN_CAM_PUZZLE``).

Every score of a branch has one key in metrics.json, defined here and nowhere else
(the pipeline writes them, the summary and the report read them). The Puzzle-CAM
branch keeps the keys it always had (``rw``, ``pseudo_labels`` ...); the plain
branch's carry its name (``plain_cam_rw`` ...); the segmentation models' are
``SEGMENTER_SCORES``. The evaluation file of each score is named by the plan
(``pipeline.plan``, ``Score.eval_name``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from puzzlecam.pipeline.config import TrainClsConfig, TrainSegConfig
from puzzlecam.pipeline.kinds import PHASES, Metric
from puzzlecam.puzzle.losses import PuzzleConfig

__all__ = [
    "METHODS",
    "SEGMENTATION_METHOD",
    "OUTPUTS",
    "METHOD_NAMES",
    "TABLE_METHODS",
    "branch_title",
    "branch_suffix",
    "VARIANTS",
    "PLAIN_CAM_PUZZLE",
    "classifier_settings",
    "segmenter_settings",
    "TABLE2_COLUMNS",
    "BRANCH_SCORES",
    "metric_key",
    "branch_of",
    "branch_table",
    "table2_columns",
    "SEGMENTER_SCORES",
    "segmenter_key",
]

Output = Literal["cams", "rw", "pseudo_labels_nocrf", "pseudo_labels"]

METHODS = ("puzzle_cam", "plain_cam")
"""The branches, the main one first."""

SEGMENTATION_METHOD = "puzzle_cam"
"""The branch whose pseudo labels train the segmentation model."""

OUTPUTS: tuple[Output, ...] = ("cams", "rw", "pseudo_labels_nocrf", "pseudo_labels")
"""What each branch is scored on, in pipeline order: its CAMs, the random-walk scores
(best background threshold), the pseudo labels before and after the dense CRF."""

METHOD_NAMES = {"puzzle_cam": "Puzzle-CAM", "plain_cam": "plain CAM"}

TABLE_METHODS = ("plain_cam", "puzzle_cam")
"""The branches in the order tables show them: the baseline first (the paper's Table 2)."""


def branch_title(method: str) -> str:
    """The branch's name at the start of a title: "Plain CAM", "Puzzle-CAM"."""
    name = METHOD_NAMES[method]
    return name[:1].upper() + name[1:]


def branch_suffix(method: str) -> str:
    """What a title of the baseline's pictures ends with, " (plain CAM)"; "" for the main
    branch's."""
    return "" if method == METHODS[0] else f" ({METHOD_NAMES[method]})"


VARIANTS = ("weak", "full")
"""The segmentation models: ``weak`` learns from the pseudo labels, ``full`` from ground
truth (the upper bound, when ``train_seg.fully_supervised`` is set)."""

PLAIN_CAM_PUZZLE = PuzzleConfig(puzzle_classification=False, reconstruction=False, alpha_max=0.0)
"""The plain-CAM classifier's puzzle settings: L_cls alone. With both terms off nothing
else of the puzzle config reaches the weights (alpha, 0 here, weighs a zero term)."""


def classifier_settings(train_cls: TrainClsConfig, method: str) -> TrainClsConfig:
    """The settings ``method``'s classifier trains with, its fingerprint's: Puzzle-CAM's
    configured puzzle terms or plain CAM's ``PLAIN_CAM_PUZZLE``, and the baseline flag
    only as whether this is the baseline."""
    puzzle = PLAIN_CAM_PUZZLE if method == "plain_cam" else train_cls.puzzle
    return dataclasses.replace(train_cls, puzzle=puzzle, baseline_plain_cam=method == "plain_cam")


def segmenter_settings(train_seg: TrainSegConfig, variant: str) -> TrainSegConfig:
    """The settings the segmentation model ``variant`` (``weak`` on the pseudo labels,
    ``full`` on ground truth) trains with, its fingerprint's: ``fully_supervised`` only as
    whether this is the fully supervised one."""
    return dataclasses.replace(train_seg, fully_supervised=variant == "full")


TABLE2_COLUMNS: tuple[tuple[Output, str], ...] = (
    ("cams", "CAM"),
    ("rw", "random walk"),
    ("pseudo_labels", "pseudo labels"),
)
"""The columns of the paper's Table 2 (each on train and val): output, title."""


def _branch(key: str, method: str, output: Output, label: str, colour: str) -> Metric:
    return Metric(key, label, colour, PHASES[0 if output == "cams" else 1], method, output)


BRANCH_SCORES: tuple[Metric, ...] = (
    _branch("plain_cam", "plain_cam", "cams", "Plain CAM (baseline)", "#7f7f7f"),
    _branch("puzzle_cam", "puzzle_cam", "cams", "Puzzle-CAM", "#1f77b4"),
    _branch("plain_cam_rw", "plain_cam", "rw", "Plain CAM → random walk", "#8c564b"),
    _branch("plain_cam_pseudo_labels_nocrf", "plain_cam", "pseudo_labels_nocrf",
            "Plain CAM → pseudo labels, no CRF", "#c5b0d5"),
    _branch("plain_cam_pseudo_labels", "plain_cam", "pseudo_labels",
            "Plain CAM → pseudo labels", "#17becf"),
    _branch("rw", "puzzle_cam", "rw", "Puzzle-CAM → random walk", "#ff7f0e"),
    _branch("pseudo_labels_nocrf", "puzzle_cam", "pseudo_labels_nocrf",
            "Puzzle-CAM → pseudo labels, no CRF", "#bcbd22"),
    _branch("pseudo_labels", "puzzle_cam", "pseudo_labels", "Puzzle-CAM → pseudo labels",
            "#2ca02c"),
)  # fmt: skip
"""Every score of every branch (``Metric.method``, ``Metric.output``), in the order tables
show them (the baseline first, as the paper's Table 2), each with its colour in every
figure. The evaluation kinds that write them declare them (``pipeline.stages``)."""

_KEYS = {(s.method, s.output): s.key for s in BRANCH_SCORES}
_BY_KEY = {s.key: s for s in BRANCH_SCORES}


def metric_key(method: str, output: Output) -> str:
    """The metrics.json key of ``method``'s ``output``: ``("plain_cam", "rw")`` ->
    ``"plain_cam_rw"``."""
    try:
        return _KEYS[(method, output)]
    except KeyError:
        raise KeyError(
            f"no score '{output}' of branch '{method}'; branches {list(METHODS)}, "
            f"outputs {list(OUTPUTS)}"
        ) from None


def branch_of(key: str) -> Metric | None:
    """The branch score a metrics.json key names (None for other keys, e.g. deeplab_weak)."""
    return _BY_KEY.get(key)


def table2_columns(
    table: Mapping[str, Mapping[tuple[Output, str], float]],
) -> list[tuple[Output, str]]:
    """The (output, split) cells of ``branch_table``'s Table 2 that some branch has, in the
    paper's column order (each output on train, then val): the one layout of Table 2 that
    the printed summary and the report show."""
    return [
        (output, split)
        for output, _ in TABLE2_COLUMNS
        for split in ("train", "val")
        if any((output, split) in cells for cells in table.values())
    ]


def branch_table(metrics: Mapping[str, Any]) -> dict[str, dict[tuple[Output, str], float]]:
    """The paper's Table 2 from metrics.json: method -> (output, split) -> mIoU, only
    the methods and cells the run has, plain CAM first (the paper's row order)."""
    table: dict[str, dict[tuple[Output, str], float]] = {}
    for score in BRANCH_SCORES:
        splits = metrics.get(score.key)
        if not isinstance(splits, Mapping):
            continue
        for split, values in splits.items():
            miou = values.get("miou") if isinstance(values, Mapping) else None
            if isinstance(miou, (int, float)):
                table.setdefault(score.method, {})[(score.output, split)] = float(miou)
    return table


SEGMENTER_SCORES: tuple[Metric, ...] = (
    Metric("deeplab_weak", "DeepLabV3+ on pseudo labels", "#d62728", PHASES[2], variant="weak"),
    Metric("deeplab_full", "DeepLabV3+ on ground truth", "#9467bd", PHASES[2], variant="full"),
)
"""The segmentation models' scores on val, in the order tables show them."""

_SEGMENTER_KEYS = {s.variant: s.key for s in SEGMENTER_SCORES}


def segmenter_key(variant: str) -> str:
    """The metrics.json key of the segmentation model ``variant``: ``"weak"`` ->
    ``"deeplab_weak"``."""
    try:
        return _SEGMENTER_KEYS[variant]
    except KeyError:
        raise KeyError(f"no segmentation model '{variant}'; variants {list(VARIANTS)}") from None
