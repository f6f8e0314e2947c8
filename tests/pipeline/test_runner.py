"""The plan of a run: which stages exist for a config (and why the others do not), what
each reads and writes, and the summary."""

from __future__ import annotations

import pytest

from puzzlecam.pipeline.branches import BRANCH_SCORES, metric_key
from puzzlecam.pipeline.config import load_run_config
from puzzlecam.pipeline.plan import every_stage, make_plan, stage_times
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


def test_the_plan_names_each_evaluation_once() -> None:
    plan = make_plan(load_run_config("demo", ("train_seg.fully_supervised=true",)))
    names = {(c.key, c.split): c.eval_name for s in plan.stages for c in s.scores}
    assert names[("puzzle_cam", "train")] == "cams_puzzle_cam_train"  # the names runs have
    assert names[("plain_cam", "val")] == "cams_plain_cam_val"
    assert names[("rw", "val")] == "rw_val"
    assert (
        names[("plain_cam_pseudo_labels_nocrf", "train")] == "plain_cam_pseudo_labels_nocrf_train"
    )
    assert names[("deeplab_full", "val")] == "deeplab_full_val"
    assert len(names) == len(set(names.values())) == 8 * 2 + 2
    stage = plan.scoring("plain_cam_rw")
    assert stage is not None and (stage.name, stage.method) == (
        "eval/rw/plain_cam/train",
        "plain_cam",
    )


def test_the_plan_says_why_it_leaves_stages_out() -> None:
    plan = make_plan(load_run_config("demo", ("until=cams", "train_cls.baseline_plain_cam=false")))
    assert plan.left_out["train_cls/plain_cam"].startswith("no plain-CAM baseline")
    assert plan.left_out["rw/puzzle_cam/val"] == "it stops after the CAMs: until: cams"
    assert "train_cls/puzzle_cam" not in plan.left_out
    full = make_plan(load_run_config("demo", ("train_seg.fully_supervised=false",)))
    assert full.left_out == {
        "train_seg/full": "no fully supervised model: train_seg.fully_supervised is false",
        "eval/predict/full": "no fully supervised model: train_seg.fully_supervised is false",
    }
    assert len(full.every) == len(plan.every)  # every stage a run may have, whatever the config


def test_stage_times_group_the_plans_stages() -> None:
    manifest = {
        "data": {"seconds": 1.0},
        "train_cls/puzzle_cam": {"seconds": 2.0},
        "cams/puzzle_cam/train": {"seconds": 3.0},
        "eval/cams/puzzle_cam/train": {"seconds": 0.5},
        "cams/puzzle_cam/val": {"seconds": 4.0},
        "eval/cams/puzzle_cam/val": {"seconds": 0.5},
        "eval/predict/weak": {"seconds": 6.0},
        "an/older/stage": {"seconds": 7.0},
    }
    times = stage_times(every_stage(), manifest)
    assert [(t.group, t.parts, t.seconds) for t in times] == [
        ("data", 1, 1.0),
        ("train_cls/puzzle_cam", 1, 2.0),
        ("cams/puzzle_cam", 2, 7.0),
        ("predict/weak", 1, 6.0),
        ("an/older/stage", 1, 7.0),
        ("eval", 2, 1.0),  # the evaluations of CAMs and labels last
    ]
    assert times[2].label == "CAMs: Puzzle-CAM"
    summary = format_summary({}, manifest).splitlines()
    assert summary[-len(times) - 1 : -1] == [f"{t.group:<32}{t.seconds:>10.1f}" for t in times]
