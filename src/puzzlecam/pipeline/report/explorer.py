"""The threshold explorer: ``report/explore.html``, one self-contained page on which a
user moves the refinement's three thresholds and sees what each does to their images.

A score file becomes two maps per image (``metrics.sweep.label_buckets``): the best
class's label and how many thresholds of a 0.01 grid its score exceeds. The page rebuilds
every label map and count at any threshold of the grid from those, exactly as the
evaluation does, so its mIoU at a threshold equals ``puzzlecam eval``'s on the same
images. Each image and branch ships as one lossless WebP (a data URI; 36 % smaller than
PNG here, and exact), twice the image's height:

- top rows: R = CAM label, G = CAM bucket, B = ground truth (0 without a mask);
- bottom rows: R = random-walk label, G = its bucket, B = the run's pseudo label (after CRF).

The page (``templates/explore.html.j2`` with ``explore.js`` and ``explore.css`` inlined)
needs no server and no network. ``puzzlecam explore`` writes it alone; the report writes
it beside ``index.html`` with the same function.
"""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from matplotlib import colormaps
from PIL import Image

from puzzlecam import __version__
from puzzlecam.cams.scores import load_scores
from puzzlecam.constants import BACKGROUND, IGNORE_INDEX
from puzzlecam.data import Sample
from puzzlecam.data.ids import id_path
from puzzlecam.errors import DataError, PuzzlecamError, RunDirError
from puzzlecam.io import atomic_write, load_image, load_label_png
from puzzlecam.metrics.sweep import label_buckets
from puzzlecam.parallel import default_workers, map_images
from puzzlecam.pipeline.branches import TABLE_METHODS, branch_title, metric_key
from puzzlecam.pipeline.report.collect import ROLES, RunSummary, load_run
from puzzlecam.pipeline.report.samples import pick_samples
from puzzlecam.pipeline.report.text import describe
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.segmentation.predict import working_size
from puzzlecam.visualize import label_colour, resize_array

__all__ = [
    "EXPLORE_FILE",
    "EXPLORE_GRID",
    "MAX_SIDE",
    "ImageMaps",
    "encode_maps",
    "decode_maps",
    "explorer_data",
    "render_explorer",
    "write_explorer",
]

EXPLORE_FILE = "explore.html"
"""The page's name in ``report/``."""

EXPLORE_GRID: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 100))
"""The thresholds the sliders move over: 0.01 ... 0.99 (every 0.05 of the sweep among them)."""

MAX_SIDE = 320
"""Images and maps longer than this are shown (and scored) at this long side."""

_KINDS = ("cams", "rw", "pseudo-labels")  # the stage kinds whose files the page reads

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("puzzlecam.pipeline.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
)


# --- one image's maps ------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageMaps:
    """One image's maps of one branch, each (H, W) uint8 (see the module's docstring)."""

    cam_label: np.ndarray
    cam_bucket: np.ndarray
    gt: np.ndarray  # 0 where there is no mask
    rw_label: np.ndarray
    rw_bucket: np.ndarray
    pseudo: np.ndarray  # the run's pseudo label, 0 where there is none


def encode_maps(maps: ImageMaps) -> bytes:
    """The picture the page decodes: (2H, W, 3) uint8, CAM over random walk, as lossless
    WebP (method 2: as small as the slower methods here, at a twentieth of method 6's time)."""
    top = np.stack([maps.cam_label, maps.cam_bucket, maps.gt], axis=-1)
    bottom = np.stack([maps.rw_label, maps.rw_bucket, maps.pseudo], axis=-1)
    buffer = io.BytesIO()
    picture = Image.fromarray(np.concatenate([top, bottom]).astype(np.uint8))
    picture.save(buffer, format="WEBP", lossless=True, quality=100, method=2)
    return buffer.getvalue()


def decode_maps(png: bytes) -> ImageMaps:
    """``encode_maps`` undone (the page does the same with a canvas)."""
    array = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    height = array.shape[0] // 2
    top, bottom = array[:height], array[height:]
    return ImageMaps(top[..., 0], top[..., 1], top[..., 2], bottom[..., 0], bottom[..., 1],
                     bottom[..., 2])  # fmt: skip


