"""The inference stages with an engine (issue part 9): the CAMs, random-walk scores and
predictions of ONNX Runtime / OpenVINO are PyTorch's to float rounding; the engine binds
nothing: a run resumes with another, and a missing one falls back, said once."""

from __future__ import annotations

import numpy as np
import pytest

from puzzlecam.cams.scores import load_scores
from puzzlecam.cli import main
from puzzlecam.io import load_label_png, read_json
from puzzlecam.models.engine import installed_engines
from tests.helpers import TINY_OVERRIDES

INSTALLED = installed_engines()


def _args(run, data, *extra):
    args = ["run", "--config", "demo", "--run-dir", str(run), "--no-progress"]
    for override in [*TINY_OVERRIDES, f"data.root={data}", *extra]:
        args += ["--set", override]
    return args


def _max_difference(a, b, folder: str, suffix: str = ".npz") -> float:
    files = sorted((a / folder).glob(f"*{suffix}"))
    assert files and len(files) == len(list((b / folder).glob(f"*{suffix}")))
    if suffix == ".png":  # labels: the share of pixels that differ
        differ = [np.mean(load_label_png(f) != load_label_png(b / folder / f.name)) for f in files]
        return float(max(differ))
    return max(
        float(np.abs(load_scores(f).scores - load_scores(b / folder / f.name).scores).max())
        for f in files
    )


@pytest.mark.skipif(not INSTALLED, reason="no inference engine installed")
def test_an_engines_run_is_torchs_to_float_rounding(tmp_path, capsys):
    data, torch_run, engine_run = tmp_path / "data", tmp_path / "torch", tmp_path / "engine"
    assert main(_args(torch_run, data, "engine=torch")) == 0
    assert main(_args(engine_run, data, f"engine={INSTALLED[0]}")) == 0
    out = capsys.readouterr().out
    assert f"({INSTALLED[0]})" in out
    for folder in ("cams/puzzle_cam/val", "cams/plain_cam/train", "rw/puzzle_cam/val"):
        assert _max_difference(torch_run, engine_run, folder) <= 1e-3, folder
    # the labels: the same but for pixels that float rounding tips over
    assert _max_difference(torch_run, engine_run, "predictions/weak/val", ".png") <= 0.01
    one, other = read_json(torch_run / "metrics.json"), read_json(engine_run / "metrics.json")
    for key in ("puzzle_cam", "rw", "deeplab_weak"):
        assert abs(one[key]["val"]["miou"] - other[key]["val"]["miou"]) <= 0.5, key
    # a graph per trained model, beside its weights, reused by the next run
    assert (engine_run / "classifier" / "puzzle_cam" / "engine.onnx").is_file()
    assert (engine_run / "segmentation" / "weak" / "engine.onnx.key").is_file()
    # the engine binds nothing: the torch run resumes with the engine, every stage skipped
    assert main(_args(torch_run, data, f"engine={INSTALLED[0]}")) == 0
    assert "[run] " not in capsys.readouterr().out


def test_a_missing_engine_falls_back_and_says_so_once(tmp_path, capsys, monkeypatch):
    from puzzlecam.models import engine

    monkeypatch.setattr(engine, "installed_engines", lambda: [])
    run, data = tmp_path / "run", tmp_path / "data"
    assert main(_args(run, data, "until=cams", "engine=openvino")) == 0
    out = capsys.readouterr().out
    assert out.count("engine openvino is not installed") == 1
    assert "running with torch" in out and "(torch)" in out
    assert not list(run.rglob("engine.onnx"))


@pytest.mark.skipif(not INSTALLED, reason="no inference engine installed")
def test_auto_runs_an_engine_on_batches_and_pytorch_on_one_image_at_a_time(tmp_path):
    run, data = tmp_path / "run", tmp_path / "data"
    assert main(_args(run, data, "engine=auto")) == 0
    assert (run / "classifier" / "puzzle_cam" / "engine.onnx").is_file()  # the CAMs, batched
    # the random walk's boundary maps and the predictions: one image at a time
    assert not (run / "affinitynet" / "puzzle_cam" / "engine.onnx").exists()
    assert not (run / "segmentation" / "weak" / "engine.onnx").exists()
