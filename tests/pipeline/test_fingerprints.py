"""Which stages a changed setting sends back to work: the stage whose settings hold it and
every stage after it in the plan that reads its output, and no other.

The plan is the demo preset's with both CAM branches (the demo trains the plain-CAM
baseline) and both segmentation variants, 35 stages; the expected sets are written out
from it by hand, a branch's stages once as templates for both branches."""

from __future__ import annotations

import pytest

from puzzlecam.pipeline.config import load_run_config
from puzzlecam.pipeline.runner import plan_stages, stage_fingerprints

BASE = ("train_seg.fully_supervised=true",)


def _both(*templates: str) -> set[str]:
    """Each ``{m}`` template for the Puzzle-CAM and the plain-CAM branch."""
    return {t.format(m=m) for t in templates for m in ("puzzle_cam", "plain_cam")}


CAMS = ("cams/{m}/train", "eval/cams/{m}/train", "cams/{m}/val", "eval/cams/{m}/val")
PSEUDO = (
    "pseudo_labels/{m}/train",
    "eval/pseudo_labels/{m}/train",
    "pseudo_labels/{m}/val",
    "eval/pseudo_labels/{m}/val",
)
RW = ("rw/{m}/train", "eval/rw/{m}/train", "rw/{m}/val", "eval/rw/{m}/val", *PSEUDO)
WEAK = {"train_seg/weak", "eval/predict/weak"}  # DeepLabV3+ on the Puzzle-CAM pseudo labels
FULL = {"train_seg/full", "eval/predict/full"}  # DeepLabV3+ on ground truth: data only
ALL = (
    {"data"}
    | _both("train_cls/{m}", *CAMS, "affinity_labels/{m}", "train_aff/{m}", *RW)
    | WEAK
    | FULL
)
EVALS = _both(
    "eval/cams/{m}/train",
    "eval/cams/{m}/val",
    "eval/rw/{m}/train",
    "eval/rw/{m}/val",
    "eval/pseudo_labels/{m}/train",
    "eval/pseudo_labels/{m}/val",
) | {"eval/predict/weak", "eval/predict/full"}


def _prints(*overrides: str) -> dict[str, str]:
    return stage_fingerprints(plan_stages(load_run_config("demo", (*BASE, *overrides))))


def _changed(*overrides: str) -> set[str]:
    """The stages of both plans whose fingerprint the overrides change."""
    before, after = _prints(), _prints(*overrides)
    return {name for name in before.keys() & after.keys() if after[name] != before[name]}


def test_the_plan_the_expectations_are_written_from() -> None:
    assert set(_prints()) == ALL and len(ALL) == 35 and len(EVALS) == 14


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        # the data: every stage reads it, the ground-truth model included
        ("data.root=elsewhere", ALL),
        # the classifiers share train_cls: both branches from their classifier on, and
        # the weak model; the fully supervised model never sees a CAM
        ("train_cls.loop.epochs=2", ALL - {"data"} - FULL),
        # CAMs of both branches and splits, everything after them; the classifiers stay
        ("cams.scales=[1.0]", ALL - {"data"} - _both("train_cls/{m}") - FULL),
        # affinity labels are made from the train CAMs: the CAMs of both splits stay,
        # the random walk of both splits follows the retrained AffinityNet
        ("affinity_labels.fg_threshold=0.45", _both("affinity_labels/{m}", "train_aff/{m}", *RW) | WEAK),
        ("train_aff.radius=8", _both("train_aff/{m}", *RW) | WEAK),
        ("rw.beta=8.0", _both(*RW) | WEAK),
        ("pseudo_labels.threshold=0.3", _both(*PSEUDO) | WEAK),
        # the evaluation settings: every evaluation, no training or inference
        ("eval.thresholds=[0.2, 0.4]", EVALS),
        # the last stages: only theirs
        ("train_seg.loop.epochs=2", WEAK | FULL),
        ("predict.scales=[1.0]", {"eval/predict/weak", "eval/predict/full"}),
        # not part of any stage's identity
        ("device=cpu", set()),
        ("name=elsewhere", set()),
        ("report.num_samples=2", set()),
    ],
)  # fmt: skip
def test_a_changed_setting_invalidates_its_stage_and_the_stages_after_it(setting, expected):
    assert set(_prints(setting)) == ALL
    assert _changed(setting) == expected


def test_a_plan_cut_early_keeps_the_fingerprints_of_the_stages_it_keeps() -> None:
    full = _prints()
    for until in ("cams", "pseudo-labels"):
        cut = _prints(f"until={until}")
        assert cut.items() <= full.items()
    assert set(_prints("until=cams")) == {"data"} | _both("train_cls/{m}", *CAMS)


# Settings that only add or shape another branch reach no stage that does not use them
# (``pipeline.branches``: such a stage would run again for the same result).
def test_adding_the_plain_cam_baseline_leaves_the_puzzle_cam_branch_as_it_was() -> None:
    assert _changed("train_cls.baseline_plain_cam=false") == set()


def test_adding_the_fully_supervised_model_leaves_the_weak_model_as_it_was() -> None:
    assert _changed("train_seg.fully_supervised=false") == set()


def test_a_puzzle_setting_leaves_the_plain_cam_branch_as_it_was() -> None:
    puzzle_branch = {
        name
        for name in _both("train_cls/{m}", *CAMS, "affinity_labels/{m}", "train_aff/{m}", *RW)
        if "plain_cam" not in name
    }
    assert _changed("train_cls.puzzle.alpha_max=2.0") == puzzle_branch | WEAK
