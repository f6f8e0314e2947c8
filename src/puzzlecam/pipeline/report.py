"""The run's report: ``report/index.html`` and its pictures, for people.

One static page per run directory: no server, no JavaScript, no external URLs and only
relative links, so the folder opens from disk offline and can be copied elsewhere with
the run. It shows what the run holds and says what it does not (a run stopped with
``until: cams``, no plain-CAM baseline, no fully supervised model, a stage not finished):

1. header: run name, dates, data and model summary, links to config.yaml / metrics.json;
2. metrics table per pipeline phase (mIoU, threshold, FP/FN, images), the weak /
   fully supervised ratio, and the time each phase took (manifest.json); the paper's
   Table 2: CAM, random walk and pseudo-label mIoU of each CAM branch (plain CAM and
   Puzzle-CAM, names from :mod:`puzzlecam.pipeline.branches`);
3. sample images: image, ground truth, CAM and random-walk heat maps, labels, predictions;
4. background-threshold curves (eval/*.json sweeps);
5. per-class IoU on val;
6. training-loss curves of every trained model (metrics.jsonl).

The report is built in a temporary folder beside ``report/`` and renamed over it, so a
crash leaves the previous report (or none), never half of one.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from tqdm import tqdm

from puzzlecam import __version__
from puzzlecam.cams.scores import load_scores
from puzzlecam.constants import BACKGROUND, IGNORE_INDEX
from puzzlecam.data import Sample, SplitData, load_split, split_name
from puzzlecam.data.ids import id_path
from puzzlecam.errors import DataError, PuzzlecamError, RunDirError
from puzzlecam.io import load_image, load_label_png, read_json, read_jsonl, voc_palette
from puzzlecam.pipeline.branches import (
    BRANCH_SCORES,
    METHOD_NAMES,
    TABLE2_COLUMNS,
    branch_of,
    branch_table,
    metric_key,
)
from puzzlecam.pipeline.config import RunConfig, load_run_config
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.visualize import colorize_labels, overlay_heatmap

__all__ = ["write_report", "pick_samples", "METHOD_LABELS"]

THUMBNAIL_SIZE = 256
"""Long side (pixels) of the sample pictures; smaller images are kept at their size."""

_DPI = 100
_PALETTE = np.asarray(voc_palette(), dtype=np.uint8).reshape(256, 3)


@dataclass(frozen=True)
class _Method:
    key: str  # the name in metrics.json
    label: str
    phase: str
    colour: str


_PHASES = ("Classifier CAMs", "Random-walk refinement", "Segmentation model")
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
_METHODS = tuple(
    _Method(s.key, s.label, _PHASES[0 if s.output == "cams" else 1], _COLOURS[s.key])
    for s in BRANCH_SCORES
) + (
    _Method("deeplab_weak", "DeepLabV3+ on pseudo labels", _PHASES[2], _COLOURS["deeplab_weak"]),
    _Method("deeplab_full", "DeepLabV3+ on ground truth", _PHASES[2], _COLOURS["deeplab_full"]),
)
_BY_KEY = {m.key: m for m in _METHODS}
METHOD_LABELS: dict[str, str] = {m.key: m.label for m in _METHODS}
"""Human names of the methods of metrics.json, in pipeline order."""


def _models(run: RunDir) -> list[tuple[Path, str, str]]:
    """Trained models: (folder, title, the method whose absence explains it)."""
    return [
        (run.classifier_dir("puzzle_cam"), "Puzzle-CAM classifier", "puzzle_cam"),
        (run.classifier_dir("plain_cam"), "Plain-CAM classifier (baseline)", "plain_cam"),
        (run.affinity_dir("puzzle_cam"), "AffinityNet on Puzzle-CAM labels", "rw"),
        (run.affinity_dir("plain_cam"), "AffinityNet on plain-CAM labels", "plain_cam_rw"),
        (run.segmentation_dir("weak"), "DeepLabV3+ on pseudo labels", "deeplab_weak"),
        (run.segmentation_dir("full"), "DeepLabV3+ on ground truth", "deeplab_full"),
    ]


_NOT_LOSSES = {"step", "epoch", "lr", "images_per_s", "seconds", "type", "alpha", "nonfinite_steps"}

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #1d2330; background: #f5f6f8; line-height: 1.45; }
main { max-width: 1360px; margin: 0 auto; padding: 24px 32px 48px; }
header h1 { margin: 0 0 4px; font-size: 28px; }
.sub { color: #5a6272; margin: 0 0 12px; }
nav { margin: 8px 0 20px; font-size: 14px; }
nav a { margin-right: 14px; color: #2b5fad; text-decoration: none; }
nav a:hover { text-decoration: underline; }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 8px;
          padding: 16px 22px 20px; margin: 0 0 22px; }
h2 { font-size: 20px; margin: 4px 0 12px; }
h3 { font-size: 16px; margin: 18px 0 8px; }
table { border-collapse: collapse; font-size: 14px; }
th, td { padding: 5px 12px; border-bottom: 1px solid #e5e8ec; text-align: left; }
th { background: #eef1f5; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.phase td { background: #f7f8fa; font-weight: 600; color: #3b4455; padding-top: 9px; }
tr.total td { font-weight: 600; border-top: 2px solid #c9ced6; }
table.table2 th[colspan] { text-align: center; }
td.missing { color: #8a6d3b; font-style: italic; }
code { font-size: 13px; background: #f0f2f5; padding: 0 4px; border-radius: 3px; }
.notes { background: #fff8e1; border: 1px solid #f0d98a; border-radius: 8px;
         padding: 10px 18px; margin: 0 0 22px; }
.notes ul { margin: 4px 0; padding-left: 20px; }
ul.compact { margin: 2px 0 10px; padding-left: 20px; }
.note { color: #8a6d3b; font-style: italic; }
.tables { display: flex; flex-wrap: wrap; gap: 20px 40px; align-items: flex-start; }
p.note, p.ratio { max-width: 1000px; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin: 4px 0 16px; }
.card { border: 1px solid #dde1e7; border-radius: 8px; padding: 8px 16px; min-width: 120px;
        background: #fafbfc; }
.card .value { font-size: 24px; font-weight: 600; }
.card .label { font-size: 13px; color: #5a6272; }
.samples { border-collapse: separate; border-spacing: 4px; width: 100%; table-layout: fixed; }
.samples col.id { width: 130px; }
.samples th { background: none; border: none; text-align: center; font-size: 13px;
              padding: 2px 4px; vertical-align: bottom; }
.samples td { border: none; padding: 0; text-align: center; vertical-align: middle; }
.samples td.id { text-align: left; font-size: 13px; color: #3b4455; padding-right: 8px;
                 overflow-wrap: anywhere; }
.samples img { width: 100%; max-width: 240px; height: auto; display: block; margin: 0 auto;
               border-radius: 3px; image-rendering: pixelated; }
.samples td.empty { height: 120px; background: #f3f4f6; color: #8a8f99;
                    font-size: 12px; font-style: italic; border-radius: 3px; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; font-size: 13px; margin: 6px 0 12px;
          align-items: center; }
.legend span.item { display: inline-flex; align-items: center; gap: 5px; }
.swatch { display: inline-block; width: 16px; height: 16px; border: 1px solid #888;
          border-radius: 2px; }
.colourbar { display: inline-flex; align-items: center; gap: 6px; }
.colourbar img { width: 160px; height: 14px; border: 1px solid #888; }
figure { margin: 8px 0 16px; }
figure img { max-width: 100%; height: auto; border: 1px solid #eceef1; }
figcaption { font-size: 13px; color: #5a6272; }
.figures { display: grid; grid-template-columns: repeat(auto-fit, minmax(560px, 1fr));
           gap: 8px 24px; }
details summary { cursor: pointer; color: #2b5fad; font-size: 14px; margin: 6px 0; }
footer { color: #8a8f99; font-size: 12px; text-align: center; }
"""


