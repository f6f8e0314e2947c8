"""The HTML report on tiny runs: it shows what a run holds, says what it lacks, and links
only to files beside it (relative paths, no network, no JavaScript)."""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from puzzlecam.cli import main
from puzzlecam.data.demo import DEMO_CLASSES
from puzzlecam.data.samples import Sample
from puzzlecam.errors import RunDirError
from puzzlecam.pipeline.branches import metric_key
from puzzlecam.pipeline.config import load_run_config
from puzzlecam.pipeline.folders import RUN_MARKER
from puzzlecam.pipeline.report import metric_label, pick_samples, table_metrics, write_report
from puzzlecam.pipeline.report.text import duration
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.pipeline.runner import format_summary, plan_stages
from tests.helpers import TINY_OVERRIDES

SAMPLE_HEADERS_VAL = (
    "Image",
    "Ground truth",
    "Plain CAM",
    "Random walk (plain CAM)",
    "Pseudo label (plain CAM)",
    "Puzzle-CAM",
    "Random walk",
    "Pseudo label",
    "DeepLabV3+ (pseudo labels)",
    "DeepLabV3+ (ground truth)",
)
SAMPLE_HEADERS_TRAIN = (
    "Image",
    "Ground truth",
    "Plain CAM",
    "Affinity label (plain CAM)",
    "Random walk (plain CAM)",
    "Pseudo label (plain CAM)",
    "Puzzle-CAM",
    "Affinity label",
    "Random walk",
    "Pseudo label",
)


