"""puzzlecam ablate: each variant switches exactly its loss terms, the summary's figures are
the hand-computed ones, and a tiny ablation runs, writes its table and resumes."""

import dataclasses
import json

import pytest

from puzzlecam.cli import main
from puzzlecam.dataclass_yaml import to_dict
from puzzlecam.errors import ConfigError
from puzzlecam.pipeline.ablate import format_ablation, summarize, variant_config
from puzzlecam.pipeline.config import load_run_config
from tests.helpers import TINY_OVERRIDES


def _flatten(tree, prefix=""):
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else key))
        return out
    return {prefix: tree}


@pytest.mark.parametrize(
    ("variant", "pcls", "re"),
    [("cls", False, False), ("pcls", True, False), ("re", False, True), ("all", True, True)],
)
def test_each_variant_switches_exactly_its_terms(variant, pcls, re):
    base = load_run_config("demo")
    config = variant_config(base, variant, seed=7)
    assert config.train_cls.puzzle.puzzle_classification is pcls
    assert config.train_cls.puzzle.reconstruction is re
    before, after = _flatten(to_dict(base)), _flatten(to_dict(config))
    changed = {key for key in before if before[key] != after[key]}
    allowed = {
        "name",
        "until",
        "train_cls.baseline_plain_cam",
        "train_cls.loop.seed",
        "train_cls.puzzle.puzzle_classification",
        "train_cls.puzzle.reconstruction",
    }
    assert changed <= allowed
    assert {"name", "until", "train_cls.loop.seed"} <= changed
    assert after["train_cls.loop.seed"] == 7 and after["until"] == "cams"
    # the schedule of the terms stays as configured, even for the variant without them
    assert config.train_cls.puzzle.alpha_max == base.train_cls.puzzle.alpha_max


def test_unknown_variant_is_refused():
    with pytest.raises(ConfigError, match="pcls"):
        variant_config(load_run_config("demo"), "puzzle", seed=0)


def test_summary_by_hand():
    runs = {
        "cls": {
            0: {"train": {"miou": 30.0, "map": 60.0}, "val": {"miou": 28.0, "map": 50.0}},
            1: {"train": {"miou": 32.0, "map": 62.0}, "val": {"miou": 30.0, "map": 52.0}},
        },
        "all": {
            0: {"train": {"miou": 35.0, "map": 61.0}, "val": {"miou": 31.0, "map": 51.0}},
            1: {"train": {"miou": 33.0, "map": 63.0}, "val": {"miou": 35.0, "map": 53.0}},
        },
    }
    summary = summarize(runs)
    assert summary["cls"]["train_miou"] == {"mean": 31.0, "std": pytest.approx(1.41, abs=0.01)}
    assert "train_gain" not in summary["cls"]
    assert summary["all"]["train_gain"]["per_seed"] == {0: 5.0, 1: 1.0}
    assert summary["all"]["train_gain"]["mean"] == 3.0
    assert summary["all"]["val_gain"]["per_seed"] == {0: 3.0, 1: 5.0}
    assert summary["all"]["val_map"]["mean"] == 52.0
    table = format_ablation(summary)
    row = next(
        line
        for line in table.splitlines()
        if line.startswith("L_cls + L_p-cls + L_re") and " val " in line
    )
    assert "33.0 ± 2.8" in row and "31.0 35.0" in row and "+4.0" in row and "+3.0" in row


def test_one_seed_has_no_spread():
    runs = {
        "cls": {0: {"train": {"miou": 30.0, "map": 60.0}}},
        "all": {0: {"train": {"miou": 27.5, "map": 58.0}}},
    }
    summary = summarize(runs)
    assert summary["all"]["train_miou"] == {"mean": 27.5, "std": None}
    assert summary["all"]["train_gain"] == {"per_seed": {0: -2.5}, "mean": -2.5, "std": None}
    table = format_ablation(summary)
    assert "±" not in table
    row = next(line for line in table.splitlines() if line.startswith("L_cls + L_p-cls"))
    assert row.split() == [
        "L_cls",
        "+",
        "L_p-cls",
        "+",
        "L_re",
        "train",
        "27.5",
        "27.5",
        "-2.5",
        "-2.5",
        "58.0",
    ]


@pytest.mark.slow
def test_tiny_ablation_runs_writes_its_table_and_resumes(tmp_path, capsys):
    common = ["ablate", "--config", "demo", "--run-dir", str(tmp_path / "abl"), "--no-progress"]
    for override in [*TINY_OVERRIDES, f"data.root={tmp_path / 'data'}"]:
        common += ["--set", override]
    args = [*common, "--variants", "cls", "all", "--seeds", "0", "1"]
    assert main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert set(summary) == {"cls", "all"}
    for variant in ("cls", "all"):
        assert set(summary[variant]["seeds"]) == {"0", "1"}
        for seed in summary[variant]["seeds"].values():
            for role in ("train", "val"):
                assert 0.0 < seed[role]["miou"] <= 100.0 and 0.0 <= seed[role]["map"] <= 100.0
    gains = summary["all"]["val_gain"]["per_seed"]
    for seed in ("0", "1"):
        expected = (
            summary["all"]["seeds"][seed]["val"]["miou"]
            - summary["cls"]["seeds"][seed]["val"]["miou"]
        )
        assert gains[seed] == pytest.approx(expected, abs=0.01)
    # the two seeds trained different classifiers, the two variants different ones too
    cls0, cls1 = (summary["cls"]["seeds"][s]["train"]["miou"] for s in ("0", "1"))
    all0 = summary["all"]["seeds"]["0"]["train"]["miou"]
    assert cls0 != cls1 or cls0 != all0
    assert (tmp_path / "abl" / "ablation.png").stat().st_size > 1000
    assert "L_cls + L_p-cls + L_re" in out and "per seed" in out
    sub = load_run_config(tmp_path / "abl" / "all" / "seed1" / "config.yaml")
    assert sub.train_cls.loop.seed == 1 and sub.train_cls.puzzle.reconstruction

    # a rerun skips every finished sub-run and prints the same table
    assert main(args) == 0
    again = capsys.readouterr().out
    assert "[run]" not in again
    assert json.loads((tmp_path / "abl" / "ablation.json").read_text()) == summary
    # more seeds later: only the new sub-runs train
    assert main([*common, "--variants", "cls", "--seeds", "0", "2"]) == 0
    log = capsys.readouterr().out
    assert "seed 2" in log and log.count("[run] train_cls") == 1


def test_sub_run_configs_differ_only_in_their_variant():
    base = load_run_config("demo")
    cls, everything = variant_config(base, "cls", 0), variant_config(base, "all", 0)
    assert (
        dataclasses.replace(
            everything.train_cls.puzzle, puzzle_classification=False, reconstruction=False
        )
        == cls.train_cls.puzzle
    )
