"""What each section of the page shows, as plain data for the template: every number
formatted, every absence explained, no HTML (the template owns the markup and escapes)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from puzzlecam.data import split_name
from puzzlecam.pipeline.branches import (
    TABLE2_COLUMNS,
    branch_table,
    branch_title,
    segmenter_key,
    table2_columns,
)
from puzzlecam.pipeline.plan import stage_times
from puzzlecam.pipeline.report.collect import (
    ClassScores,
    RunSummary,
    metric_label,
    table_metrics,
)
from puzzlecam.pipeline.report.text import duration, fmt, plural, shown_path

__all__ = [
    "Span",
    "Line",
    "Header",
    "Card",
    "MetricRow",
    "Phase",
    "Ratio",
    "TimeRow",
    "Table2",
    "Figure",
    "header",
    "run_rows",
    "key_numbers",
    "metric_phases",
    "ratios",
    "times",
    "table2",
    "PerClassTable",
    "per_class_table",
    "missing_summary",
]


@dataclass(frozen=True)
class Span:
    text: str
    code: bool = False  # shown as code: a name to type or look for


Line = list[Span]


def _code(text: str) -> Span:
    return Span(text, code=True)


@dataclass(frozen=True)
class Header:
    name: str
    run_name: str  # the folder's name
    when: str
    written: str
    links: list[str]  # files of the run beside report/, relative to the run


@dataclass(frozen=True)
class Card:
    value: str
    label: str


@dataclass(frozen=True)
class MetricRow:
    key: str
    label: str
    split: str | None
    values: list[str]  # mIoU, threshold, FP, FN, images
    missing: str = ""  # a few words when the method has no numbers ...
    reason: str = ""  # ... and the full reason


@dataclass(frozen=True)
class Phase:
    title: str
    rows: list[MetricRow]


@dataclass(frozen=True)
class Ratio:
    split: str
    weak: str
    full: str
    percent: str


@dataclass(frozen=True)
class TimeRow:
    group: str
    label: str
    parts: int
    time: str
    share: str


@dataclass(frozen=True)
class Table2Row:
    branch: str
    name: str
    cells: list[str]


@dataclass(frozen=True)
class Table2:
    groups: list[tuple[str, int]]  # column title, how many splits under it
    splits: list[str]  # under each title
    rows: list[Table2Row]
    difference: Table2Row | None  # Puzzle-CAM minus plain CAM, when the run has both
    notes: list[str]


@dataclass(frozen=True)
class Figure:
    src: str
    alt: str
    caption: str
    link: tuple[str, str] | None = None  # (href, text) after the caption


@dataclass(frozen=True)
class PerClassTable:
    methods: list[str]  # column titles
    rows: list[tuple[str, list[str]]]  # class, IoU per method
    mious: list[str]  # per method


# --- header and run summary ------------------------------------------------------------------


def header(summary: RunSummary) -> Header:
    finished = sorted(
        e.get("finished", "") for e in summary.manifest.values() if isinstance(e, dict)
    )
    finished = [f for f in finished if f]
    when = (
        f"stages finished {finished[0].replace('T', ' ')} – {finished[-1].replace('T', ' ')}"
        if finished
        else "no stage has finished yet"
    )
    run = summary.run
    links = [
        path.relative_to(run.root).as_posix()
        for path in (run.config_path, run.metrics_path, run.manifest_path)
        if path.is_file()
    ]
    return Header(summary.name, run.root.name, when, time.strftime("%Y-%m-%d %H:%M"), links)


def _model(backbone: Any, loop: Any, extra: str = "") -> Line:
    weights = shown_path(backbone.pretrained) if backbone.pretrained else "none"
    return [
        _code(backbone.name),
        Span(
            f" (weights: {weights}, BN {backbone.norm}), "
            f"{plural(loop.epochs, 'epoch')}, batch {loop.batch_size}{extra}"
        ),
    ]


_OPTIMISER_NAMES = {"sgd": "SGD", "adamw": "AdamW"}


def _optimiser(optim: Any) -> str:
    """The optimiser and learning rate that follow a model's line: ", AdamW lr 0.0003"."""
    return f", {_OPTIMISER_NAMES.get(optim.name, optim.name)} lr {optim.lr:g}"


