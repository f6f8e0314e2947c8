"""The sample-image tables: a few images of each split, each beside what every stage made
of it (ground truth, CAM and random-walk heat maps, labels, predictions), as thumbnails."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from tqdm import tqdm

from puzzlecam.cams.scores import load_scores
from puzzlecam.constants import BACKGROUND, IGNORE_INDEX
from puzzlecam.data import Sample
from puzzlecam.data.ids import id_path
from puzzlecam.errors import PuzzlecamError
from puzzlecam.io import load_image, load_label_png
from puzzlecam.pipeline.branches import TABLE_METHODS
from puzzlecam.pipeline.kinds import kind_of
from puzzlecam.pipeline.report.collect import RunSummary
from puzzlecam.pipeline.report.figures import colourbar, save_rgb
from puzzlecam.pipeline.report.text import describe, grouped
from puzzlecam.segmentation.predict import working_size
from puzzlecam.visualize import colorize_labels, label_colour, overlay_heatmap, resize_array

__all__ = [
    "THUMBNAIL_SIZE",
    "Cell",
    "SampleRow",
    "SampleTable",
    "Samples",
    "pick_samples",
    "sample_tables",
]

THUMBNAIL_SIZE = 256
"""Long side (pixels) of the sample pictures; smaller images are kept at their size."""


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


# --- what the page shows ---------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    src: str | None = None  # a picture beside the page, or
    alt: str = ""
    text: str = ""  # why there is none


@dataclass(frozen=True)
class SampleRow:
    image_id: str
    tags: str
    cells: list[Cell]
    unreadable: str = ""  # the image could not be read: one cell across the row says why


@dataclass(frozen=True)
class SampleTable:
    role: str
    title: str
    split_name: str
    note: str  # after the note on heat maps
    not_shown: list[str]  # columns left out, and why
    columns: list[str]
    rows: list[SampleRow]
    width: int  # pixels: the images no wider than they are useful


@dataclass(frozen=True)
class LegendEntry:
    name: str
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Samples:
    readable: bool  # the data set could be read
    legend: list[LegendEntry]
    colourbar: str | None  # the heat maps' colour scale (when there are heat maps)
    tables: list[SampleTable]


# --- columns and pictures --------------------------------------------------------------------


@dataclass(frozen=True)
class _Column:
    key: str
    title: str
    kind: Literal["image", "mask", "scores", "labels"]
    folder: Path | None = None
    stage: str = ""  # the stage that writes it, whose absence explains its own


def _columns(summary: RunSummary, role: str) -> tuple[list[_Column], list[tuple[str, str]]]:
    """The columns a split's rows show, and (title, reason) of the ones left out: the image,
    its mask, then the per-image outputs of every stage of the split whose kind has a
    picture (``StageKind.picture``), branch by branch as tables show them."""
    candidates = [_Column("image", "Image", "image"), _Column("gt", "Ground truth", "mask")]
    pictured = [
        (stage, kind.picture)
        for stage in summary.plan.every
        if stage.role == role and (kind := kind_of(stage)).picture is not None
    ]
    order = {method: i for i, method in enumerate(TABLE_METHODS)}
    pictured.sort(key=lambda pair: (not pair[0].method, order.get(pair[0].method, 0)))
    for stage, picture in pictured:
        key = stage.name.replace("/", "_")
        folder = stage.folder(summary.run)
        candidates.append(_Column(key, picture.title(stage), picture.kind, folder, stage.name))
    columns, missing = [], []
    for column in candidates:
        suffix = ".npz" if column.kind == "scores" else ".png"
        if column.folder is None or _has_files(column.folder, suffix):
            columns.append(column)
        else:
            missing.append((column.title, summary.stage_absence(column.stage)[1]))
    return columns, missing


def _has_files(folder: Path, suffix: str) -> bool:
    if not folder.is_dir():
        return False
    return any(p.suffix == suffix and not p.name.startswith(".") for p in folder.iterdir())


def _render(column: _Column, sample: Sample, image: np.ndarray) -> np.ndarray | str:
    """The picture of one cell at thumbnail size, or a short text saying why there is none."""
    size = image.shape[:2]  # (H, W) of the thumbnail
    if column.kind == "image":
        return image
    if column.kind == "mask":
        if sample.mask_path is None:
            return "no mask"
        return colorize_labels(resize_array(load_label_png(sample.mask_path), size, "nearest"))
    assert column.folder is not None
    if column.kind == "labels":
        path = id_path(column.folder, sample.image_id, ".png")
        if not path.is_file():
            return "missing"
        return colorize_labels(resize_array(load_label_png(path), size, "nearest"))
    path = id_path(column.folder, sample.image_id, ".npz")
    if not path.is_file():
        return "missing"
    scores = load_scores(path).scores.astype(np.float32)  # (K, H, W)
    heat = scores.max(axis=0) if scores.shape[0] else np.zeros(scores.shape[1:], np.float32)
    return overlay_heatmap(image, resize_array(heat, size))


# --- the tables --------------------------------------------------------------------------------

_TITLES = {"val": "Validation images", "train": "Training images"}
_NOTES = {
    "val": "",
    "train": " Affinity labels exist for training images only: confident foreground, "
    "confident background and the uncertain pixels AffinityNet ignores (cream).",
}


def _row(
    sample: Sample, classes: Sequence[str], columns: list[_Column], name: str, out_dir: Path
) -> SampleRow:
    """One image's row; its pictures saved as ``samples/{name}_{column}.png``."""
    tags = ", ".join(classes[t] for t in sample.tags if t < len(classes)) or "no tags"
    try:
        full = np.asarray(load_image(sample.image_path))
    except PuzzlecamError as error:
        problem = f"image unreadable ({describe(error)})"
        return SampleRow(sample.image_id, tags, [], unreadable=problem)
    image = resize_array(full, working_size(full.shape[:2], THUMBNAIL_SIZE))
    cells = []
    for column in columns:
        try:
            picture = _render(column, sample, image)
        except PuzzlecamError as error:
            picture = f"unreadable ({describe(error)})"
        if isinstance(picture, str):
            cells.append(Cell(text=picture))
            continue
        src = f"samples/{name}_{column.key}.png"
        save_rgb(picture, out_dir / src)
        cells.append(Cell(src, alt=f"{column.title} of {sample.image_id}"))
    return SampleRow(sample.image_id, tags, cells)


