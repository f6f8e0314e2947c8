"""The threshold explorer of a finished run, timed and checked in headless Chromium.

    python bench/explore_page.py --run-dir runs/demo [--max-images 200] [--shots docs]

Writes the page (``puzzlecam explore``'s code path) and prints its size and seconds; opens
it in Chromium (Selenium, the system's chromedriver), prints the seconds until it is drawn
and the mIoU it shows at the run's pseudo-label threshold beside metrics.json's (pseudo
labels without CRF: equal when every val image is on the page); then moves the
pseudo-label slider to 0.35 with the keyboard, as a user would, and prints the mIoU and
each class's share there. With ``--shots`` it saves a screenshot at each threshold.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.keys import Keys

from puzzlecam.io import read_json
from puzzlecam.pipeline.report.collect import load_run
from puzzlecam.pipeline.report.explorer import EXPLORE_FILE, write_explorer
from puzzlecam.pipeline.run_dir import RunDir

LOW = 0.35  # the paper's pseudo-label threshold


def browser(width: int, height: int) -> webdriver.Chrome:
    binary = next(
        filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None
    )
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        sys.exit("needs Chromium and chromedriver (apt-get install chromium chromium-driver)")
    options = Options()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                     f"--window-size={width},{height}"):  # fmt: skip
        options.add_argument(argument)
    options.binary_location = binary
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(driver), options=options)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"))
    parser.add_argument("--max-images", type=int, default=200, help="images of each split")
    parser.add_argument("--shots", type=Path, help="save explore_0.65.png / explore_0.35.png here")
    parser.add_argument("--size", type=int, nargs=2, default=(1600, 1300), metavar=("W", "H"))
    args = parser.parse_args()

    run = RunDir(args.run_dir)
    summary = load_run(run)
    page = Path(tempfile.mkdtemp()) / EXPLORE_FILE
    started = time.perf_counter()
    write_explorer(run, args.max_images, page, summary=summary)
    print(f"page: {args.max_images} images of each split at most, "
          f"{page.stat().st_size / 2**20:.1f} MB, written in {time.perf_counter() - started:.1f} s")  # fmt: skip

    chrome = browser(*args.size)
    try:
        started = time.perf_counter()
        chrome.get(page.as_uri())
        while not chrome.execute_script(
            "return !!(window.puzzlecamExplorer && window.puzzlecamExplorer.ready)"
        ):
            time.sleep(0.05)
        print(f"drawn in Chromium in {time.perf_counter() - started:.1f} s")
        metrics = read_json(run.metrics_path)
        run_threshold = summary.config.pseudo_labels.threshold
        for threshold in (run_threshold, LOW):
            slider = chrome.find_element("id", "slider-pseudo")
            presses = round((run_threshold - threshold) * 100)
            slider.send_keys(*[Keys.ARROW_LEFT] * presses)
            shown = chrome.find_element("id", "value-pseudo").text
            print(f"\npseudo-label threshold {shown}:")
            for method, key in (("plain_cam", "plain_cam_pseudo_labels_nocrf"),
                                ("puzzle_cam", "pseudo_labels_nocrf")):  # fmt: skip
                value = float(
                    chrome.find_element("id", f"miou-rw-{method}").get_attribute("data-value")
                )
                entry = metrics.get(key, {}).get("val", {})
                where = f"metrics.json {entry.get('miou', float('nan')):.2f} at {entry.get('threshold')}"
                print(f"  {method:10s} val mIoU on the page {value:.2f}  ({where})")
            legend = chrome.find_elements("css selector", ".charts .legend > span")
            print("  share of each class's images labelled it (Puzzle-CAM):",
                  ", ".join(item.text for item in legend))  # fmt: skip
            if args.shots:
                args.shots.mkdir(parents=True, exist_ok=True)
                chrome.save_screenshot(str(args.shots / f"explore_{threshold:.2f}.png"))
        errors = [entry for entry in chrome.get_log("browser") if entry["level"] == "SEVERE"]
        print(f"\nconsole errors: {len(errors)}")
    finally:
        chrome.quit()


if __name__ == "__main__":
    main()
