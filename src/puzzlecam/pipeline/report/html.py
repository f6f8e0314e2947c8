"""The page: the run's summary drawn into figures and sample pictures, then rendered
through ``templates/report.html.j2`` into ``report/index.html``.

The report is built in a temporary folder beside ``report/``, then its files are moved in
(index.html last) and the previous report's files it did not rewrite removed; files in
``report/`` that no report wrote stay.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import jinja2

from puzzlecam import __version__
from puzzlecam.errors import PuzzlecamError
from puzzlecam.io import atomic_write, read_jsonl
from puzzlecam.pipeline.folders import REPORT_BUILD_PREFIX
from puzzlecam.pipeline.report import view
from puzzlecam.pipeline.report.collect import (
    RunSummary,
    load_run,
    per_class,
    threshold_curves,
    trained_models,
)
from puzzlecam.pipeline.report.explorer import EXPLORE_FILE, write_explorer
from puzzlecam.pipeline.report.figures import loss_figure, per_class_figure, threshold_figure
from puzzlecam.pipeline.report.samples import Samples, sample_tables
from puzzlecam.pipeline.report.text import describe, grouped, href
from puzzlecam.pipeline.run_dir import RunDir

__all__ = ["write_report", "render"]

# autoescape on: ids, class names and paths are user data
_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("puzzlecam.pipeline.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
_ENV.filters["href"] = href

_SECTIONS = (  # anchor, title in the navigation bar
    ("run", "Run"),
    ("metrics", "Metrics"),
    ("table2", "Table 2"),
    ("samples", "Samples"),
    ("thresholds", "Thresholds"),
    ("per-class", "Per-class IoU"),
    ("training", "Training"),
)


@dataclass(frozen=True)
class Page:
    """Everything the template shows (see view.py for the pieces)."""

    header: view.Header
    nav: list[tuple[str, str]]
    notes: list[str]  # what the report lacks, and why
    run_rows: list[tuple[str, list[view.Line]]]
    cards: list[view.Card]
    phases: list[view.Phase]
    ratios: list[view.Ratio]
    times: list[view.TimeRow]
    table2: view.Table2 | None
    samples: Samples
    thresholds: view.Figure | None
    per_class: view.Figure | None
    per_class_table: view.PerClassTable | None
    training: list[view.Figure]
    training_missing: list[str]
    explorer: str | None  # the explorer's file beside the page, or
    explorer_missing: str  # why there is none
    version: str


def _thresholds(summary: RunSummary, out_dir: Path) -> view.Figure | None:
    curves = threshold_curves(summary)
    if not curves:
        return None
    pseudo = summary.config.pseudo_labels.threshold if summary.config else None
    threshold_figure(curves, pseudo, out_dir / "thresholds.png")
    return view.Figure(
        "thresholds.png",
        "mIoU against the background threshold",
        "mIoU of the CAMs and random-walk scores for each background threshold "
        "(a pixel is background where no class score exceeds it); eval/*.json.",
    )


def _training(summary: RunSummary, out_dir: Path) -> tuple[list[view.Figure], list[str]]:
    """A loss figure per trained model, and why the others have none."""
    figures, missing = [], []
    root = summary.run.root
    for model in trained_models(summary):
        log = summary.run.log_path(model.folder)
        records = [r for r in read_jsonl(log) if isinstance(r, dict) and "step" in r]
        if not records:
            missing.append((model.title, summary.stage_absence(model.stage)[1]))
            continue
        folder = model.folder.relative_to(root).as_posix()
        name = f"loss_{folder.replace('/', '_')}.png"
        caption = loss_figure(records, model.title, out_dir / name)
        link = log.relative_to(root).as_posix()
        figures.append(
            view.Figure(name, f"{model.title}: training loss", caption, (f"../{link}", link))
        )
    return figures, grouped(missing)


def _explorer(
    summary: RunSummary, max_images: int | None, out_dir: Path, progress: bool
) -> tuple[str | None, str]:
    """The threshold explorer written beside the page (``explorer.write_explorer``, the
    code path of ``puzzlecam explore``), or why there is none."""
    if max_images is None:
        max_images = summary.config.report.explore_images if summary.config else 0
    if max_images <= 0 or summary.config is None:
        return None, "not written (report.explore_images is 0)" if summary.config else ""
    if not any(stage.kind == "cams" for stage in summary.plan.stages):
        return None, ""
    try:
        write_explorer(summary.run, max_images, out_dir / EXPLORE_FILE, progress, summary)
    except (PuzzlecamError, ValueError, OSError) as error:  # the report is written regardless
        return None, f"could not be written ({describe(error)})"
    return EXPLORE_FILE, ""


def build_page(
    summary: RunSummary,
    num_samples: int,
    out_dir: Path,
    progress: bool,
    explore_images: int | None = None,
) -> Page:
    """The page's content; its pictures (and the threshold explorer) are written under
    ``out_dir``."""
    table2 = view.table2(summary)
    names, scores = per_class(summary)
    per_class_fig = None
    if scores:
        per_class_figure(names, scores, out_dir / "per_class_iou.png")
        per_class_fig = view.Figure(
            "per_class_iou.png",
            "IoU per class and method on the val split",
            "IoU of every class on the val split, one bar per method (its mIoU in the legend).",
        )
    training, training_missing = _training(summary, out_dir)
    explorer, explorer_missing = _explorer(summary, explore_images, out_dir, progress)
    present = {"run": summary.config is not None, "table2": table2 is not None}
    return Page(
        header=view.header(summary),
        nav=[(anchor, title) for anchor, title in _SECTIONS if present.get(anchor, True)],
        notes=summary.notes + grouped(view.missing_summary(summary)),
        run_rows=view.run_rows(summary),
        cards=view.key_numbers(summary),
        phases=view.metric_phases(summary),
        ratios=view.ratios(summary),
        times=view.times(summary),
        table2=table2,
        samples=sample_tables(summary, num_samples, out_dir, progress),
        thresholds=_thresholds(summary, out_dir),
        per_class=per_class_fig,
        per_class_table=view.per_class_table(names, scores) if scores else None,
        training=training,
        training_missing=training_missing,
        explorer=explorer,
        explorer_missing=explorer_missing,
        version=__version__,
    )


def render(page: Page) -> str:
    """The HTML of ``page``."""
    return _ENV.get_template("report.html.j2").render(page=page)


REPORT_FILES = ".report-files"
"""In report/: the files the last report wrote, one per line (what the next one may remove)."""


def _publish(built: Path, final: Path) -> None:
    """Move the files of the folder ``built`` into ``final`` (index.html last, so the page
    never points at a figure not yet there) and remove the files the previous report
    wrote that this one did not; any other file in ``final`` is not the report's and stays."""
    listing = final / REPORT_FILES
    previous = set(listing.read_text(encoding="utf-8").splitlines()) if listing.is_file() else set()
    files = sorted(
        (p.relative_to(built).as_posix() for p in built.rglob("*") if p.is_file()),
        key=lambda name: (name == "index.html", name),
    )
    final.mkdir(exist_ok=True)
    for name in files:
        (final / name).parent.mkdir(parents=True, exist_ok=True)
        os.replace(built / name, final / name)
    with atomic_write(listing) as handle:
        handle.write("".join(f"{name}\n" for name in files).encode("utf-8"))
    emptied: set[Path] = set()
    for name in sorted(previous - set(files) - {""}):
        stale = final / name
        if stale.resolve().is_relative_to(final.resolve()):  # a listing is not trusted blindly
            stale.unlink(missing_ok=True)
            emptied.update(p for p in stale.parents if p.is_relative_to(final) and p != final)
    for folder in sorted(emptied, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):  # a folder still holding files stays
            folder.rmdir()
    shutil.rmtree(built, ignore_errors=True)


def write_report(
    run_dir: Path | str | RunDir,
    num_samples: int = 6,
    progress: bool = False,
    explore_images: int | None = None,
) -> Path:
    """Write ``report/index.html`` (and its PNGs, and ``explore.html``) for a run
    directory; return its path.

    Shows what the run holds and says what it does not; a run stopped early, a missing
    data set or a missing evaluation never stops the report. ``num_samples`` images of
    each split are shown, the same ones every time; ``explore_images`` of each split on
    the threshold explorer (None: the run's ``report.explore_images``). Raises
    RunDirError when ``run_dir`` is missing, a file, or a folder of other files (not a
    run). Files in report/ that no report wrote are left as they are.
    """
    run = run_dir if isinstance(run_dir, RunDir) else RunDir(run_dir)
    run.check_exists()
    summary = load_run(run)
    built = Path(tempfile.mkdtemp(prefix=REPORT_BUILD_PREFIX, dir=run.root))
    try:
        page = build_page(summary, num_samples, built, progress, explore_images)
        (built / "index.html").write_text(render(page), encoding="utf-8")
        built.chmod(0o755)
        _publish(built, run.report_dir)
    except BaseException:
        shutil.rmtree(built, ignore_errors=True)
        raise
    return run.report_dir / "index.html"
