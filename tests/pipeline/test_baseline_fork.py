"""The plain-CAM baseline starts from the Puzzle-CAM classifier's state at the step its
puzzle terms switch on (issue part 9): the same weights as training it from step 0, bit
for bit on the CPU, in fewer steps."""

from __future__ import annotations

import torch

from puzzlecam.cli import main
from puzzlecam.io import read_jsonl
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.puzzle.losses import first_puzzle_step
from puzzlecam.training.checkpoint import load_weights
from tests.helpers import TINY_OVERRIDES


def test_first_puzzle_step_is_the_first_whose_progress_reaches_start():
    assert first_puzzle_step(0.0, 10) == 0
    assert first_puzzle_step(0.5, 10) == 5  # progress 5/10 = 0.5: the terms are on
    assert first_puzzle_step(0.5, 3) == 2  # 1/3 < 0.5 <= 2/3
    assert first_puzzle_step(0.3, 10) == 3  # 3/10 reaches 0.3 in floats too
    assert all(s / 7 < 0.4 for s in range(first_puzzle_step(0.4, 7)))


def _args(run, data, *extra):
    args = ["run", "--config", "demo", "--run-dir", str(run), "--no-progress"]
    overrides = [*TINY_OVERRIDES, f"data.root={data}", "until=cams", "train_cls.loop.epochs=3"]
    for override in [*overrides, "train_cls.loop.log_every_steps=1", *extra]:
        args += ["--set", override]
    return args


def _steps_logged(run) -> list[int]:
    records = read_jsonl(run / "classifier" / "plain_cam" / "metrics.jsonl")
    return [r["step"] for r in records if "type" not in r]


def test_the_forked_baseline_equals_one_trained_from_scratch(tmp_path, capsys):
    run, data = tmp_path / "run", tmp_path / "data"
    assert main(_args(run, data)) == 0  # demo: puzzle.start 0.5 of 6 steps, mid-epoch
    assert "starts from the Puzzle-CAM classifier's state" in capsys.readouterr().out
    snapshots = list((run / "classifier" / "puzzle_cam").glob("snapshot-*.pt"))
    assert len(snapshots) == 1
    assert torch.load(snapshots[0], weights_only=True)["step"] == 3
    forked = load_weights(run / "classifier" / "plain_cam" / "model.pt")["state_dict"]
    log = _steps_logged(run)

    # the same classifier trained from step 0: its folder and the snapshot gone
    snapshots[0].unlink()
    for path in (run / "classifier" / "plain_cam").iterdir():
        if path.is_file():
            path.unlink()
    RunDir(run).forget_stages(
        name for name in RunDir(run).manifest() if name != "train_cls/plain_cam"
    )
    assert main(_args(run, data)) == 0
    assert "starts from" not in capsys.readouterr().out
    scratch = load_weights(run / "classifier" / "plain_cam" / "model.pt")["state_dict"]
    assert forked.keys() == scratch.keys()
    assert all(torch.equal(forked[k], scratch[k]) for k in forked)
    # its log has every step, as the one trained from scratch
    assert _steps_logged(run) == log == [1, 2, 3, 4, 5, 6]


def test_puzzle_terms_from_the_first_step_leave_nothing_to_share(tmp_path, capsys):
    run, data = tmp_path / "run", tmp_path / "data"
    # puzzle terms from step 0: nothing to share, no snapshot
    assert main(_args(run, data, "train_cls.puzzle.start=0")) == 0
    assert "starts from" not in capsys.readouterr().out
    assert not list((run / "classifier" / "puzzle_cam").glob("snapshot-*.pt"))
