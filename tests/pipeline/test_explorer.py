"""The threshold explorer (report/explore.html): what it ships gives back the run's labels
at every threshold of its grid, its scores equal the run's evaluation, and, in a real
browser (headless Chromium, skipped where none is installed), moving a slider recolours
the label maps as the same threshold applied in Python predicts."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from puzzlecam.cams.scores import load_scores, threshold_argmax
from puzzlecam.cli import main
from puzzlecam.io import load_label_png, read_json
from puzzlecam.metrics.confusion import SegmentationScores, confusion_counts
from puzzlecam.pipeline.branches import metric_key
from puzzlecam.pipeline.report.collect import load_run
from puzzlecam.pipeline.report.explorer import (
    EXPLORE_FILE,
    EXPLORE_GRID,
    ImageMaps,
    decode_maps,
    encode_maps,
    explorer_data,
)
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.visualize import colorize_labels
from tests.helpers import TINY_OVERRIDES

PSEUDO = 0.65  # the demo preset's pseudo-label threshold, which the tiny run keeps


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny demo run up to its pseudo labels (8 train / 4 val images at 64 px)."""
    root = tmp_path_factory.mktemp("explore")
    args = ["--run-dir", str(root / "run"), "--no-progress", "--set", f"data.root={root / 'data'}"]
    for override in [*TINY_OVERRIDES, "data.demo.num_train=8", "data.demo.num_val=4",
                     "until=pseudo-labels"]:  # fmt: skip
        args += ["--set", override]
    assert main(["demo", *args]) == 0
    return root / "run"


def _page_data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    found = re.search(
        r'<script type="application/json" id="explorer-data">(.*?)</script>', text, re.S
    )
    assert found, "the page holds no data"
    return json.loads(found.group(1))


def _maps(uri: str) -> ImageMaps:
    assert uri.startswith("data:image/webp;base64,")
    return decode_maps(base64.b64decode(uri.split(",", 1)[1]))


def _at(label: np.ndarray, bucket: np.ndarray, threshold: float) -> np.ndarray:
    """The page's rule: the label where the bucket passes the threshold's grid index."""
    return np.where(bucket > EXPLORE_GRID.index(threshold), label, 0)


def test_maps_survive_the_encoding_exactly() -> None:
    rng = np.random.default_rng(0)
    planes = [rng.integers(0, 256, (7, 5), dtype=np.uint8) for _ in range(6)]
    decoded = decode_maps(encode_maps(ImageMaps(*planes)))
    for name, plane in zip(("cam_label", "cam_bucket", "gt", "rw_label", "rw_bucket", "pseudo"),
                           planes, strict=True):  # fmt: skip
        np.testing.assert_array_equal(getattr(decoded, name), plane, err_msg=name)


def test_page_gives_back_the_runs_labels_and_scores(tiny_run: Path) -> None:
    """Every val image and branch: the labels at two thresholds equal threshold_argmax of
    the score files, the masks and pseudo labels are the run's, and the mIoU over the
    page's val images at the run's threshold equals metrics.json's (pseudo labels, no CRF)."""
    run = RunDir(tiny_run)
    data = explorer_data(load_run(run), max_images=100, workers=1)
    val = [e for e in data["images"] if e["split"] == "val"]
    assert len(val) == 4 and len([e for e in data["images"] if e["split"] == "train"]) == 8
    assert [b["method"] for b in data["branches"]] == ["plain_cam", "puzzle_cam"]
    assert data["settings"]["pseudo"] == PSEUDO
    metrics = read_json(run.metrics_path)
    for method in ("plain_cam", "puzzle_cam"):
        matrix = np.zeros((6, 6), dtype=np.int64)
        for entry in val:
            maps = _maps(entry["maps"][method])
            image_id = entry["id"]
            for folder, label, bucket in (("cams", maps.cam_label, maps.cam_bucket),
                                          ("rw", maps.rw_label, maps.rw_bucket)):  # fmt: skip
                scores = load_scores(tiny_run / folder / method / "val" / f"{image_id}.npz")
                lookup = np.concatenate([[0], scores.keys])
                for threshold in (0.35, PSEUDO):
                    expected = lookup[threshold_argmax(scores.scores, threshold)]
                    np.testing.assert_array_equal(_at(label, bucket, threshold), expected)
            gt = load_label_png(
                Path(tiny_run.parent / "data" / "SegmentationClass" / f"{image_id}.png")
            )
            np.testing.assert_array_equal(maps.gt, gt)
            pseudo = load_label_png(tiny_run / "pseudo_labels" / method / "val" / f"{image_id}.png")
            np.testing.assert_array_equal(maps.pseudo, pseudo)
            matrix += confusion_counts(_at(maps.rw_label, maps.rw_bucket, PSEUDO), gt, 6)
        expected = metrics[metric_key(method, "pseudo_labels_nocrf")]["val"]["miou"]
        assert SegmentationScores.from_matrix(matrix).miou * 100 == pytest.approx(
            expected, abs=1e-3
        )
    evaluation = data["splits"][[s["role"] for s in data["splits"]].index("val")]["evaluations"]
    assert evaluation["puzzle_cam"]["pseudo_labels_nocrf"]["threshold"] == PSEUDO


