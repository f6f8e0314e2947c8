"""bench/gpu_check.py: the GPU machine's one script. Its sizing arithmetic against
hand-computed figures, and its smallest dry run (the CPU, the test backbone, 64 px) end to
end, so that the script a lent GPU runs keeps working between loans."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from puzzlecam.pipeline.config import load_run_config

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu_check.py"


def _script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_gpu_seconds_of_one_size_by_hand():
    gpu_check = _script()
    config = load_run_config("demo")  # 6 epochs, batch 16, puzzle terms from half-way
    calibration = {"plain_s": 0.1, "puzzle_s": 0.2, "cams_images_per_s": 100.0}
    # 1600 train images: 100 steps an epoch, 600 in all; L_cls 600 x 0.1 = 60 s; all three
    # 300 x 0.1 + 300 x 0.2 = 90 s; the CAMs of 1,600 + 400 images at 100/s = 20 s per
    # sub-run; 3 seeds x (60 + 20 + 90 + 20)
    assert gpu_check.gpu_seconds(config, calibration, 1600, 400) == pytest.approx(570.0)


def test_counts_are_cut_to_the_time_left_never_the_seeds():
    gpu_check = _script()
    profile = gpu_check.gpu_profile()
    config = load_run_config("demo")
    calibration = {512: {"plain_s": 0.1, "puzzle_s": 0.2, "cams_images_per_s": 100.0},
                   256: {"plain_s": 0.025, "puzzle_s": 0.05, "cams_images_per_s": 400.0}}  # fmt: skip
    # plenty of time: the 3000 / 500 at both sizes
    assert gpu_check.choose_counts(profile, config, calibration, 1e6) == ((512, 256), 3000, 500)
    sizes, train, val = gpu_check.choose_counts(profile, config, calibration, 1500.0)
    need = sum(gpu_check.gpu_seconds(config, calibration[s], train, val) for s in sizes)
    assert sizes == (512, 256) and need * profile.safety <= 1500.0
    assert 600 <= train < 3000 and val == round(train / 6)
    # 600 train images at both sizes need 261 s x 1.6 = 417 s; at 512 px alone 209 s x 1.6:
    # with 400 s the first size (512 px) runs alone, with more than 600 images
    sizes, train, _ = gpu_check.choose_counts(profile, config, calibration, 400.0)
    assert sizes == (512,) and 600 < train < 800


def test_smallest_dry_run_end_to_end(tmp_path):
    out = tmp_path / "out"
    argv = [sys.executable, str(SCRIPT), "--dry-run", "--sizes", "64",
            "--sections", "speed", "regime", "--work", str(tmp_path / "work"), str(out)]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert "errors" not in result
    steps = result["speed"]["puzzle_step"]
    assert {(s["precision"], s["channels_last"]) for s in steps} == {
        ("fp32", False),
        ("fp32", True),
        ("bf16", False),
        ("bf16", True),
    }
    for step in steps:  # the ratio is the puzzle step over the two plain steps it contains
        # (ratio and times are rounded, to 3 and 4 decimals: a hiccup in one timing of the
        # dry run's single repeat can make a ratio small enough for that to matter)
        expected = step["puzzle_s"] / step["limit_s"]
        assert step["ratio"] == pytest.approx(expected, rel=0.02, abs=2e-3)
        assert step["limit_s"] == pytest.approx(step["full_s"] + step["tiles_s"], abs=2e-4)
    regime = result["regime"]["sizes"]["64"]
    assert regime["finished"] == {"cls": [0, 1, 2], "all": [0, 1, 2]}
    for role in ("train", "val"):
        gains = regime["summary"]["all"][f"{role}_gain"]["per_seed"]
        assert len(gains) == 3 and all(-100 < g < 100 for g in gains.values())
        assert 0 <= regime["summary"]["cls"][f"{role}_miou"]["mean"] <= 100
    table = (out / "gpu_check.txt").read_text()
    assert "Puzzle step" in table and "64 px" in table and "(dry run)" in table
    assert (out / "logs.tar.gz").stat().st_size > 0