class _Page(HTMLParser):
    """What a test needs from the page: links, images, sample-table headers, metric rows."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.headers: dict[str, list[str]] = {}  # sample table split -> column titles
        self.rows: dict[tuple[str, str | None], list[str]] = {}  # (method, split) -> cells
        self.branches: dict[str, list[str]] = {}  # Table 2: branch -> cells
        self._table: str | None = None
        self._row: list[str] | None = None  # the cells of the row being read
        self._cell: list[str] | None = None
        self._in_th = False
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "img":
            self.images.append(values["src"] or "")
        elif tag == "a":
            self.links.append(values.get("href") or "")
        elif tag == "table" and values.get("class") == "samples":
            self._table = values.get("data-split")
            self.headers[self._table or ""] = []
        elif tag == "tr" and "data-method" in values:
            self._row = self.rows[(values["data-method"] or "", values.get("data-split"))] = []
        elif tag == "tr" and "data-branch" in values:
            self._row = self.branches[values["data-branch"] or ""] = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "th" and self._table is not None:
            self._in_th = True
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "th" and self._in_th and self._cell is not None:
            text = "".join(self._cell).strip()
            if text:
                self.headers[self._table or ""].append(text)
            self._in_th, self._cell = False, None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


# Fewer images than the end-to-end test: the report needs a few of each split, not more.
SMALLER = ("data.demo.num_train=8", "data.demo.num_val=4")


def _demo(root: Path, *extra: str) -> Path:
    """A tiny demo run (the end-to-end test's settings) in ``root``; returns its run dir."""
    args = ["--run-dir", str(root / "run"), "--no-progress", "--set", f"data.root={root / 'data'}"]
    for override in [*TINY_OVERRIDES, *SMALLER, *extra]:
        args += ["--set", override]
    assert main(["demo", *args]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _demo(tmp_path_factory.mktemp("full"))


@pytest.fixture(scope="module")
def cams_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _demo(tmp_path_factory.mktemp("cams"), "until=cams")


def _check_self_contained(index: Path, *absolute: Path) -> _Page:
    """Every image and file link exists beside the page; nothing absolute or online."""
    text = index.read_text(encoding="utf-8")
    page = _Page(text)
    assert page.images
    for src in page.images:
        assert not src.startswith(("/", "http:", "https:", "file:", "data:")), src
        assert (index.parent / src).is_file(), src
    for href in page.links:
        assert not href.startswith(("/", "http:", "https:", "file:")), href
        if not href.startswith("#"):
            assert (index.parent / href).resolve().is_file(), href
    for forbidden in ("http://", "https://", "file:", "<script"):
        assert forbidden not in text
    for path in absolute:
        assert str(path) not in text
    return page


@pytest.mark.slow
def test_report_of_a_full_run(full_run: Path) -> None:
    index = write_report(full_run, num_samples=3)
    assert index == full_run / "report" / "index.html"
    page = _check_self_contained(index, full_run, full_run.parent)
    text = index.read_text(encoding="utf-8")

    # every number of metrics.json is in its row of the table
    metrics = json.loads((full_run / "metrics.json").read_text())
    assert set(metrics) == {m.key for m in table_metrics()}
    for method, splits in metrics.items():
        for split, values in splits.items():
            cells = page.rows[(method, split)]
            assert cells[0] == metric_label(method) and cells[1] == split
            assert cells[2] == f"{values['miou']:.1f}"
            threshold = values.get("threshold")
            assert cells[3] == (f"{threshold:.2f}" if threshold is not None else "–")
            assert cells[4:7] == [
                f"{values['fp']:.3f}",
                f"{values['fn']:.3f}",
                str(values["num_images"]),
            ]
    weak, full = metrics["deeplab_weak"]["val"]["miou"], metrics["deeplab_full"]["val"]["miou"]
    assert f"{100 * weak / full:.1f} %" in text

    # the paper's Table 2: CAM, random walk, pseudo labels on train and val, per branch
    for branch in ("plain_cam", "puzzle_cam"):
        expected = [
            f"{metrics[metric_key(branch, output)][split]['miou']:.1f}"
            for output in ("cams", "rw", "pseudo_labels")
            for split in ("train", "val")
        ]
        assert page.branches[branch][1:] == expected, branch
    assert page.branches["plain_cam"][0] == "Plain CAM"
    # the difference row subtracts the figures shown above it
    shown = {b: [float(v) for v in page.branches[b][1:]] for b in ("plain_cam", "puzzle_cam")}
    assert page.branches["difference"][1:] == [
        f"{puzzle - plain:+.1f}"
        for puzzle, plain in zip(shown["puzzle_cam"], shown["plain_cam"], strict=True)
    ]
    assert 'href="#table2"' in text and "64.16" in text  # the paper's figures beside ours

    # the run's settings name the classifier's optimiser and puzzle options (the demo's)
    for model, optimiser in [
        ("Classifier", "AdamW lr 0.0003"),
        ("AffinityNet", "SGD lr 0.02"),
        ("DeepLabV3+", "AdamW lr 0.0003"),
    ]:
        row = re.search(f"<th>{re.escape(model)}</th><td>(.*?)</td>", text, re.S)
        assert row and optimiser in row.group(1), model
    assert "L_re on max-normalised maps, puzzle terms from 50% of training" in text

    # time per stage from the manifest, with its total
    manifest = json.loads((full_run / "manifest.json").read_text())
    assert f'<td class="num">{len(manifest)}</td>' in text and "Total" in text

    # one row per sample image with every column, under its header; a legend of the classes
    assert page.headers["val"] == list(SAMPLE_HEADERS_VAL)
    assert page.headers["train"] == list(SAMPLE_HEADERS_TRAIN)
    samples = [s for s in page.images if s.startswith("samples/")]
    assert len(samples) == 3 * (len(SAMPLE_HEADERS_VAL) + len(SAMPLE_HEADERS_TRAIN))
    classes = load_run_config(full_run / "config.yaml").data.demo.class_names
    for name in ("background", *classes):
        assert f"</span>{name}</span>" in text
    assert not any(f"</span>{name}</span>" in text for name in set(DEMO_CLASSES) - set(classes))

    # the figures
    for figure in (
        "thresholds.png",
        "per_class_iou.png",
        "loss_classifier_puzzle_cam.png",
        "loss_classifier_plain_cam.png",
        "loss_affinitynet_puzzle_cam.png",
        "loss_affinitynet_plain_cam.png",
        "loss_segmentation_weak.png",
        "loss_segmentation_full.png",
    ):
        assert figure in page.images
    assert "Not in this report" not in text  # nothing is missing

    # written again: replaced as a whole (no stale pictures, no temporary folders left)
    write_report(RunDir(full_run), num_samples=1)
    samples = list((full_run / "report" / "samples").iterdir())
    assert len(samples) == len(SAMPLE_HEADERS_VAL) + len(SAMPLE_HEADERS_TRAIN)
    assert not [p for p in full_run.iterdir() if p.name.startswith(".report")]


@pytest.mark.slow
def test_report_of_a_run_stopped_after_the_cams(cams_run: Path) -> None:
    index = write_report(str(cams_run), num_samples=2)
    page = _check_self_contained(index, cams_run, cams_run.parent)
    text = index.read_text(encoding="utf-8")
    assert {m for m, split in page.rows if split} == {"plain_cam", "puzzle_cam"}
    for method in ("rw", "pseudo_labels", "deeplab_weak", "deeplab_full"):
        assert page.rows[(method, None)][-1] == "not in this run"
    assert "Not in this report" in text and "until: cams" in text
    assert page.headers["val"] == ["Image", "Ground truth", "Plain CAM", "Puzzle-CAM"]
    assert page.headers["train"] == ["Image", "Ground truth", "Plain CAM", "Puzzle-CAM"]
    assert [len(page.branches[b]) for b in ("plain_cam", "puzzle_cam")] == [3, 3]  # CAMs only
    assert "thresholds.png" in page.images and "per_class_iou.png" in page.images
    losses = sorted(s for s in page.images if s.startswith("loss_"))
    assert losses == ["loss_classifier_plain_cam.png", "loss_classifier_puzzle_cam.png"]


@pytest.mark.slow
def test_report_says_what_is_missing_and_never_crashes(full_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(full_run, run, ignore=shutil.ignore_patterns("report", "*.pt"))
    for gone in ("eval", "segmentation", "predictions", "rw"):
        shutil.rmtree(run / gone)
    (run / "metrics.json").unlink()
    first_val = sorted((run / "cams" / "puzzle_cam" / "val").glob("*.npz"))[0]
    first_val.unlink()  # the first sampled val image loses its CAMs

    page = _check_self_contained(write_report(run, num_samples=2), run, full_run)
    text = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert "Not in this report" in text and "not done yet" in text
    assert "Random walk" not in page.headers["val"] and "Pseudo label" in page.headers["val"]
    assert "Random walk (plain CAM)" not in page.headers["train"]
    assert 'id="table2"' not in text and 'href="#table2"' not in text  # no metrics.json
    assert ">missing</td>" in text  # the CAM cell of the image whose file is gone
    assert "thresholds.png" not in page.images and "No threshold sweep" in text

    # the data set moved away: no sample pictures, a note, and still no absolute path
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["data"]["root"] = str(tmp_path / "gone")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    page = _check_self_contained(write_report(run), run, tmp_path)
    text = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert "could not be read" in text and not page.headers
    assert not (run / "report" / "samples").exists()


def test_report_of_an_empty_folder(tmp_path: Path) -> None:
    index = write_report(tmp_path)
    text = index.read_text(encoding="utf-8")
    assert "config.yaml is missing" in text and "<img" not in text
    with pytest.raises(RunDirError, match="does not exist"):
        write_report(tmp_path / "nowhere")


def test_report_escapes_names_from_the_run(tmp_path: Path) -> None:
    """Folder names and metrics keys are user data: shown as text, never as markup."""
    run = tmp_path / 'run <script>alert("x")'  # a folder name cannot hold '/'
    run.mkdir()
    (run / RUN_MARKER).write_text("{}")  # a run directory, if a strange one
    (run / "metrics.json").write_text(json.dumps({"<b>mine</b>": {"val": {"miou": 50.0}}}))
    text = write_report(run).read_text(encoding="utf-8")
    assert "<script" not in text and "<b>mine" not in text
    assert "&lt;script&gt;" in text and "&lt;b&gt;mine&lt;/b&gt;" in text
    page = _Page(text)
    assert page.rows[("<b>mine</b>", "val")][:3] == ["<b>mine</b>", "val", "50.0"]


def test_pick_samples_is_deterministic_and_spread() -> None:
    samples = [
        Sample(f"{i:03d}", Path(f"{i}.jpg"), (0,), Path(f"{i}.png") if i % 5 else None)
        for i in range(20)
    ]
    picked = pick_samples(samples, 4)
    assert [s.image_id for s in picked] == [s.image_id for s in pick_samples(samples, 4)]
    assert all(s.mask_path for s in picked)  # images with ground truth first
    assert picked[0].image_id == "001" and picked[-1].image_id == "019"
    assert len({s.image_id for s in picked}) == 4
    assert pick_samples(samples, 100) == [s for s in samples if s.mask_path]
    assert pick_samples(samples, 0) == [] and pick_samples([], 3) == []


def test_the_report_and_the_printed_summary_show_the_same_stage_times(tmp_path: Path) -> None:
    config = load_run_config("demo", ("until=pseudo-labels",))
    run = RunDir(tmp_path / "run")
    run.bind(config)
    for index, stage in enumerate(plan_stages(config)):
        run.mark_done(stage.name, "x", 0.5 + index)
    summary = format_summary({}, run.manifest()).splitlines()
    printed = summary[summary.index(f"{'stage':<32}{'seconds':>10}") + 1 : -1]
    text = write_report(run).read_text(encoding="utf-8")
    rows = re.findall(r'<tr data-stage="([^"]+)"><td>[^<]*</td><td class="num">\d+</td>'
                      r'<td class="num">([^<]+)</td>', text)  # fmt: skip
    assert [line.split()[0] for line in printed] == [group for group, _ in rows]
    assert "cams/plain_cam" in {group for group, _ in rows} and rows[-1][0] == "eval"
    for line, (_, shown) in zip(printed, rows, strict=True):
        assert duration(float(line.split()[1])) == shown
