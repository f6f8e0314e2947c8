"""One fingerprint policy (issue part 10): execution settings never bind a run nor re-run
a stage; runs made under the policy before are kept; the shipped presets' fingerprints
are pinned, so that a change to what they make is seen in review."""

from __future__ import annotations

from pathlib import Path

import pytest

from puzzlecam.cli import main
from puzzlecam.dataclass_yaml import config_hash
from puzzlecam.pipeline import runner
from puzzlecam.pipeline.config import load_run_config
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.pipeline.runner import plan_stages, stage_fingerprints
from tests.helpers import TINY_OVERRIDES

EXECUTION_SETTINGS = (
    "train_cls.loop.num_workers=1",
    "train_cls.loop.log_every_steps=3",
    "train_cls.loop.tensorboard=true",
    "train_cls.loop.channels_last=off",
    "train_cls.loop.checkpoint_every_steps=7",
    "cams.num_workers=1",
    "cams.batch_size=3",
    "cams.overlays=2",
    "predict.batch_size=1",
    "report.num_samples=2",
)

# config_hash of each shipped preset (policy 2) and of the demo's stages without data: a
# change here changes what finished runs are recognised by; make it on purpose
PINNED = {
    "demo": "066e92162f2ade4a",
    "voc_resnet50": "be25d58e4d410852",
    "voc_resnest101": "71831eec57beb4c7",
    "voc_resnest269": "89ec48cce8e30c31",
    "coco_resnet50": "e3142ea0afa9f781",
}
PINNED_DEMO_STAGES = {
    "data": "ef08f482c2194014",
    "train_cls/puzzle_cam": "05c63453ed7d96d1",
    "train_cls/plain_cam": "32b5db0f633dda12",
    "cams/puzzle_cam/train": "6ae29102aae38c15",
    "train_aff/puzzle_cam": "050f05f47a0c745d",
    "train_seg/weak": "4e7ba1f0b19cc9b2",
}


@pytest.mark.parametrize("preset", sorted(PINNED))
def test_preset_fingerprints_are_pinned(preset):
    assert config_hash(load_run_config(preset)) == PINNED[preset]


def test_demo_stage_fingerprints_are_pinned():
    prints = stage_fingerprints(plan_stages(load_run_config("demo")))
    assert {name: prints[name] for name in PINNED_DEMO_STAGES} == PINNED_DEMO_STAGES


def test_execution_settings_are_out_of_the_fingerprint_and_were_in_before():
    base = load_run_config("demo")
    changed = load_run_config("demo", EXECUTION_SETTINGS)
    assert config_hash(changed) == config_hash(base)
    assert stage_fingerprints(plan_stages(changed)) == stage_fingerprints(plan_stages(base))
    assert config_hash(changed, policy=1) != config_hash(base, policy=1)  # the older rule
    outputs = load_run_config("demo", ("cams.scales=[1.0]",))  # changes what is made
    assert config_hash(outputs) != config_hash(base)


def _args(run: Path, data: Path, *extra: str) -> list[str]:
    args = ["run", "--config", "demo", "--run-dir", str(run), "--no-progress"]
    for override in [*TINY_OVERRIDES, f"data.root={data}", "until=cams", *extra]:
        args += ["--set", override]
    return args


def test_a_finished_run_rerun_with_other_execution_settings_skips_every_stage(tmp_path, capsys):
    run, data = tmp_path / "run", tmp_path / "data"
    assert main(_args(run, data)) == 0
    finished = RunDir(run).manifest()
    capsys.readouterr()
    assert main(_args(run, data, *EXECUTION_SETTINGS)) == 0
    out = capsys.readouterr().out
    assert RunDir(run).manifest() == finished
    assert "[run] " not in out and out.count("[skip]") == len(finished)
    # a setting that changes outputs still makes it another run: refused, as before
    assert main(_args(run, data, "cams.flip=false")) == 2
    assert "changed settings" in capsys.readouterr().err


def test_a_run_made_under_the_older_policy_is_kept(tmp_path, capsys, monkeypatch):
    run, data = tmp_path / "run", tmp_path / "data"
    # the run as the puzzlecam before policy 2 made it: every fingerprint the older rule's
    older = runner.stage_fingerprints
    with monkeypatch.context() as patch:
        patch.setattr(runner, "stage_fingerprints", lambda *a, **k: older(*a[:2], policy=1))
        patch.setattr(runner, "_keep_older_runs", lambda *a: None)
        assert main(_args(run, data)) == 0
    made = RunDir(run).manifest()
    marker = (run / "cams" / "puzzle_cam" / "train" / ".fingerprint").read_text()
    assert marker == made["cams/puzzle_cam/train"]["fingerprint"]
    capsys.readouterr()

    assert main(_args(run, data)) == 0  # today's puzzlecam: nothing trained again
    out = capsys.readouterr().out
    kept = RunDir(run).manifest()
    assert "[run] " not in out and "fingerprint policy 1" in out
    assert {n: e["finished"] for n, e in kept.items()} == {
        n: e["finished"] for n, e in made.items()
    }
    assert kept["cams/puzzle_cam/train"]["fingerprint"] != marker
    new_marker = (run / "cams" / "puzzle_cam" / "train" / ".fingerprint").read_text()
    assert new_marker == kept["cams/puzzle_cam/train"]["fingerprint"]
    capsys.readouterr()
    assert main(_args(run, data, "cams.num_workers=1")) == 0  # and now free of them
    assert "[run] " not in capsys.readouterr().out


def test_grad_accum_binds_a_run_only_where_batchnorm_sees_the_micro_batches():
    base = load_run_config("demo")  # the classifier's and DeepLabV3+'s BatchNorm: frozen
    split = load_run_config("demo", ("train_cls.loop.grad_accum=2", "train_seg.loop.grad_accum=4"))
    assert stage_fingerprints(plan_stages(split)) == stage_fingerprints(plan_stages(base))
    assert config_hash(split) == config_hash(base)
    assert config_hash(split, policy=2) != config_hash(base, policy=2)  # the older rule
    # BatchNorm statistics from each micro-batch: another computation, another run
    for trains in ("train_cls.backbone.norm=train", "train_seg.head_norm=batch"):
        section = trains.split(".")[0]
        one = load_run_config("demo", (trains,))
        two = load_run_config("demo", (trains, f"{section}.loop.grad_accum=2"))
        assert config_hash(one) != config_hash(two), trains


def test_a_default_made_by_a_factory_counts_as_the_default():
    from dataclasses import dataclass, field

    from puzzlecam.dataclass_yaml import FINGERPRINTED_UNLESS_DEFAULT

    @dataclass(frozen=True)
    class Section:
        sizes: tuple = field(default_factory=lambda: (1, 2), metadata=FINGERPRINTED_UNLESS_DEFAULT)

    assert config_hash(Section()) == config_hash({})
    assert config_hash(Section(sizes=(3,))) != config_hash({})


def test_a_finished_run_resumes_with_its_batch_split_into_micro_batches(tmp_path, capsys):
    run, data = tmp_path / "run", tmp_path / "data"
    assert main(_args(run, data)) == 0
    finished = RunDir(run).manifest()
    capsys.readouterr()
    assert main(_args(run, data, "train_cls.loop.grad_accum=2")) == 0
    out = capsys.readouterr().out
    assert "[run] " not in out and RunDir(run).manifest() == finished