def _data_uri(kind: str, payload: bytes) -> str:
    return f"data:image/{kind};base64,{base64.b64encode(payload).decode('ascii')}"


@dataclass(frozen=True)
class _Job:
    """What one image needs: its sample and, per branch, the folders of its files."""

    sample: Sample
    role: str
    folders: tuple[tuple[str, Path, Path | None, Path | None], ...]  # method, cams, rw, pseudo


def _buckets(path: Path | None, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(label, bucket) of the score file ``path`` at ``size``; zeros for None (no file)."""
    if path is None:
        zeros = np.zeros(size, np.uint8)
        return zeros, zeros
    maps = load_scores(path)
    try:
        label, bucket = label_buckets(maps.scores, maps.keys, EXPLORE_GRID)
    except ValueError as error:  # keys outside the labels, NaN scores: the file is wrong
        raise DataError(path, str(error)) from error
    if label.shape != size:
        label, bucket = (resize_array(a, size, "nearest") for a in (label, bucket))
    return label, bucket


def _labels(path: Path | None, size: tuple[int, int]) -> np.ndarray:
    """The label PNG ``path`` at ``size``; zeros for None (no file)."""
    if path is None:
        return np.zeros(size, np.uint8)
    labels = load_label_png(path)
    return labels if labels.shape == size else resize_array(labels, size, "nearest")


def _existing(folder: Path | None, image_id: str, suffix: str) -> Path | None:
    """The image's file in ``folder`` when there is one."""
    path = id_path(folder, image_id, suffix) if folder else None
    return path if path is not None and path.is_file() else None


def _image_entry(job: _Job) -> dict[str, Any]:
    """One image's entry in the page's data (module level: it runs in a process pool)."""
    sample = job.sample
    entry: dict[str, Any] = {
        "id": sample.image_id,
        "split": job.role,
        "tags": [t + 1 for t in sample.tags],
    }
    try:
        image = np.asarray(load_image(sample.image_path))
        size = working_size(image.shape[:2], MAX_SIDE)
        entry.update(full=list(image.shape[:2]), size=list(size))
        if image.shape[:2] != size:
            image = resize_array(image, size)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=85)
        entry["image"] = _data_uri("jpeg", buffer.getvalue())
        mask = sample.mask_path if sample.mask_path and sample.mask_path.is_file() else None
        gt = _labels(mask, size)
        entry["mask"] = sample.mask_path is not None
        entry["maps"], entry["rw"], entry["pseudo"] = {}, {}, {}
        for method, cams, rw, pseudo in job.folders:
            cam_path = _existing(cams, sample.image_id, ".npz")
            if cam_path is None:
                continue
            rw_path = _existing(rw, sample.image_id, ".npz")
            pseudo_path = _existing(pseudo, sample.image_id, ".png")
            maps = ImageMaps(*_buckets(cam_path, size), gt, *_buckets(rw_path, size),
                             _labels(pseudo_path, size))  # fmt: skip
            entry["maps"][method] = _data_uri("webp", encode_maps(maps))
            entry["rw"][method] = rw_path is not None
            entry["pseudo"][method] = pseudo_path is not None
    except PuzzlecamError as error:
        entry["problem"] = describe(error)
    return entry


# --- the page's data -------------------------------------------------------------------------


def _folders(
    summary: RunSummary, role: str
) -> tuple[tuple[str, Path, Path | None, Path | None], ...]:
    """Per branch (tables' order) with CAMs of ``role``: its CAM, random-walk and pseudo-label
    folders (None for a stage the run does not have)."""
    found: dict[tuple[str, str], Path] = {}
    for stage in summary.plan.stages:
        if stage.role == role and stage.kind in _KINDS:
            found[(stage.method, stage.kind)] = stage.folder(summary.run)
    return tuple(
        (
            method,
            found[(method, "cams")],
            found.get((method, "rw")),
            found.get((method, "pseudo-labels")),
        )  # fmt: skip
        for method in TABLE_METHODS
        if (method, "cams") in found
    )