def test_a_large_image_is_shown_and_scored_at_the_page_size(tmp_path: Path) -> None:
    """A 400 x 640 image ships at 200 x 320 (MAX_SIDE): its maps are the full-size labels
    taken by nearest neighbour, its mask the same way, and no map without a file."""
    from PIL import Image

    from puzzlecam.cams.scores import ScoreMaps, save_scores
    from puzzlecam.data.samples import Sample
    from puzzlecam.io import save_label_png
    from puzzlecam.pipeline.report.explorer import MAX_SIDE, _image_entry, _Job

    rng = np.random.default_rng(1)
    Image.fromarray(rng.integers(0, 256, (400, 640, 3), dtype=np.uint8)).save(tmp_path / "a.jpg")
    mask = rng.integers(0, 3, (400, 640)).astype(np.uint8)
    save_label_png(tmp_path / "a.png", mask)
    cams = tmp_path / "cams"
    cams.mkdir()
    scores = rng.random((2, 400, 640)).astype(np.float16)
    save_scores(cams / "a.npz", ScoreMaps(np.array([1, 2]), scores))
    sample = Sample("a", tmp_path / "a.jpg", (0, 1), tmp_path / "a.png")
    entry = _image_entry(_Job(sample, "val", (("puzzle_cam", cams, None, None),)))
    assert entry["size"] == [200, MAX_SIDE] and entry["full"] == [400, 640]
    maps = _maps(entry["maps"]["puzzle_cam"])
    labels = np.concatenate([[0], [1, 2]])[threshold_argmax(scores, 0.5)].astype(np.uint8)
    nearest = np.asarray(Image.fromarray(labels).resize((MAX_SIDE, 200), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(_at(maps.cam_label, maps.cam_bucket, 0.5), nearest)
    gt = np.asarray(Image.fromarray(mask).resize((MAX_SIDE, 200), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(maps.gt, gt)
    assert not maps.rw_label.any() and entry["rw"] == {"puzzle_cam": False}


def test_explore_command_and_the_report_link(tiny_run: Path, capsys) -> None:
    out = tiny_run.parent / "page" / "two.html"
    assert main(["explore", "--run-dir", str(tiny_run), "--max-images", "2", "--out", str(out),
                 "--no-progress"]) == 0  # fmt: skip
    assert str(out) in capsys.readouterr().out
    data = _page_data(out)
    assert [e["split"] for e in data["images"]] == ["train", "train", "val", "val"]
    text = out.read_text(encoding="utf-8")
    # self-contained: nothing fetched (the SVG namespace is a name, not a request)
    assert not re.search(r'(src|href)="(https?:|//|/)', text)
    assert "fetch(" not in text and "XMLHttpRequest" not in text
    # the report writes the same page beside its index, and links it
    assert main(["report", "--run-dir", str(tiny_run), "--no-progress"]) == 0
    index = (tiny_run / "report" / "index.html").read_text(encoding="utf-8")
    assert f'href="{EXPLORE_FILE}"' in index
    assert len(_page_data(tiny_run / "report" / EXPLORE_FILE)["images"]) == 12


def test_explore_command_errors(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "nowhere"
    assert main(["explore", "--run-dir", str(missing)]) != 0
    assert str(missing) in capsys.readouterr().err


def test_a_damaged_score_file_names_itself_and_spares_the_rest(
    tiny_run: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "run"
    shutil.copytree(tiny_run, copy)
    damaged = sorted((copy / "rw" / "puzzle_cam" / "val").glob("*.npz"))[0]
    damaged.write_bytes(b"not a zip file")
    page = tmp_path / "page.html"
    assert main(["explore", "--run-dir", str(copy), "--out", str(page), "--no-progress"]) == 0
    entries = {e["id"]: e for e in _page_data(page)["images"]}
    assert damaged.name in entries[damaged.stem]["problem"]
    assert sum("problem" in e for e in entries.values()) == 1


def test_script_data_cannot_end_the_script_element() -> None:
    from puzzlecam.pipeline.report.explorer import _script_json

    text = _script_json({"classes": ["a</script><script>alert(1)</script>"]})
    assert "</" not in text and json.loads(text)["classes"][0].startswith("a</script>")


# --- in a real browser -----------------------------------------------------------------------


def _browser():
    """Headless Chromium through Selenium and the system's chromedriver, or a skip."""
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    binary = next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip(
            "no Chromium or chromedriver installed (apt-get install chromium chromium-driver)"
        )
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1500,1200", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(argument)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    from selenium.common.exceptions import WebDriverException

    try:
        return webdriver.Chrome(service=Service(driver), options=options)
    except WebDriverException as error:  # the machine's, not the page's: no browser here
        pytest.skip(f"Chromium did not start: {error.msg}")


def _wait_ready(browser) -> None:
    deadline = time.monotonic() + 30
    ready = "return !!(window.puzzlecamExplorer && window.puzzlecamExplorer.ready)"
    while not browser.execute_script(ready):
        assert time.monotonic() < deadline, "the page never became ready"
        time.sleep(0.1)


def _canvas_labels(
    browser, image_id: str, method: str, panel: str, palette: np.ndarray
) -> np.ndarray:
    """The label map a canvas shows, read back from its pixels through the palette."""
    rgba = browser.execute_script(
        "const c = document.querySelector(`canvas[data-image='${arguments[0]}']"
        "[data-method='${arguments[1]}'][data-panel='${arguments[2]}']`);"
        "return [c.height, c.width, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)];",
        image_id, method, panel,
    )  # fmt: skip
    height, width, values = rgba
    pixels = np.asarray(values, dtype=np.uint8).reshape(height, width, 4)[..., :3]
    codes = {tuple(colour): label for label, colour in enumerate(palette)}
    return np.vectorize(lambda r, g, b: codes[(r, g, b)], otypes=[np.uint8])(
        *np.moveaxis(pixels, -1, 0)
    )


@pytest.mark.browser
def test_slider_recolours_the_label_maps_in_chromium(tiny_run: Path, tmp_path: Path) -> None:
    """Open the page, move the pseudo-label slider from 0.65 to 0.35 with the keyboard: the
    first image's pseudo-label canvas shows threshold_argmax of its random-walk scores at
    each value, the mIoU shown is the run's at 0.65, no console errors; screenshots saved."""
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    page = tiny_run.parent / "browser" / EXPLORE_FILE
    assert main(["explore", "--run-dir", str(tiny_run), "--out", str(page), "--no-progress"]) == 0
    palette = colorize_labels(np.arange(256, dtype=np.uint8)[None])[0]
    shots = Path(os.environ.get("PUZZLECAM_SCREENSHOTS", tmp_path))
    browser = _browser()
    try:
        browser.get(page.as_uri())
        _wait_ready(browser)
        first = browser.find_element("css selector", ".imagerow").get_attribute("data-image")
        scores = load_scores(tiny_run / "rw" / "puzzle_cam" / "val" / f"{first}.npz")
        lookup = np.concatenate([[0], scores.keys])
        metrics = read_json(RunDir(tiny_run).metrics_path)
        shown = browser.find_element("id", "miou-rw-puzzle_cam")
        assert float(shown.get_attribute("data-value")) == pytest.approx(
            metrics["pseudo_labels_nocrf"]["val"]["miou"], abs=0.1
        )
        for threshold, presses in ((PSEUDO, 0), (0.35, 30)):
            slider = browser.find_element("id", "slider-pseudo")
            slider.send_keys(*[Keys.ARROW_LEFT] * presses)
            assert browser.find_element("id", "value-pseudo").text == f"{threshold:.2f}"
            expected = lookup[threshold_argmax(scores.scores, threshold)]
            shown_labels = _canvas_labels(browser, first, "puzzle_cam", "pseudoLabels", palette)
            np.testing.assert_array_equal(shown_labels, expected, err_msg=str(threshold))
            line = browser.find_element("id", "set-line").text
            assert f"pseudo_labels.threshold={threshold:.2f}" in line
            browser.save_screenshot(str(shots / f"explore_{threshold:.2f}.png"))
        # every class filter and both splits draw (a class may have no image here)
        for split in ("train", "val"):
            Select(browser.find_element("id", "split")).select_by_value(split)
            classes = Select(browser.find_element("id", "class-filter"))
            for index in range(len(classes.options)):
                classes.select_by_index(index)
                assert browser.find_element("id", "page").text.startswith("page 1 of")
        severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        assert not severe, severe
        # the same page for a data set without masks: no mIoU, the class shares instead
        text = page.read_text(encoding="utf-8").replace('"mask":true', '"mask":false')
        unmasked = page.with_name("unmasked.html")
        unmasked.write_text(text, encoding="utf-8")
        browser.get(unmasked.as_uri())
        _wait_ready(browser)
        assert not browser.find_elements("id", "miou-rw-puzzle_cam")
        assert "no masks" in browser.find_element("id", "figures").text
        assert browser.find_elements("css selector", ".charts .legend > span")
        assert not [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    finally:
        browser.quit()