def run_rows(summary: RunSummary) -> list[tuple[str, list[Line]]]:
    """The run's settings, a few lines per part of the pipeline it has."""
    config = summary.config
    if config is None:
        return []
    data = config.data
    data_lines: list[Line] = [
        [
            _code(data.format),
            Span(" at "),
            _code(shown_path(data.root)),
            Span(f", {len(summary.classes)} classes"),
        ]
    ]
    for role in ("train", "val"):
        split = summary.splits.get(role)
        name = split.name if split else split_name(data, role)
        if split is not None:
            masks = sum(1 for s in split.samples if s.mask_path)
            shown = f"{len(split)} images ({masks} with masks)"
        else:
            images = summary.entry("puzzle_cam", role).get("num_images")
            shown = f"{images} images evaluated" if images else "not readable"
        data_lines.append([Span(f"{role} "), _code(name), Span(f": {shown}")])
    rows = [("Data", data_lines)]

    cls = config.train_cls
    puzzle = cls.puzzle
    terms = [
        t
        for t, on in (
            ("L_cls", True),
            ("L_pcls", puzzle.puzzle_classification),
            (f"{puzzle.alpha_max:g}·L_re", puzzle.reconstruction),
        )
        if on
    ]
    loss = f"loss {' + '.join(terms)}, puzzle grid {puzzle.grid}×{puzzle.grid}"
    if puzzle.reconstruction and puzzle.reconstruction_level == "normalized":
        loss += ", L_re on max-normalised maps"
    if puzzle.start > 0:
        loss += f", puzzle terms from {puzzle.start:.0%} of training"
    if cls.baseline_plain_cam:
        loss += "; plus a plain-CAM baseline"
    rows.append(
        ("Classifier", [_model(cls.backbone, cls.loop, _optimiser(cls.optim)), [Span(loss)]])
    )
    scales = ", ".join(f"{s:g}" for s in config.cams.scales)
    flips = " with horizontal flips" if config.cams.flip else ""
    rows.append(("CAMs", [[Span(f"scales {scales}{flips}")]]))
    if config.until != "cams":
        aff, rw = config.affinity_labels, config.rw
        text = (
            f"affinity labels fg {aff.fg_threshold:g} / bg {aff.bg_threshold:g}, "
            f"random walk β {rw.beta:g}, {2**rw.exp_times} steps, radius {rw.radius}; "
            f"pseudo labels at threshold {config.pseudo_labels.threshold:g}"
        )
        if cls.baseline_plain_cam:
            text += (
                "; the same for each classifier's CAMs (plain CAM and Puzzle-CAM), "
                "DeepLabV3+ learns from Puzzle-CAM's"
            )
        aff_model = _model(
            config.train_aff.backbone, config.train_aff.loop, _optimiser(config.train_aff.optim)
        )
        rows.append(("AffinityNet", [aff_model, [Span(text)]]))
    if config.until == "train-seg":
        seg = config.train_seg
        line = _model(seg.backbone, seg.loop, _optimiser(seg.optim))
        if seg.fully_supervised:
            line.append(Span("; also trained on ground truth"))
        rows.append(("DeepLabV3+", [line]))
    pipeline = [Span("until "), _code(config.until), Span(f", device {config.device}, ")]
    pipeline += [Span("inference engine "), _code(config.engine)]
    rows.append(("Pipeline", [pipeline]))
    return rows


# --- metrics and times -------------------------------------------------------------------------


def key_numbers(summary: RunSummary) -> list[Card]:
    cards = []
    for method, split, label in (
        ("plain_cam", "val", "Plain CAM (val)"),
        ("puzzle_cam", "val", "Puzzle-CAM (val)"),
        ("plain_cam_pseudo_labels", "train", "Plain-CAM pseudo labels (train)"),
        ("pseudo_labels", "train", "Puzzle-CAM pseudo labels (train)"),
        (segmenter_key("weak"), "val", "DeepLabV3+ weak (val)"),
        (segmenter_key("full"), "val", "DeepLabV3+ full (val)"),
    ):
        value = summary.miou(method, split)
        if value is not None:
            cards.append(Card(f"{value:.1f} %", label))
    weak, full = _weak_and_full(summary, "val")
    if weak is not None and full:
        cards.append(Card(f"{100 * weak / full:.1f} %", "of full supervision (val)"))
    return cards


def metric_phases(summary: RunSummary) -> list[Phase]:
    """metrics.json per pipeline phase: a row per method and split; a row saying why for
    a method without numbers; keys the report does not know last, under "Other"."""
    metrics = summary.metrics
    known = table_metrics()
    others = [
        k for k in metrics if k not in {m.key for m in known} and isinstance(metrics[k], dict)
    ]
    phases: list[tuple[str, list[str]]] = []
    for metric in known:  # the phases in the tables' order, each with its metrics
        if not phases or phases[-1][0] != metric.phase:
            phases.append((metric.phase, []))
        phases[-1][1].append(metric.key)
    if others:
        phases.append(("Other", others))
    shown = []
    for title, keys in phases:
        rows = []
        for key in keys:
            label = metric_label(key)
            splits = metrics.get(key)
            if not isinstance(splits, dict) or not splits:
                short, reason = summary.absence(key)
                rows.append(MetricRow(key, label, None, [], short, reason))
                continue
            for split in sorted(splits, key=lambda s: (s != "train", s)):
                values = splits[split]
                if isinstance(values, dict):
                    cells = [
                        fmt(values.get("miou"), 1),
                        fmt(values.get("threshold"), 2),
                        fmt(values.get("fp"), 3),
                        fmt(values.get("fn"), 3),
                        str(values.get("num_images", "–")),
                    ]
                    rows.append(MetricRow(key, label, split, cells))
        shown.append(Phase(title, rows))
    return shown


