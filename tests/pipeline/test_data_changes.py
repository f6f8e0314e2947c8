"""Changed data after a finished run: what re-runs, what the log says why, and the up-front
data check (every problem in one error, before any training; unchanged files not re-read)."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from PIL import Image

from puzzlecam.cli import main
from puzzlecam.errors import DataError
from puzzlecam.io import save_label_png
from puzzlecam.pipeline import data_check
from puzzlecam.pipeline.config import load_run_config
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.data_check import DataState, SplitState, prepare_data
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.pipeline.runner import plan_stages, stage_fingerprints
from tests.helpers import TINY_OVERRIDES, write_folder_dataset

SMALL = (("train", 8), ("val", 4))


def _overrides(tmp_path):
    return [
        *TINY_OVERRIDES,
        "data.format=folder",
        f"data.root={tmp_path / 'data'}",
        "until=cams",
        "train_cls.baseline_plain_cam=false",
    ]


def _cli(tmp_path, command="run"):
    args = [command, "--config", "demo", "--run-dir", str(tmp_path / "run"), "--no-progress"]
    for override in _overrides(tmp_path):
        args += ["--set", override]
    return main(args)


def _replace(path, value):
    """New bytes under the same name, and a later mtime (coarse clocks are no excuse)."""
    Image.fromarray(np.full((64, 64, 3), value, np.uint8)).save(path)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))


def _lines(text, prefix):
    return {line for line in text.splitlines() if line.startswith(prefix)}


def test_changed_data_re_run_the_stages_of_its_split_and_say_why(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "data", SMALL)
    run = tmp_path / "run"
    assert _cli(tmp_path) == 0
    first = capsys.readouterr().out
    assert "data check: 24 files read" in first  # 12 images, 12 masks
    assert (run / "data_signature.json").is_file() and (run / "data_check.json").is_file()

    # (a) unchanged data: every stage skipped, no file read again
    assert _cli(tmp_path) == 0
    again = capsys.readouterr().out
    assert "[run]" not in again and "data check" not in again

    # (b) a val image replaced: the val stages re-run, the train ones do not
    manifest = json.loads((run / "manifest.json").read_text())
    _replace(root / "images" / "val-01.jpg", 128)
    assert _cli(tmp_path, "data") == 0  # the change is recorded; the run is then "killed"
    out = capsys.readouterr().out
    assert "data: the val split 'val' changed since the last run: 1 image replaced" in out
    assert _cli(tmp_path) == 0
    out = capsys.readouterr().out
    assert _lines(out, "[run]") == {
        "[run] cams/puzzle_cam/val: data changed (val: 1 image replaced)",
        "[run] eval/cams/puzzle_cam/val: data changed (val: 1 image replaced)",
    }
    assert (
        "[skip] train_cls/puzzle_cam: done" in out and "[skip] cams/puzzle_cam/train: done" in out
    )
    assert "[clear] cams/puzzle_cam/val: outputs made from other inputs removed" in out
    after = json.loads((run / "manifest.json").read_text())
    for stage in ("data", "train_cls/puzzle_cam", "cams/puzzle_cam/train"):
        assert after[stage] == manifest[stage], stage
    assert (
        after["cams/puzzle_cam/val"]["fingerprint"]
        != manifest["cams/puzzle_cam/val"]["fingerprint"]
    )
    assert len(list((run / "cams" / "puzzle_cam" / "val").glob("*.npz"))) == 4

    # (b) a row added to labels.csv: the classifier learns again, so every CAM is redone
    Image.open(root / "images" / "train-00.jpg").save(root / "images" / "train-extra.jpg")
    with (root / "labels.csv").open("a") as handle:
        handle.write("train-extra,square,train\n")
    assert _cli(tmp_path) == 0
    out = capsys.readouterr().out
    reason = ": data changed (train: 1 image added)"
    assert _lines(out, "[run]") == {
        f"[run] {stage}{reason}"
        for stage in (
            "train_cls/puzzle_cam",
            "cams/puzzle_cam/train",
            "eval/cams/puzzle_cam/train",
            "cams/puzzle_cam/val",
            "eval/cams/puzzle_cam/val",
        )
    }
    assert (run / "cams" / "puzzle_cam" / "train" / "train-extra.npz").is_file()

    assert _cli(tmp_path) == 0  # and then nothing again
    assert "[run]" not in capsys.readouterr().out


def test_a_change_of_one_split_changes_the_fingerprints_of_that_split_only():
    plan = plan_stages(load_run_config("demo", ("train_seg.fully_supervised=true",)))
    settings_only = stage_fingerprints(plan)
    same = DataState({"train": SplitState("t0", "t0"), "val": SplitState("v0", "v0")})
    # unchanged data add nothing: runs made before data signatures keep their fingerprints
    assert stage_fingerprints(plan, same.terms()) == settings_only

    val_changed = DataState({"train": SplitState("t0", "t0"), "val": SplitState("v1", "v0", "v0")})
    prints = stage_fingerprints(plan, val_changed.terms())
    moved = {name for name in prints if prints[name] != settings_only[name]}
    val_stages = {name for name in prints if name.endswith("/val")} | {"eval/predict/weak",
                                                                         "eval/predict/full"}  # fmt: skip
    assert moved == val_stages
    assert stage_fingerprints(plan, val_changed.terms(before=["val"])) == settings_only

    train_changed = DataState(
        {"train": SplitState("t1", "t0", "t0"), "val": SplitState("v0", "v0")}
    )
    prints = stage_fingerprints(plan, train_changed.terms())
    assert {name for name in prints if prints[name] == settings_only[name]} == {"data"}


def test_every_problem_in_one_error_before_any_training(tmp_path, capsys):
    root = write_folder_dataset(tmp_path / "data", SMALL)
    (root / "images" / "train-02.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    save_label_png(root / "masks" / "val-01.png", np.zeros((32, 40), np.uint8))
    assert _cli(tmp_path) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"puzzlecam run: error: {root}: ")
    assert (
        "the data check found 2 problems (1 unreadable image, 1 mask of the wrong size): "
        "images/train-02.jpg: cannot be read as an image (" in err
    )
    assert "; masks/val-01.png: mask is 40x32 (WxH) but its image is 64x64; fix or replace" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "classifier").exists()
    assert list(json.loads((tmp_path / "run" / "manifest.json").read_text())) == ["data"]


def test_the_check_does_not_read_unchanged_files_again(tmp_path, monkeypatch):
    root = write_folder_dataset(tmp_path / "data", SMALL)
    config = load_run_config("demo", tuple(_overrides(tmp_path)))
    opened = []

    def counting(reader):
        def read(path):
            opened.append(os.path.basename(path))
            return reader(path)

        return read

    monkeypatch.setattr(data_check, "image_size", counting(data_check.image_size))
    monkeypatch.setattr(data_check, "load_label_png", counting(data_check.load_label_png))

    def check():
        opened.clear()
        ctx = RunContext(config, RunDir(tmp_path / "run"), progress=False)  # splits read anew
        return prepare_data(ctx)

    first = check()
    assert len(opened) == 24
    assert check() == first and opened == []
    _replace(root / "images" / "train-03.png", 100)
    mask = root / "masks" / "val-02.png"
    os.utime(mask, ns=(mask.stat().st_atime_ns, mask.stat().st_mtime_ns + 10**9))
    state = check()
    assert sorted(opened) == ["train-03.png", "val-02.png"]
    assert state.splits["train"].change == "1 image replaced"
    assert state.splits["val"].change == "1 mask changed"

    # what a readable file holds is cached: a bad mask is reported again without a read
    save_label_png(mask, np.full((64, 64), 9, np.uint8))
    for reads in (["val-02.png"], []):
        with pytest.raises(DataError, match="val-02.png: mask has values \\[9\\]"):
            check()
        assert opened == reads
    # a file that could not be read is tried again (a permission fixed leaves its mtime)
    save_label_png(mask, np.zeros((64, 64), np.uint8))
    (root / "images" / "val-03.jpg").write_bytes(b"not an image")
    for _ in range(2):
        with pytest.raises(DataError, match="val-03.jpg: cannot be read as an image"):
            check()
        assert "val-03.jpg" in opened