def _table(
    summary: RunSummary, role: str, count: int, out_dir: Path, bar: tqdm
) -> SampleTable | None:
    split = summary.splits[role]
    samples = pick_samples(split.samples, count)
    columns, missing = _columns(summary, role)
    if not samples or len(columns) <= 2 and role == "train":
        return None  # nothing beyond the images and their masks: not worth a table
    rows = []
    for index, sample in enumerate(samples):
        bar.update(1)
        rows.append(_row(sample, split.classes, columns, f"{role}_{index:02d}", out_dir))
    return SampleTable(
        role,
        _TITLES[role],
        split.name,
        _NOTES[role],
        grouped(missing),
        [c.title for c in columns],
        rows,
        130 + 250 * len(columns),
    )


def sample_tables(summary: RunSummary, count: int, out_dir: Path, progress: bool) -> Samples:
    """``count`` images of each split (val first) with their pictures saved under
    ``out_dir``; a legend of the label colours."""
    if not summary.splits:
        return Samples(False, [], None, [])
    roles = [r for r in ("val", "train") if r in summary.splits]
    total = sum(min(count, len(summary.splits[r])) for r in roles)
    bar = tqdm(total=total, desc="report samples", disable=not progress, leave=False)
    tables = [_table(summary, role, count, out_dir, bar) for role in roles]
    bar.close()
    heat = any(c.kind == "scores" for role in roles for c in _columns(summary, role)[0])
    if heat:
        colourbar(out_dir / "jet.png")
    entries = [(0, BACKGROUND)] + [(i + 1, name) for i, name in enumerate(summary.classes)]
    entries.append((IGNORE_INDEX, "ignore / uncertain"))
    legend = [LegendEntry(name, label_colour(v)) for v, name in entries]
    return Samples(True, legend, "jet.png" if heat else None, [t for t in tables if t])
