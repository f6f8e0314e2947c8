"""The plan of a run: which stages exist for a config, what each reads, and the summary."""

from __future__ import annotations

import pytest

from puzzlecam.pipeline.branches import BRANCH_SCORES, metric_key
from puzzlecam.pipeline.config import load_run_config
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.pipeline.runner import format_summary, plan_stages, stage_fingerprints

PLAIN_BRANCH = {  # stage -> its inputs, the stages the plain-CAM baseline adds
    "train_cls/plain_cam": ("data",),
    "cams/plain_cam/train": ("train_cls/plain_cam",),
    "eval/cams/plain_cam/train": ("cams/plain_cam/train",),
    "cams/plain_cam/val": ("train_cls/plain_cam",),
    "eval/cams/plain_cam/val": ("cams/plain_cam/val",),
    "affinity_labels/plain_cam": ("cams/plain_cam/train",),
    "train_aff/plain_cam": ("affinity_labels/plain_cam",),
    "rw/plain_cam/train": ("train_aff/plain_cam", "cams/plain_cam/train"),
    "eval/rw/plain_cam/train": ("rw/plain_cam/train",),
    "pseudo_labels/plain_cam/train": ("rw/plain_cam/train",),
    "eval/pseudo_labels/plain_cam/train": ("pseudo_labels/plain_cam/train",),
    "rw/plain_cam/val": ("train_aff/plain_cam", "cams/plain_cam/val"),
    "eval/rw/plain_cam/val": ("rw/plain_cam/val",),
    "pseudo_labels/plain_cam/val": ("rw/plain_cam/val",),
    "eval/pseudo_labels/plain_cam/val": ("pseudo_labels/plain_cam/val",),
}


def _plan(*overrides: str) -> dict[str, tuple[str, ...]]:
    config = load_run_config("demo", ("train_seg.fully_supervised=true", *overrides))
    return {stage.name: stage.inputs for stage in plan_stages(config)}


def test_the_plain_cam_branch_runs_the_same_refinement_as_puzzle_cam() -> None:
    without = _plan("train_cls.baseline_plain_cam=false")
    assert not [name for name in without if "plain_cam" in name]
    with_plain = _plan("train_cls.baseline_plain_cam=true")
    added = {name: inputs for name, inputs in with_plain.items() if name not in without}
    assert added == PLAIN_BRANCH
    assert {n: i for n, i in with_plain.items() if n in without} == without  # nothing else moves
    # the Puzzle-CAM branch reads only its own files; DeepLabV3+ learns from its labels
    assert without["rw/puzzle_cam/train"] == ("train_aff/puzzle_cam", "cams/puzzle_cam/train")
    assert without["affinity_labels/puzzle_cam"] == ("cams/puzzle_cam/train",)
    assert with_plain["train_seg/weak"] == ("pseudo_labels/puzzle_cam/train",)


def test_plans_cut_early_keep_the_branches_cams() -> None:
    plan = _plan("until=cams")
    assert "cams/plain_cam/train" in plan and "eval/cams/plain_cam/train" in plan
    assert not [name for name in plan if name.startswith(("rw/", "train_aff/", "affinity"))]
    plan = _plan("until=pseudo-labels")
    assert "pseudo_labels/plain_cam/val" in plan and "train_seg/weak" not in plan


def test_the_branches_have_their_own_fingerprints() -> None:
    config = load_run_config("demo")
    prints = stage_fingerprints(plan_stages(config))
    assert prints["train_aff/plain_cam"] != prints["train_aff/puzzle_cam"]
    assert prints["rw/plain_cam/val"] != prints["rw/puzzle_cam/val"]


def test_metric_keys() -> None:
    # the Puzzle-CAM branch keeps its keys; the plain branch's are its own
    assert [metric_key("puzzle_cam", o) for o in ("cams", "rw", "pseudo_labels")] == [
        "puzzle_cam",
        "rw",
        "pseudo_labels",
    ]
    assert metric_key("puzzle_cam", "pseudo_labels_nocrf") == "pseudo_labels_nocrf"
    assert metric_key("plain_cam", "rw") == "plain_cam_rw"
    assert metric_key("plain_cam", "pseudo_labels") == "plain_cam_pseudo_labels"
    assert len({s.key for s in BRANCH_SCORES}) == len(BRANCH_SCORES) == 8
    with pytest.raises(KeyError, match="branches"):
        metric_key("grad_cam", "rw")


def test_summary_shows_table_2() -> None:
    metrics = {
        "puzzle_cam": {"train": {"miou": 51.5, "threshold": 0.2}},
        "plain_cam": {"train": {"miou": 47.8, "threshold": 0.15}},
        "rw": {"train": {"miou": 64.2, "threshold": 0.3}},
        "plain_cam_rw": {"train": {"miou": 58.1, "threshold": 0.3}},
        "plain_cam_pseudo_labels": {"val": {"miou": 59.7}},
    }
    text = format_summary(metrics, {"rw/plain_cam/train": {"seconds": 2.0}})
    lines = text.splitlines()
    rows = [line.split()[0] for line in lines[1:6]]
    assert rows == ["plain_cam", "puzzle_cam", "plain_cam_rw", "plain_cam_pseudo_labels", "rw"]
    table = lines[lines.index(next(x for x in lines if x.startswith("Table 2"))) :]
    assert table[1].split() == [
        "plain",
        "CAM",
        "47.8",
        "/",
        "-",
        "58.1",
        "/",
        "-",
        "-",
        "/",
        "59.7",
    ]
    assert table[2].split()[:5] == ["Puzzle-CAM", "51.5", "/", "-", "64.2"]
    assert "rw/plain_cam" in text
    # one branch only: no Table 2
    assert "Table 2" not in format_summary({"puzzle_cam": metrics["puzzle_cam"]}, {})


def test_stages_of_an_older_layout_are_forgotten(tmp_path) -> None:
    run = RunDir(tmp_path)
    run.mark_done("rw/train", "abc", 1.0)  # the layout before the plain-CAM branch
    run.mark_done("data", "def", 1.0)
    assert run.forget_stages(["data", "rw/puzzle_cam/train"]) == ["rw/train"]
    assert list(run.manifest()) == ["data"]
    assert run.forget_stages(["data"]) == []
