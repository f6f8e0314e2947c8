"""puzzlecam ablate: each variant switches exactly its loss terms, the summary's figures are
the hand-computed ones, and a tiny ablation runs, writes its table, resumes, and keeps every
finished sub-run of its settings in the summary (and none made with other settings)."""

import dataclasses
import json

import pytest

from puzzlecam.cli import main
from puzzlecam.dataclass_yaml import dump_yaml, to_dict
from puzzlecam.errors import ConfigError
from puzzlecam.pipeline.ablate import (
    _earlier_runs,
    format_ablation,
    run_ablation,
    sub_run_dir,
    summarize,
    variant_config,
)
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


def test_refined_variants_run_on_to_the_pseudo_labels_and_differ_in_nothing_else():
    base = load_run_config("demo")
    plain, refined = variant_config(base, "all", 3), variant_config(base, "all", 3, refine=True)
    assert plain.until == "cams" and refined.until == "pseudo-labels"
    assert dataclasses.replace(refined, until="cams") == plain


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


def test_refined_summary_by_hand():
    def seed(cam, rw, pseudo):
        return {"train": {"miou": cam, "map": 90.0, "rw": rw, "pseudo_labels": pseudo}}

    runs = {
        "cls": {0: seed(40.0, 50.0, 55.0), 1: seed(42.0, 52.0, 59.0)},
        "all": {0: seed(41.0, 53.0, 56.0), 1: seed(44.0, 51.0, 60.0)},
    }
    summary = summarize(runs)
    assert summary["all"]["train_rw"] == {"mean": 52.0, "std": pytest.approx(1.41, abs=0.01)}
    assert summary["all"]["train_rw_gain"]["per_seed"] == {0: 3.0, 1: -1.0}
    assert summary["all"]["train_rw_gain"]["mean"] == 1.0
    assert summary["all"]["train_pseudo_labels_gain"]["per_seed"] == {0: 1.0, 1: 1.0}
    assert summary["all"]["train_gain"]["per_seed"] == {0: 1.0, 1: 2.0}  # the CAMs' as before
    assert "train_rw_gain" not in summary["cls"]
    lines = format_ablation(summary).splitlines()
    start = lines.index("Table 2: each variant's CAMs refined (mIoU)")
    assert "random walk" in lines[start + 1] and "pseudo labels" in lines[start + 1]
    cls_row, all_row = lines[start + 2], lines[start + 3]
    assert cls_row.split() == ["L_cls", "train", "51.0", "±", "1.4", "50.0", "52.0", "57.0",
                               "±", "2.8", "55.0", "59.0"]  # fmt: skip
    assert all_row.split()[5:] == ["train", "52.0", "±", "1.4", "53.0", "51.0", "+1.0",
                                   "58.0", "±", "2.8", "56.0", "60.0", "+1.0"]  # fmt: skip


def test_unrefined_summary_has_no_table_2():
    runs = {"cls": {0: {"train": {"miou": 30.0, "map": 60.0}}}}
    assert "Table 2" not in format_ablation(summarize(runs))


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


def _tiny_ablate_args(tmp_path, *overrides: str) -> list[str]:
    args = ["ablate", "--config", "demo", "--run-dir", str(tmp_path / "abl"), "--no-progress"]
    for override in [*TINY_OVERRIDES, f"data.root={tmp_path / 'data'}", *overrides]:
        args += ["--set", override]
    return args


@pytest.mark.slow
def test_tiny_ablation_runs_writes_its_table_resumes_and_keeps_finished_seeds(tmp_path, capsys):
    common = _tiny_ablate_args(tmp_path)
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
    # fewer seeds later: nothing trains, and the summary still holds seed 1 of both variants
    assert main([*common, "--variants", "cls", "all", "--seeds", "0"]) == 0
    assert "[run]" not in capsys.readouterr().out
    assert json.loads((tmp_path / "abl" / "ablation.json").read_text()) == summary
    # more seeds later: only the new sub-runs train, and the summary covers all of them
    assert main([*common, "--variants", "cls", "--seeds", "0", "2"]) == 0
    log = capsys.readouterr().out
    assert "seed 2" in log and log.count("[run] train_cls") == 1
    assert "left out" not in log
    after = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert {v: set(entry["seeds"]) for v, entry in after.items()} == {
        "cls": {"0", "1", "2"},
        "all": {"0", "1"},
    }
    assert after["all"] == summary["all"]  # the variant not asked for keeps its figures
    assert after["cls"]["seeds"]["1"] == summary["cls"]["seeds"]["1"]
    # the printed table is the one written
    assert (tmp_path / "abl" / "ablation.txt").read_text().strip() in log