def _evaluation(summary: RunSummary, method: str, output: str, role: str) -> dict[str, Any]:
    """metrics.json's figure for (branch, output, split): mIoU and threshold, or {}."""
    values = summary.entry(metric_key(method, output), role)
    miou = values.get("miou")
    if not isinstance(miou, (int, float)):
        return {}
    return {"miou": round(float(miou), 2), "threshold": values.get("threshold")}


def _jet() -> list[list[int]]:
    """The heat maps' colour of each bucket 0..len(EXPLORE_GRID)."""
    levels = (np.arange(len(EXPLORE_GRID) + 1) + 0.5) / (len(EXPLORE_GRID) + 1)
    return (colormaps["jet"](levels)[:, :3] * 255).round().astype(int).tolist()


def explorer_data(
    summary: RunSummary, max_images: int, progress: bool = False, workers: int | None = None
) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready data: ``max_images`` images of each split
    (all when fewer; the report's choice, masks preferred), settings and the run's scores."""
    config = summary.config
    if config is None:
        raise RunDirError(f"{summary.run.root}: no readable config.yaml, so no run to explore")
    splits, jobs = [], []
    for role in ROLES:
        split = summary.splits.get(role)
        folders = _folders(summary, role)
        if split is None or not folders:
            continue
        chosen = pick_samples(split.samples, max_images)
        jobs += [_Job(sample, role, folders) for sample in chosen]
        evaluations = {
            method: {
                output: _evaluation(summary, method, output, role)
                for output in ("cams", "rw", "pseudo_labels_nocrf")
            }  # fmt: skip
            for method, *_ in folders
        }
        splits.append({"role": role, "name": split.name, "total": len(split.samples),
                       "count": len(chosen), "evaluations": evaluations})  # fmt: skip
    entries = map_images(_image_entry, jobs, workers or default_workers(), "explorer", progress)
    methods = [m for m in TABLE_METHODS if any(m in e.get("maps", {}) for e in entries)]
    labels = {0: BACKGROUND, **{i + 1: name for i, name in enumerate(summary.classes)}}
    affinity = config.affinity_labels
    return {
        "run": summary.name,
        "version": __version__,
        "grid": list(EXPLORE_GRID),
        "classes": list(summary.classes),
        "colours": {str(v): list(label_colour(v)) for v in [*labels, IGNORE_INDEX]},
        "jet": _jet(),
        "branches": [{"method": m, "title": branch_title(m)} for m in methods],
        "settings": {
            "fg": affinity.fg_threshold,
            "bg": affinity.bg_threshold,
            "pseudo": config.pseudo_labels.threshold,
            "affinity_crf": affinity.crf and affinity.crf_iterations > 0,
        },
        "splits": splits,
        "images": entries,
    }


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element (no "</" to end it early)."""
    return json.dumps(data, separators=(",", ":")).replace("</", "<\\/")


def _asset(name: str) -> str:
    """A template file's text, inlined into the page (read where the template is)."""
    return _ENV.loader.get_source(_ENV, name)[0]


def render_explorer(data: dict[str, Any]) -> str:
    """The page's HTML for ``explorer_data``'s result."""
    return _ENV.get_template("explore.html.j2").render(
        run=data["run"], version=data["version"], data=_script_json(data),
        script=_asset("explore.js"), style=_asset("explore.css"),
    )  # fmt: skip


def write_explorer(
    run_dir: Path | str | RunDir,
    max_images: int,
    out: Path | str | None = None,
    progress: bool = False,
    summary: RunSummary | None = None,
) -> Path:
    """Write the explorer of a run (default ``report/explore.html``) atomically; return
    its path. ``summary``: the run already read (the report passes its own)."""
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    if summary is None:
        run.check_exists()
        summary = load_run(run)
    path = Path(out) if out else run.report_dir / EXPLORE_FILE
    html = render_explorer(explorer_data(summary, max_images, progress))
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as handle:
        handle.write(html.encode("utf-8"))
    return path
