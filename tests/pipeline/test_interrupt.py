"""Killing `puzzlecam run` mid-way and running it again: same results, finished stages
not redone."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import TINY_OVERRIDES

pytestmark = pytest.mark.slow


def _command(tmp_path: Path, run: str) -> list[str]:
    args = [
        sys.executable,
        "-m",
        "puzzlecam",
        "demo",
        "--run-dir",
        str(tmp_path / run),
        "--no-progress",
    ]
    for override in [*TINY_OVERRIDES, f"data.root={tmp_path / 'data'}"]:
        args += ["--set", override]
    return args


def _manifest(run_dir: Path) -> dict:
    path = run_dir / "manifest.json"
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def test_killed_run_resumes_with_the_same_results(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    subprocess.run(
        _command(tmp_path, "reference"), check=True, capture_output=True, env=env, timeout=600
    )
    reference = _metrics(tmp_path / "reference")
    total = len(_manifest(tmp_path / "reference"))

    run_dir = tmp_path / "killed"
    kills = []
    for stop_after in (3, total // 2, total - 3):  # early, middle, late stages
        process = subprocess.Popen(
            _command(tmp_path, "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.time() + 600
        while (
            len(_manifest(run_dir)) < stop_after
            and process.poll() is None
            and time.time() < deadline
        ):
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills.append(_manifest(run_dir))
    assert len(kills[-1]) < total, "the run finished before it could be killed"

    before = _manifest(run_dir)
    done = subprocess.run(_command(tmp_path, "killed"), capture_output=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    after = _manifest(run_dir)
    assert len(after) == total
    for stage, entry in before.items():  # finished stages were skipped, not redone
        assert after[stage] == entry, stage
    resumed = _metrics(run_dir)
    for method, splits in reference.items():
        for split, values in splits.items():
            assert resumed[method][split]["miou"] == pytest.approx(values["miou"], abs=1e-6), (
                method,
                split,
            )
    leftovers = [p for p in run_dir.rglob("*.tmp")]
    assert not leftovers, leftovers  # no half-written files survive the kills