@pytest.mark.slow
def test_tiny_ablation_leaves_out_a_sub_run_made_with_other_settings(tmp_path, capsys):
    # seed 1 trained for 2 epochs, then seed 0 with the settings of the ablation (1 epoch)
    other = _tiny_ablate_args(tmp_path, "train_cls.loop.epochs=2")
    assert main([*other, "--variants", "cls", "--seeds", "1"]) == 0
    capsys.readouterr()
    summary = run_ablation(
        load_run_config("demo", (*TINY_OVERRIDES, f"data.root={tmp_path / 'data'}")),
        tmp_path / "abl",
        variants=["cls"],
        seeds=[0],
        progress=False,
    )
    log = capsys.readouterr().out
    written = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    assert set(written) == {"cls"} and set(written["cls"]["seeds"]) == {"0"}
    assert json.loads(json.dumps(summary)) == written  # returned as written
    left_out = [line for line in log.splitlines() if "left out" in line]
    assert len(left_out) == 1
    assert "seed1" in left_out[0] and "train_cls.loop.epochs: 2 -> 1" in left_out[0]
    # the seed-1 sub-run is untouched: still a run of its own settings
    sub = load_run_config(tmp_path / "abl" / "cls" / "seed1" / "config.yaml")
    assert sub.train_cls.loop.epochs == 2


def test_only_finished_sub_runs_of_the_same_settings_join_the_summary(tmp_path):
    """No training: sub-run folders written by hand, as an earlier invocation leaves them."""
    config = load_run_config("demo")
    scores = {"train": {"miou": 40.0, "map": 70.0}, "val": {"miou": 35.0, "map": 60.0}}

    def sub_run(variant, seed, sub_config, metrics):
        folder = sub_run_dir(tmp_path, variant, seed)
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text(dump_yaml(sub_config))
        (folder / "metrics.json").write_text(json.dumps(metrics))

    sub_run("cls", 1, variant_config(config, "cls", 1), {"puzzle_cam": scores})
    # killed before scoring val: not finished
    sub_run("cls", 2, variant_config(config, "cls", 2), {"puzzle_cam": {"train": scores["train"]}})
    # a refined run in a plain ablation's folder: the same classifier (until is a stopping
    # point, not a setting), its CAM figures count
    sub_run("pcls", 1, variant_config(config, "pcls", 1, refine=True), {"puzzle_cam": scores})
    # another schedule: other settings
    other = load_run_config("demo", ("train_cls.puzzle.alpha_max=0.5",))
    sub_run("all", 1, variant_config(other, "all", 1), {"puzzle_cam": scores})
    # the seed this invocation ran itself is not read again
    sub_run("cls", 0, variant_config(config, "cls", 0), {})
    log: list[str] = []
    found = _earlier_runs(config, tmp_path, False, {"cls": {0: {}}}, log.append)
    assert found == {"cls": {1: scores}, "pcls": {1: scores}}
    assert len(log) == 2
    assert "seed2" in log[0] and "not finished" in log[0]
    assert "all/seed1" in log[1] and "other settings" in log[1] and "alpha_max: 0.5" in log[1]


def test_sub_run_configs_differ_only_in_their_variant():
    base = load_run_config("demo")
    cls, everything = variant_config(base, "cls", 0), variant_config(base, "all", 0)
    assert (
        dataclasses.replace(
            everything.train_cls.puzzle, puzzle_classification=False, reconstruction=False
        )
        == cls.train_cls.puzzle
    )


@pytest.mark.slow
def test_tiny_refined_ablation_adds_table_2_from_each_sub_runs_own_refinement(tmp_path, capsys):
    args = [*_tiny_ablate_args(tmp_path), "--variants", "cls", "all", "--seeds", "0", "--rw"]
    assert main(args) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "abl" / "ablation.json").read_text())
    for variant in ("cls", "all"):
        run = tmp_path / "abl" / variant / "seed0"
        metrics = json.loads((run / "metrics.json").read_text())
        for role in ("train", "val"):
            figures = summary[variant]["seeds"]["0"][role]
            # each figure is its own sub-run's score, the Puzzle-CAM branch's keys
            assert figures["rw"] == metrics["rw"][role]["miou"]
            assert figures["pseudo_labels"] == metrics["pseudo_labels"][role]["miou"]
            assert 0.0 < figures["pseudo_labels"] <= 100.0
        assert load_run_config(run / "config.yaml").until == "pseudo-labels"
    gain = summary["all"]["val_pseudo_labels_gain"]["per_seed"]["0"]
    expected = (
        summary["all"]["seeds"]["0"]["val"]["pseudo_labels"]
        - summary["cls"]["seeds"]["0"]["val"]["pseudo_labels"]
    )
    assert gain == pytest.approx(expected, abs=0.01)
    assert "Table 2" in out and "[run] train_seg" not in out
    assert main(args) == 0  # a rerun skips every finished sub-run
    assert "[run]" not in capsys.readouterr().out