# --- small helpers --------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


_ABSOLUTE_PATH = re.compile(r"(?<![\w.~])/(?:[^\s'\"<>:;,()\[\]/]+/)+([^\s'\"<>:;,()\[\]/]+)")


def _scrub(text: str) -> str:
    """Absolute paths in a message shortened to their last part: the report must not
    depend on (or reveal) where the run lives."""
    return _ABSOLUTE_PATH.sub(lambda m: f".../{m.group(1)}", text)


def _describe(error: BaseException) -> str:
    if isinstance(error, DataError):
        return f"{error.path.name}: {_scrub(error.problem)}"
    return _scrub(str(error))


def _shown_path(value: str) -> str:
    """A configured path as the report shows it: relative paths as they are, absolute ones
    by their last part."""
    return f".../{Path(value).name}" if Path(value).is_absolute() else value


def _href(relative: str) -> str:
    return quote(relative, safe="/#.-_~")


def _fmt(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "–"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _has_files(folder: Path, suffix: str) -> bool:
    if not folder.is_dir():
        return False
    return any(p.suffix == suffix and not p.name.startswith(".") for p in folder.iterdir())


def _save_figure(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=_DPI, facecolor="white")


def _save_rgb(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", optimize=True)


def pick_samples(samples: Sequence[Sample], count: int) -> list[Sample]:
    """A deterministic, evenly spread choice of ``count`` samples, preferring those with a
    ground-truth mask (the same images in every report of the same split)."""
    pool = [s for s in samples if s.mask_path] or list(samples)
    if count <= 0 or not pool:
        return []
    if count >= len(pool):
        return pool
    indices = np.linspace(0, len(pool) - 1, count).round().astype(int)
    return [pool[i] for i in indices]


# --- what the run holds ---------------------------------------------------------------------


@dataclass
class _Run:
    """Everything read from the run directory (each piece None/empty when absent)."""

    run: RunDir
    config: RunConfig | None
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    evals: dict[str, dict[str, Any]]  # eval file stem -> its JSON
    splits: dict[str, SplitData]
    classes: tuple[str, ...]
    notes: list[str] = field(default_factory=list)

    def entry(self, method: str, split: str) -> dict[str, Any]:
        """metrics.json's values of ``method`` on ``split`` ({} when absent)."""
        splits = self.metrics.get(method)
        values = splits.get(split) if isinstance(splits, dict) else None
        return values if isinstance(values, dict) else {}

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


def _grouped(pairs: Sequence[tuple[str, str]]) -> list[str]:
    """[(thing, reason)] -> ["thing, thing: reason", ...], one line per reason, in order."""
    reasons: dict[str, list[str]] = {}
    for thing, reason in pairs:
        reasons.setdefault(reason, []).append(thing)
    return [f"{', '.join(things)}: {reason}" for reason, things in reasons.items()]


def _not_shown(pairs: Sequence[tuple[str, str]]) -> str:
    if not pairs:
        return ""
    lines = "".join(f"<li>{_e(line)}</li>" for line in _grouped(pairs))
    return f'<div class="note">Not shown:<ul class="compact">{lines}</ul></div>'


def _read_json_or_note(path: Path, notes: list[str]) -> Any:
    if not path.is_file():
        return None
    try:
        return read_json(path)
    except PuzzlecamError as error:
        notes.append(f"A file could not be read: {_describe(error)}.")
        return None


def _load_run(run: RunDir) -> _Run:
    notes: list[str] = []
    config = None
    if run.config_path.is_file():
        try:
            config = load_run_config(run.config_path)
        except (PuzzlecamError, ValueError, TypeError) as error:
            notes.append(f"config.yaml could not be read ({_describe(error)}).")
    else:
        notes.append("config.yaml is missing: this folder holds no run, or only part of one.")
    metrics = _read_json_or_note(run.metrics_path, notes)
    manifest = _read_json_or_note(run.manifest_path, notes)
    evals = {}
    eval_dir = run.root / "eval"
    if eval_dir.is_dir():
        for path in sorted(eval_dir.glob("*.json")):
            data = _read_json_or_note(path, notes)
            if isinstance(data, dict):
                evals[path.stem] = data
    splits: dict[str, SplitData] = {}
    if config is not None:
        for role in ("val", "train"):
            try:
                splits[role] = load_split(config.data, role)
            except (PuzzlecamError, OSError, ValueError) as error:
                notes.append(
                    f"The {role} split of the data set could not be read ({_describe(error)}): "
                    "its sample images are not shown."
                )
    classes: tuple[str, ...] = ()
    for data in splits.values():
        classes = data.classes
        break
    if not classes:  # the data set is gone: the class names are in the evaluations
        for data in evals.values():
            names = [n for n in data.get("per_class", {}) if n != BACKGROUND]
            if names:
                classes = tuple(names)
                break
    return _Run(
        run,
        config,
        metrics if isinstance(metrics, dict) else {},
        manifest if isinstance(manifest, dict) else {},
        evals,
        splits,
        classes,
        notes,
    )


# --- 1. header ------------------------------------------------------------------------------


def _header(state: _Run) -> str:
    config = state.config
    name = config.name if config else state.run.root.name
    finished = sorted(e.get("finished", "") for e in state.manifest.values() if isinstance(e, dict))
    finished = [f for f in finished if f]
    when = (
        f"stages finished {finished[0].replace('T', ' ')} – {finished[-1].replace('T', ' ')}"
        if finished
        else "no stage has finished yet"
    )
    links = []
    for target in ("config.yaml", "metrics.json", "manifest.json"):
        if (state.run.root / target).is_file():
            links.append(f'<a href="../{_href(target)}">{_e(target)}</a>')
    parts = [
        f"<header><h1>{_e(name)}</h1>",
        f'<p class="sub">puzzlecam run <code>{_e(state.run.root.name)}</code> · {_e(when)}'
        f" · report written {_e(time.strftime('%Y-%m-%d %H:%M'))}"
        + (f" · {' · '.join(links)}" if links else "")
        + "</p></header>",
    ]
    return "\n".join(parts)


def _summary_section(state: _Run) -> str:
    config = state.config
    if config is None:
        return ""
    rows = []
    data = config.data
    counts = []
    for role in ("train", "val"):
        split = state.splits.get(role)
        name = split.name if split else split_name(data, role)
        if split is not None:
            masks = sum(1 for s in split.samples if s.mask_path)
            counts.append(
                f"{role} <code>{_e(name)}</code>: {len(split)} images ({masks} with masks)"
            )
        else:
            images = state.entry("puzzle_cam", role).get("num_images")
            shown = f"{images} images evaluated" if images else "not readable"
            counts.append(f"{role} <code>{_e(name)}</code>: {shown}")
    rows.append(
        (
            "Data",
            f"<code>{_e(data.format)}</code> at <code>{_e(_shown_path(data.root))}</code>, "
            f"{len(state.classes)} classes<br>" + "<br>".join(counts),
        )
    )

    def model(backbone: Any, loop: Any, extra: str = "") -> str:
        weights = _shown_path(backbone.pretrained) if backbone.pretrained else "none"
        return (
            f"<code>{_e(backbone.name)}</code> (weights: {_e(weights)}, BN {_e(backbone.norm)}), "
            f"{_plural(loop.epochs, 'epoch')}, batch {loop.batch_size}{extra}"
        )

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
    rows.append(
        (
            "Classifier",
            model(cls.backbone, cls.loop, f", lr {cls.optim.lr:g}")
            + f"<br>loss {_e(' + '.join(terms))}, puzzle grid {puzzle.grid}×{puzzle.grid}"
            + ("; plus a plain-CAM baseline" if cls.baseline_plain_cam else ""),
        )
    )
    rows.append(
        (
            "CAMs",
            f"scales {', '.join(f'{s:g}' for s in config.cams.scales)}"
            + (" with horizontal flips" if config.cams.flip else ""),
        )
    )
    if config.until != "cams":
        aff, rw = config.affinity_labels, config.rw
        rows.append(
            (
                "AffinityNet",
                model(config.train_aff.backbone, config.train_aff.loop)
                + f"<br>affinity labels fg {aff.fg_threshold:g} / bg {aff.bg_threshold:g}, "
                f"random walk β {rw.beta:g}, {2**rw.exp_times} steps, radius {rw.radius}; "
                f"pseudo labels at threshold {config.pseudo_labels.threshold:g}"
                + (
                    "; the same for each classifier's CAMs (plain CAM and Puzzle-CAM), "
                    "DeepLabV3+ learns from Puzzle-CAM's"
                    if config.train_cls.baseline_plain_cam
                    else ""
                ),
            )
        )
    if config.until == "train-seg":
        seg = config.train_seg
        rows.append(
            (
                "DeepLabV3+",
                model(seg.backbone, seg.loop, f", lr {seg.optim.lr:g}")
                + ("; also trained on ground truth" if seg.fully_supervised else ""),
            )
        )
    rows.append(("Pipeline", f"until <code>{_e(config.until)}</code>, device {_e(config.device)}"))
    body = "\n".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<section id="run"><h2>Run</h2><table>{body}</table></section>'


# --- 2. metrics and times -------------------------------------------------------------------


def _key_numbers(state: _Run) -> str:
    cards = []

    def miou(method: str, split: str) -> float | None:
        value = state.entry(method, split).get("miou")
        return value if isinstance(value, (int, float)) else None

    for method, split, label in (
        ("plain_cam", "val", "Plain CAM (val)"),
        ("puzzle_cam", "val", "Puzzle-CAM (val)"),
        ("plain_cam_pseudo_labels", "train", "Plain-CAM pseudo labels (train)"),
        ("pseudo_labels", "train", "Puzzle-CAM pseudo labels (train)"),
        ("deeplab_weak", "val", "DeepLabV3+ weak (val)"),
        ("deeplab_full", "val", "DeepLabV3+ full (val)"),
    ):
        value = miou(method, split)
        if value is not None:
            cards.append((f"{value:.1f} %", label))
    weak, full = miou("deeplab_weak", "val"), miou("deeplab_full", "val")
    if weak is not None and full:
        cards.append((f"{100 * weak / full:.1f} %", "of full supervision (val)"))
    if not cards:
        return ""
    inner = "".join(
        f'<div class="card"><div class="value">{_e(v)}</div><div class="label">{_e(k)}</div></div>'
        for v, k in cards
    )
    return f'<h3>Key results (mIoU)</h3><div class="cards">{inner}</div>'


def _metrics_table(state: _Run) -> tuple[str, str]:
    """The table, and the paragraphs that go under it."""
    metrics = state.metrics
    head = (
        "<tr><th>Method</th><th>Split</th><th class=num>mIoU (%)</th><th class=num>Threshold</th>"
        "<th class=num>FP</th><th class=num>FN</th><th class=num>Images</th></tr>"
    )
    rows = [head]
    known = [m.key for m in _METHODS]
    others = [k for k in metrics if k not in known and isinstance(metrics[k], dict)]
    phases: list[tuple[str, list[str]]] = [
        (phase, [m.key for m in _METHODS if m.phase == phase]) for phase in _PHASES
    ]
    if others:
        phases.append(("Other", others))
    for phase, keys in phases:
        rows.append(f'<tr class="phase"><td colspan="7">{_e(phase)}</td></tr>')
        for key in keys:
            label = METHOD_LABELS.get(key, key)
            splits = metrics.get(key)
            if not isinstance(splits, dict) or not splits:
                short, reason = state.absence(key)
                rows.append(
                    f'<tr data-method="{_e(key)}"><td>{_e(label)}</td>'
                    f'<td colspan="6" class="missing" title="{_e(reason)}">{_e(short)}</td></tr>'
                )
                continue
            for split in sorted(splits, key=lambda s: (s != "train", s)):
                values = splits[split]
                if not isinstance(values, dict):
                    continue
                rows.append(
                    f'<tr data-method="{_e(key)}" data-split="{_e(split)}">'
                    f"<td>{_e(label)}</td><td>{_e(split)}</td>"
                    f'<td class="num">{_fmt(values.get("miou"), 1)}</td>'
                    f'<td class="num">{_fmt(values.get("threshold"), 2)}</td>'
                    f'<td class="num">{_fmt(values.get("fp"), 3)}</td>'
                    f'<td class="num">{_fmt(values.get("fn"), 3)}</td>'
                    f'<td class="num">{_e(values.get("num_images", "–"))}</td></tr>'
                )
    table = f'<table class="metrics">{"".join(rows)}</table>'
    ratio = ""
    for split in ("val", "train"):
        weak = state.entry("deeplab_weak", split).get("miou")
        full = state.entry("deeplab_full", split).get("miou")
        if isinstance(weak, (int, float)) and isinstance(full, (int, float)) and full > 0:
            ratio += (
                f'<p class="ratio" data-split="{split}">Weakly / fully supervised DeepLabV3+ '
                f"({_e(split)}): {weak:.1f} / {full:.1f} = <b>{100 * weak / full:.1f} %</b> "
                "of the fully supervised mIoU.</p>"
            )
    legend = (
        "<p class=note>mIoU over background and the classes, in percent; threshold: the "
        "background score that gives the best mIoU (score maps) or the one used (labels); "
        "FP, FN: false-positive / false-negative pixels over the union, mean over the "
        "foreground classes (IoU + FP + FN = 1 per class).</p>"
    )
    return table, ratio + legend


_PER_METHOD = {  # stage groups whose times are shown per CAM branch
    "affinity_labels": "Affinity labels",
    "train_aff": "Train AffinityNet",
    "rw": "Random walk",
    "pseudo_labels": "Pseudo labels",
}


def _stage_group(name: str) -> str:
    parts = name.split("/")
    if parts[0] == "eval" and len(parts) > 2 and parts[1] == "predict":
        return f"predict/{parts[2]}"
    if parts[0] in ("train_cls", "train_seg", *_PER_METHOD) and len(parts) > 1:
        return "/".join(parts[:2])
    return parts[0]


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


def _times_table(state: _Run) -> str:
    groups: dict[str, list[dict[str, Any]]] = {}
    for name, entry in state.manifest.items():
        if isinstance(entry, dict):
            groups.setdefault(_stage_group(name), []).append(entry)
    if not groups:
        return "<p class=note>No stage has finished yet (manifest.json is missing or empty).</p>"
    if "eval" in groups:  # evaluations run between the other stages: one line, last
        groups["eval"] = groups.pop("eval")
    seconds = {g: sum(float(e.get("seconds") or 0.0) for e in es) for g, es in groups.items()}
    total = sum(seconds.values())
    rows = [
        "<tr><th>Stage</th><th class=num>Parts</th><th class=num>Time</th>"
        "<th class=num>Share</th></tr>"
    ]
    for group, entries in groups.items():
        share = f"{100 * seconds[group] / total:.0f} %" if total > 0 else "–"
        rows.append(
            f'<tr data-stage="{_e(group)}"><td>{_e(_GROUP_LABELS.get(group, group))}</td>'
            f'<td class="num">{len(entries)}</td><td class="num">{_duration(seconds[group])}</td>'
            f'<td class="num">{share}</td></tr>'
        )
    rows.append(
        f'<tr class="total"><td>Total</td><td class="num">{sum(map(len, groups.values()))}</td>'
        f'<td class="num">{_duration(total)}</td><td></td></tr>'
    )
    return f'<table class="times">{"".join(rows)}</table>'


def _metrics_section(state: _Run) -> str:
    table, notes = _metrics_table(state)
    return (
        '<section id="metrics"><h2>Metrics</h2>'
        + _key_numbers(state)
        + '<div class="tables"><div><h3>mIoU per method</h3>'
        + table
        + "</div><div><h3>Time per stage</h3>"
        + _times_table(state)
        + f"</div></div>{notes}</section>"
    )


def _table2_section(state: _Run) -> str:
    """The paper's Table 2: each CAM branch's mIoU after each refinement step."""
    table = branch_table(state.metrics)
    if not table:
        return ""
    cells = [
        (output, title, split)
        for output, title in TABLE2_COLUMNS
        for split in ("train", "val")
        if any((output, split) in values for values in table.values())
    ]
    titles = [(o, t) for o, t in TABLE2_COLUMNS if any(c[0] == o for c in cells)]
    head = "<tr><th rowspan=2>CAMs from</th>" + "".join(
        f'<th class=num colspan="{sum(c[0] == o for c in cells)}">{_e(t)}</th>' for o, t in titles
    )
    head += "</tr><tr>" + "".join(f"<th class=num>{_e(c[2])}</th>" for c in cells) + "</tr>"
    rows = [head]
    for method, values in table.items():
        name = METHOD_NAMES[method]
        rows.append(
            f'<tr data-branch="{_e(method)}"><td>{_e(name[:1].upper() + name[1:])}</td>'
            + "".join(f'<td class="num">{_fmt(values.get((o, sp)), 1)}</td>' for o, _, sp in cells)
            + "</tr>"
        )
    plain, puzzle = table.get("plain_cam"), table.get("puzzle_cam")
    if plain and puzzle:
        deltas = [
            puzzle[(o, sp)] - plain[(o, sp)] if (o, sp) in puzzle and (o, sp) in plain else None
            for o, _, sp in cells
        ]
        rows.append(
            '<tr class="total" data-branch="difference"><td>Puzzle-CAM − plain CAM</td>'
            + "".join(f'<td class="num">{"–" if d is None else f"{d:+.1f}"}</td>' for d in deltas)
            + "</tr>"
        )
    notes = []
    config = state.config
    if config is not None:
        pseudo = config.pseudo_labels
        crf = (
            f", then a dense CRF ({_plural(pseudo.crf_iterations, 'iteration')}) where "
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
        notes.append(f"Plain CAM: {state.absence('plain_cam')[1]}.")
    notes.append(
        "The paper (ResNet-50, PASCAL VOC 2012 train): plain CAM 47.82 → 58.10 → 59.70, "
        "Puzzle-CAM 51.53 → 64.16 → 64.70 (CAM → random walk → + dense CRF)."
    )
    return (
        '<section id="table2"><h2>Table 2: from CAMs to pseudo labels</h2>'
        f'<table class="table2">{"".join(rows)}</table>'
        + "".join(f"<p class=note>{_e(n)}</p>" for n in notes)
        + "</section>"
    )


# --- 3. sample images -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    key: str
    title: str
    kind: Literal["image", "mask", "scores", "labels"]
    folder: Path | None = None
    method: str = ""  # what explains its absence


def _sample_columns(state: _Run, role: str) -> tuple[list[_Column], list[tuple[str, str]]]:
    """The columns a split's rows show, and notes on the ones left out."""
    run = state.run
    candidates = [
        _Column("image", "Image", "image"),
        _Column("gt", "Ground truth", "mask"),
    ]
    # each CAM branch: its CAMs, affinity labels (train only), random walk, pseudo labels
    branches = (
        ("plain_cam", "Plain CAM", "plain_", " (plain CAM)"),
        ("puzzle_cam", "Puzzle-CAM", "", ""),
    )
    for method, title, prefix, suffix in branches:
        cams = metric_key(method, "cams")
        rw, pseudo = metric_key(method, "rw"), metric_key(method, "pseudo_labels")
        candidates.append(_Column(cams, title, "scores", run.cams_dir(method, role), cams))
        if role == "train":
            candidates.append(
                _Column(
                    f"{prefix}affinity",
                    f"Affinity label{suffix}",
                    "labels",
                    run.affinity_labels_dir(method, role),
                    rw,
                )
            )
        candidates += [
            _Column(f"{prefix}rw", f"Random walk{suffix}", "scores", run.rw_dir(method, role), rw),
            _Column(
                f"{prefix}pseudo",
                f"Pseudo label{suffix}",
                "labels",
                run.pseudo_labels_dir(method, role),
                pseudo,
            ),
        ]
    if role == "val":
        candidates += [
            _Column(
                "weak",
                "DeepLabV3+ (pseudo labels)",
                "labels",
                run.predictions_dir("weak", role),
                "deeplab_weak",
            ),
            _Column(
                "full",
                "DeepLabV3+ (ground truth)",
                "labels",
                run.predictions_dir("full", role),
                "deeplab_full",
            ),
        ]
    columns, notes = [], []
    for column in candidates:
        if column.folder is None:
            columns.append(column)
            continue
        suffix = ".npz" if column.kind == "scores" else ".png"
        if _has_files(column.folder, suffix):
            columns.append(column)
        else:
            notes.append((column.title, state.absence(column.method)[1]))
    return columns, notes


def _thumbnail_size(height: int, width: int) -> tuple[int, int]:
    scale = min(1.0, THUMBNAIL_SIZE / max(height, width, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize(array: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """(H, W[, 3]) array to ``size`` = (W, H)."""
    if array.shape[1::-1] == size:
        return array
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    if array.dtype != np.uint8:  # float heat maps
        image = Image.fromarray(array.astype(np.float32))  # mode F
        return np.asarray(image.resize(size, resample))
    return np.asarray(Image.fromarray(array).resize(size, resample))


def _render_cell(column: _Column, sample: Sample, image: np.ndarray) -> np.ndarray | str:
    """The picture of one cell at thumbnail size, or a short text saying why there is none."""
    size = image.shape[1::-1]
    if column.kind == "image":
        return image
    if column.kind == "mask":
        if sample.mask_path is None:
            return "no mask"
        return colorize_labels(_resize(load_label_png(sample.mask_path), size, nearest=True))
    assert column.folder is not None
    if column.kind == "labels":
        path = id_path(column.folder, sample.image_id, ".png")
        if not path.is_file():
            return "missing"
        return colorize_labels(_resize(load_label_png(path), size, nearest=True))
    path = id_path(column.folder, sample.image_id, ".npz")
    if not path.is_file():
        return "missing"
    scores = load_scores(path).scores.astype(np.float32)  # (K, H, W)
    heat = scores.max(axis=0) if scores.shape[0] else np.zeros(scores.shape[1:], np.float32)
    return overlay_heatmap(image, _resize(heat, size, nearest=False))


def _sample_rows(
    state: _Run, role: str, count: int, out_dir: Path, bar: tqdm | None
) -> tuple[str, list[tuple[str, str]]]:
    split = state.splits.get(role)
    if split is None:
        return "", []
    samples = pick_samples(split.samples, count)
    columns, notes = _sample_columns(state, role)
    if not samples or len(columns) <= 2 and role == "train":
        return "", notes
    head = "<tr><th></th>" + "".join(f"<th>{_e(c.title)}</th>" for c in columns) + "</tr>"
    rows = ['<colgroup><col class="id">' + "<col>" * len(columns) + "</colgroup>", head]
    for index, sample in enumerate(samples):
        if bar is not None:
            bar.update(1)
        tags = ", ".join(split.classes[t] for t in sample.tags if t < len(split.classes))
        cells = [f'<td class="id"><b>{_e(sample.image_id)}</b><br>{_e(tags or "no tags")}</td>']
        try:
            full = np.asarray(load_image(sample.image_path))
        except PuzzlecamError as error:
            problem = f"image unreadable ({_describe(error)})"
            cells.append(f'<td class="empty" colspan="{len(columns)}">{_e(problem)}</td>')
            rows.append("<tr>" + "".join(cells) + "</tr>")
            continue
        image = _resize(full, _thumbnail_size(*full.shape[:2]), nearest=False)
        for column in columns:
            try:
                picture = _render_cell(column, sample, image)
            except PuzzlecamError as error:
                picture = f"unreadable ({_describe(error)})"
            if isinstance(picture, str):
                cells.append(f'<td class="empty">{_e(picture)}</td>')
                continue
            name = f"samples/{role}_{index:02d}_{column.key}.png"
            _save_rgb(picture, out_dir / name)
            alt = f"{column.title} of {sample.image_id}"
            cells.append(f'<td><img src="{_href(name)}" alt="{_e(alt)}" loading="lazy"></td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    width = 130 + 250 * len(columns)  # images no wider than they are useful
    table = (
        f'<table class="samples" data-split="{role}" style="max-width: {width}px">'
        f"{''.join(rows)}</table>"
    )
    return table, notes


def _colourbar(out_dir: Path) -> str:
    ramp = colormaps["jet"](np.linspace(0, 1, 256))[None, :, :3]  # (1, 256, 3)
    _save_rgb((np.repeat(ramp, 14, axis=0) * 255).round().astype(np.uint8), out_dir / "jet.png")
    return (
        '<span class="colourbar">heat map: 0 <img src="jet.png" alt="jet colour scale"> 1 '
        "(highest class score per pixel)</span>"
    )


def _legend(classes: Sequence[str], out_dir: Path, heat: bool) -> str:
    entries = [(0, BACKGROUND)] + [(i + 1, name) for i, name in enumerate(classes)]
    entries.append((IGNORE_INDEX, "ignore / uncertain"))
    items = []
    for value, name in entries:
        r, g, b = (int(c) for c in _PALETTE[value])
        items.append(
            f'<span class="item"><span class="swatch" style="background:rgb({r},{g},{b})">'
            f"</span>{_e(name)}</span>"
        )
    if heat:
        items.append(_colourbar(out_dir))
    return f'<div class="legend">{"".join(items)}</div>'


def _samples_section(state: _Run, num_samples: int, out_dir: Path, progress: bool) -> str:
    parts = ['<section id="samples"><h2>Sample images</h2>']
    if not state.splits:
        parts.append(
            "<p class=note>The data set could not be read, so no sample images are shown.</p>"
        )
        return "".join(parts) + "</section>"
    total = sum(min(num_samples, len(s)) for r, s in state.splits.items() if r in ("val", "train"))
    bar = tqdm(total=total, desc="report samples", disable=not progress, leave=False)
    bodies = []
    for role, title in (("val", "Validation images"), ("train", "Training images")):
        table, notes = _sample_rows(state, role, num_samples, out_dir, bar)
        if not table:
            continue
        extra = (
            " Affinity labels exist for training images only: confident foreground, "
            "confident background and the uncertain pixels AffinityNet ignores (cream)."
            if role == "train"
            else ""
        )
        bodies.append(
            f"<h3>{title} ({_e(state.splits[role].name)})</h3>"
            f"<p class=note>Heat maps: the highest class score per pixel over the image's "
            f"tagged classes.{extra}</p>{_not_shown(notes)}{table}"
        )
    bar.close()
    heat = any(c.kind == "scores" for role in state.splits for c in _sample_columns(state, role)[0])
    parts.append(_legend(state.classes, out_dir, heat=heat))
    parts += bodies or ["<p class=note>No sample images to show.</p>"]
    return "".join(parts) + "</section>"


# --- 4.-6. figures --------------------------------------------------------------------------


def _eval_method(stem: str) -> tuple[str, str]:
    """eval file stem -> (method key, split): ``cams_puzzle_cam_val`` -> (puzzle_cam, val)."""
    base, _, split = stem.rpartition("_")
    if base.startswith("cams_"):
        base = base[len("cams_") :]
    return base, split


def _method_order(key: str) -> tuple[int, str]:
    keys = [m.key for m in _METHODS]
    return (keys.index(key) if key in keys else len(keys), key)


def _colour(key: str, index: int) -> str:
    if key in _BY_KEY:
        return _BY_KEY[key].colour
    return colormaps["tab10"](index % 10)


def _threshold_figure(state: _Run, out_dir: Path) -> str | None:
    curves: dict[str, list[tuple[str, list[dict[str, Any]]]]] = {}
    for stem, data in state.evals.items():
        sweep = [p for p in data.get("sweep") or [] if isinstance(p.get("miou"), (int, float))]
        if len(sweep) < 2:
            continue
        method, split = _eval_method(stem)
        curves.setdefault(split, []).append((method, sweep))
    splits = [s for s in ("train", "val") if s in curves] + sorted(
        s for s in curves if s not in ("train", "val")
    )
    if not splits:
        return None
    figure = Figure(figsize=(6.2 * len(splits), 5.4), layout="constrained")
    axes = figure.subplots(1, len(splits), sharey=True, squeeze=False)[0]
    pseudo = state.config.pseudo_labels.threshold if state.config else None
    for ax, split in zip(axes, splits, strict=True):
        for index, (method, sweep) in enumerate(
            sorted(curves[split], key=lambda c: _method_order(c[0]))
        ):
            xs = [p["threshold"] for p in sweep]
            ys = [p["miou"] for p in sweep]
            best = int(np.argmax(ys))
            colour = _colour(method, index)
            label = f"{METHOD_LABELS.get(method, method)} (best {ys[best]:.1f} at {xs[best]:.2f})"
            ax.plot(xs, ys, color=colour, linewidth=2, label=label)
            ax.plot(
                xs[best],
                ys[best],
                marker="*",
                markersize=14,
                color=colour,
                markeredgecolor="black",
                markeredgewidth=0.6,
                linestyle="none",
            )
        if pseudo is not None and any(m == "rw" for m, _ in curves[split]):
            ax.axvline(pseudo, color="#2ca02c", linestyle=":", linewidth=1.2)
            ax.text(
                pseudo,
                0.03,
                " pseudo-label threshold",
                transform=ax.get_xaxis_transform(),
                rotation=90,
                va="bottom",
                ha="right",
                color="#2ca02c",
                fontsize=9,
            )
        ax.set_title(f"{split} split", fontsize=13)
        ax.set_xlabel("background threshold", fontsize=11)
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=10, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    axes[0].set_ylabel("mIoU (%)", fontsize=11)
    figure.suptitle("mIoU vs background threshold (★ = best)", fontsize=14)
    _save_figure(figure, out_dir / "thresholds.png")
    return "thresholds.png"


def _per_class(state: _Run) -> tuple[list[str], list[tuple[str, list[float | None], float]]]:
    """Class names and, per method evaluated on val, its IoUs (percent) and mIoU."""
    entries = []
    for stem, data in state.evals.items():
        method, split = _eval_method(stem)
        per_class = data.get("per_class")
        if split == "val" and isinstance(per_class, dict) and per_class:
            entries.append((method, per_class, data.get("miou")))
    entries.sort(key=lambda e: _method_order(e[0]))
    if not entries:
        return [], []
    names = list(entries[0][1])
    table = []
    for method, per_class, miou in entries:
        values = [per_class.get(n, {}).get("iou") for n in names]
        table.append((method, values, miou))
    return names, table


def _per_class_figure(
    names: list[str], table: list[tuple[str, list[float | None], float]], out_dir: Path
) -> str:
    count, bars = len(names), len(table)
    horizontal = count > 30
    width = 0.8 / bars
    long_side = min(60.0, max(12.0, 0.09 * count * bars + 2))
    size = (12.0, long_side * 0.8) if horizontal else (long_side, 5.6)
    figure = Figure(figsize=size, layout="constrained")
    ax = figure.add_subplot()
    positions = np.arange(count)
    for index, (method, values, miou) in enumerate(table):
        heights = [v if isinstance(v, (int, float)) else 0.0 for v in values]
        offset = positions - 0.4 + width * (index + 0.5)
        label = f"{METHOD_LABELS.get(method, method)} ({_fmt(miou, 1)})"
        bar = ax.barh if horizontal else ax.bar
        bar(offset, heights, width, label=label, color=_colour(method, index))
    if horizontal:
        ax.set_yticks(positions, names, fontsize=9)
        ax.set_ylim(count - 0.4, -0.6)  # first class on top
        ax.tick_params(axis="x", labeltop=True)  # a long figure: IoU scale on both ends
        ax.set_xlabel("IoU (%)", fontsize=11)
        ax.set_xlim(0, 100)
        ax.grid(axis="x", alpha=0.3)
    else:
        slanted = count > 8
        ax.set_xticks(
            positions,
            names,
            rotation=35 if slanted else 0,
            ha="right" if slanted else "center",
            fontsize=10,
        )
        ax.set_ylabel("IoU (%)", fontsize=11)
        ax.set_ylim(0, 100)
        ax.set_xlim(-0.6, count - 0.4)
        ax.grid(axis="y", alpha=0.3)
    ax.legend(  # under the class names, or above the bars of a long horizontal figure
        fontsize=10,
        ncols=min(4, bars),
        loc="lower center" if horizontal else "upper center",
        frameon=False,
        bbox_to_anchor=(0.5, 1.0) if horizontal else (0.5, -0.2),
        title="method (val mIoU)",
    )
    figure.suptitle("Per-class IoU on the val split", fontsize=14)
    _save_figure(figure, out_dir / "per_class_iou.png")
    return "per_class_iou.png"


def _per_class_table(names: list[str], table: list[tuple[str, list[float | None], float]]) -> str:
    head = "<tr><th>Class</th>" + "".join(
        f'<th class="num">{_e(METHOD_LABELS.get(m, m))}</th>' for m, _, _ in table
    )
    rows = [head + "</tr>"]
    for index, name in enumerate(names):
        cells = "".join(f'<td class="num">{_fmt(values[index], 1)}</td>' for _, values, _ in table)
        rows.append(f"<tr><td>{_e(name)}</td>{cells}</tr>")
    rows.append(
        '<tr class="total"><td>mIoU</td>'
        + "".join(f'<td class="num">{_fmt(miou, 1)}</td>' for _, _, miou in table)
        + "</tr>"
    )
    return (
        "<details><summary>IoU per class as a table</summary>"
        f"<table>{''.join(rows)}</table></details>"
    )


def _figure_html(name: str, caption: str, alt: str) -> str:
    """A figure; ``caption`` is HTML, ``alt`` plain text."""
    return (
        f'<figure><img src="{_href(name)}" alt="{_e(alt)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


def _curves_section(state: _Run, out_dir: Path) -> str:
    parts = ['<section id="thresholds"><h2>Background threshold</h2>']
    name = _threshold_figure(state, out_dir)
    if name:
        parts.append(
            _figure_html(
                name,
                "mIoU of the CAMs and random-walk scores for each background threshold "
                "(a pixel is background where no class score exceeds it); eval/*.json.",
                "mIoU against the background threshold",
            )
        )
    else:
        parts.append("<p class=note>No threshold sweep was found (eval/*.json).</p>")
    parts.append('</section><section id="per-class"><h2>Per-class IoU</h2>')
    names, table = _per_class(state)
    if table:
        parts.append(
            _figure_html(
                _per_class_figure(names, table, out_dir),
                "IoU of every class on the val split, one bar per method (its mIoU in the legend).",
                "IoU per class and method on the val split",
            )
        )
        parts.append(_per_class_table(names, table))
    else:
        parts.append("<p class=note>No evaluation on the val split was found (eval/*.json).</p>")
    return "".join(parts) + "</section>"


def _loss_figure(records: list[dict[str, Any]], title: str, path: Path) -> str:
    """Loss and its parts by step; returns a caption."""
    steps = [r for r in records if r.get("type") != "epoch"]
    epochs = [r for r in records if r.get("type") == "epoch"]
    points = steps or epochs
    keys: list[str] = []
    for record in points:
        for key, value in record.items():
            if key not in _NOT_LOSSES and isinstance(value, (int, float)) and key not in keys:
                keys.append(key)
    keys.sort(key=lambda k: (k != "loss", k))
    figure = Figure(figsize=(6.4, 3.9), layout="constrained")
    ax = figure.add_subplot()
    marker = "o" if len(points) < 40 else None
    positive = []
    for key in keys:
        xs = [r["step"] for r in points if isinstance(r.get(key), (int, float))]
        ys = [r[key] for r in points if isinstance(r.get(key), (int, float))]
        positive += ys
        total = key == "loss"
        ax.plot(xs, ys, label=key, marker=marker, markersize=4 if total else 3,
                linewidth=2.2 if total else 1.3, color="black" if total else None,
                alpha=1.0 if total else 0.85)  # fmt: skip
    for record in epochs[:-1]:
        ax.axvline(record["step"], color="#b0b4bb", linestyle=":", linewidth=1)
    values = [v for v in positive if np.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")
        ax.set_ylabel("loss (log scale)", fontsize=11)
    else:
        ax.set_ylabel("loss", fontsize=11)
    ax.set_xlabel("step" + (" (dotted: end of an epoch)" if len(epochs) > 1 else ""), fontsize=11)
    ax.set_xlim(left=0, right=max([int(r["step"]) for r in points] + [1]) * 1.04)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=13)
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize=9)
    _save_figure(figure, path)
    last = points[-1] if points else {}
    seconds = sum(float(r.get("seconds", 0.0)) for r in epochs)
    caption = f"{_plural(len(epochs), 'epoch')}, {_plural(int(last.get('step', 0)), 'step')}"
    if isinstance(last.get("loss"), (int, float)):
        caption += f", last loss {last['loss']:.4f}"
    if seconds:
        caption += f", {_duration(seconds)} of training"
    return caption


def _training_section(state: _Run, out_dir: Path) -> str:
    parts = ['<section id="training"><h2>Training losses</h2>']
    figures, missing = [], []
    for directory, title, method in _models(state.run):
        records = [
            r
            for r in read_jsonl(directory / "metrics.jsonl")
            if isinstance(r, dict) and "step" in r
        ]
        if not records:
            missing.append((title, state.absence(method)[1]))
            continue
        folder = directory.relative_to(state.run.root).as_posix()
        name = f"loss_{folder.replace('/', '_')}.png"
        caption = _loss_figure(records, title, out_dir / name)
        link = f'<a href="../{_href(folder)}/metrics.jsonl">{_e(folder)}/metrics.jsonl</a>'
        figures.append(_figure_html(name, f"{_e(caption)} ({link})", f"{title}: training loss"))
    if figures:
        parts.append(f'<div class="figures">{"".join(figures)}</div>')
    else:
        parts.append("<p class=note>No training log (metrics.jsonl) was found.</p>")
    parts.append(_not_shown(missing))
    return "".join(parts) + "</section>"


# --- the page -------------------------------------------------------------------------------


def _missing_summary(state: _Run) -> list[str]:
    """One line per reason why methods have no numbers, naming the methods."""
    pairs = [(m.label, state.absence(m.key)[1]) for m in _METHODS if m.key not in state.metrics]
    return _grouped(pairs)


def _page(state: _Run, num_samples: int, out_dir: Path, progress: bool) -> str:
    sections = [
        _summary_section(state),
        _metrics_section(state),
        _table2_section(state),
        _samples_section(state, num_samples, out_dir, progress),
        _curves_section(state, out_dir),
        _training_section(state, out_dir),
    ]
    notes = state.notes + _missing_summary(state)
    notes_html = (
        '<div class="notes"><b>Not in this report</b><ul>'
        + "".join(f"<li>{_e(n)}</li>" for n in notes)
        + "</ul></div>"
        if notes
        else ""
    )
    nav = "".join(
        f'<a href="#{anchor}">{_e(title)}</a>'
        for anchor, title in (
            ("run", "Run"),
            ("metrics", "Metrics"),
            ("table2", "Table 2"),
            ("samples", "Samples"),
            ("thresholds", "Thresholds"),
            ("per-class", "Per-class IoU"),
            ("training", "Training"),
        )
        if any(f'id="{anchor}"' in section for section in sections)  # sections the page has
    )
    title = state.config.name if state.config else state.run.root.name
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)} – puzzlecam report</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{_header(state)}\n<nav>{nav}</nav>\n{notes_html}\n"
        + "\n".join(s for s in sections if s)
        + f"\n<footer>puzzlecam {_e(__version__)}</footer>\n</main>\n</body>\n</html>\n"
    )


def _publish(built: Path, final: Path) -> None:
    """Put the folder ``built`` in place of ``final`` (two renames; the old one removed)."""
    old = None
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(final, old)
    os.replace(built, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def write_report(
    run_dir: Path | str | RunDir, num_samples: int = 6, progress: bool = False
) -> Path:
    """Write ``report/index.html`` (and its PNGs) for a run directory; return its path.

    Shows what the run holds and says what it does not; a run stopped early, a missing
    data set or a missing evaluation never stops the report. ``num_samples`` images of
    each split are shown, the same ones every time. Raises RunDirError when ``run_dir``
    is not a directory.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if not run.root.is_dir():
        raise RunDirError(f"{run.root} is not a run directory (it does not exist)")
    state = _load_run(run)
    built = Path(tempfile.mkdtemp(prefix=".report.", dir=run.root))
    try:
        page = _page(state, num_samples, built, progress)
        (built / "index.html").write_text(page, encoding="utf-8")
        built.chmod(0o755)
        _publish(built, run.report_dir)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    return run.report_dir / "index.html"