def _weak_and_full(summary: RunSummary, split: str) -> tuple[float | None, float | None]:
    """The mIoU of the segmentation models on ``split``: on pseudo labels, on ground truth."""
    return summary.miou(segmenter_key("weak"), split), summary.miou(segmenter_key("full"), split)


def ratios(summary: RunSummary) -> list[Ratio]:
    """The weakly supervised model's mIoU as a share of the fully supervised one's."""
    shown = []
    for split in ("val", "train"):
        weak, full = _weak_and_full(summary, split)
        if weak is not None and full is not None and full > 0:
            shown.append(Ratio(split, f"{weak:.1f}", f"{full:.1f}", f"{100 * weak / full:.1f}"))
    return shown


def times(summary: RunSummary) -> list[TimeRow]:
    """Time per stage group from manifest.json (the groups of the printed summary), and a
    total ([] when nothing finished)."""
    groups = stage_times(summary.plan.every, summary.manifest)
    if not groups:
        return []
    total = sum(g.seconds for g in groups)
    rows = [
        TimeRow(
            g.group,
            g.label,
            g.parts,
            duration(g.seconds),
            f"{100 * g.seconds / total:.0f} %" if total > 0 else "–",
        )
        for g in groups
    ]
    return rows + [TimeRow("total", "Total", sum(g.parts for g in groups), duration(total), "")]


def table2(summary: RunSummary) -> Table2 | None:
    """The paper's Table 2: each CAM branch's mIoU after each refinement step."""
    table = branch_table(summary.metrics)
    if not table:
        return None
    cells = table2_columns(table)
    groups = [
        (title, sum(o == output for o, _ in cells))
        for output, title in TABLE2_COLUMNS
        if any(o == output for o, _ in cells)
    ]
    rows = []
    for method, values in table.items():
        shown = [fmt(values.get(cell), 1) for cell in cells]
        rows.append(Table2Row(method, branch_title(method), shown))
    difference = None
    plain, puzzle = table.get("plain_cam"), table.get("puzzle_cam")
    if plain and puzzle:
        # the difference of the figures shown above it: 57.46 against 57.47 is two 57.5s,
        # +0.0 (it printed -0.0)
        deltas = [
            f"{round(puzzle[c], 1) - round(plain[c], 1):+.1f}"
            if c in puzzle and c in plain
            else "–"
            for c in cells
        ]
        difference = Table2Row("difference", "Puzzle-CAM − plain CAM", deltas)
    splits = [split for _, split in cells]
    return Table2(groups, splits, rows, difference, _table2_notes(summary, table))


def _table2_notes(summary: RunSummary, table: dict[str, Any]) -> list[str]:
    notes = []
    config = summary.config
    if config is not None:
        pseudo = config.pseudo_labels
        crf = (
            f", then a dense CRF ({plural(pseudo.crf_iterations, 'iteration')}) where "
            "pydensecrf2 is installed"
            if pseudo.crf
            else ", no CRF"
        )
        notes.append(
            "mIoU (%) of the CAMs of each classifier and of the same refinement applied to "
            "them with the same settings: affinity labels, an AffinityNet trained on them, the "
            "random walk (at its best background threshold), pseudo labels (background "
            f"threshold {pseudo.threshold:g}{crf}). DeepLabV3+ learns from the Puzzle-CAM "
            "pseudo labels."
        )
    if "plain_cam" not in table:
        notes.append(f"Plain CAM: {summary.absence('plain_cam')[1]}.")
    notes.append(
        "The paper (ResNet-50, PASCAL VOC 2012 train): plain CAM 47.82 → 58.10 → 59.70, "
        "Puzzle-CAM 51.53 → 64.16 → 64.70 (CAM → random walk → + dense CRF)."
    )
    return notes


# --- per-class table and what is missing -------------------------------------------------------


def per_class_table(names: list[str], table: list[ClassScores]) -> PerClassTable:
    return PerClassTable(
        [metric_label(s.method) for s in table],
        [(name, [fmt(s.ious[i], 1) for s in table]) for i, name in enumerate(names)],
        [fmt(s.miou, 1) for s in table],
    )


def missing_summary(summary: RunSummary) -> list[tuple[str, str]]:
    """(method, why it has no numbers) for every method metrics.json lacks."""
    return [
        (m.label, summary.absence(m.key)[1])
        for m in table_metrics()
        if m.key not in summary.metrics
    ]
