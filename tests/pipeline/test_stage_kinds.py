"""A stage kind is one definition (issue part 10): a toy kind added the way
docs/ARCHITECTURE.md "Adding a stage" says runs in a tiny pipeline, is scored, has its
CLI command, and shows in the printed summary and the report."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from puzzlecam.cams.scores import load_scores
from puzzlecam.cli import build_parser, main
from puzzlecam.data.ids import id_path
from puzzlecam.io import load_label_png, read_json, save_label_png
from puzzlecam.pipeline.config import RunConfig, load_run_config
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.kinds import (
    ROLES,
    Metric,
    Picture,
    Stage,
    StageKind,
    kind_of,
    registered,
    stage_kinds,
)
from puzzlecam.pipeline.plan import make_plan
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.pipeline.stages.common import claim_todo, evaluate_scores, evaluation, score
from tests.helpers import TINY_OVERRIDES

# --- the toy kind: each image's most confident class wherever its CAM passes a threshold ---


def stage_argmax(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    out_dir, cams_dir = stage.folder(ctx.run), ctx.run.cams_dir("puzzle_cam", stage.role)
    for sample in claim_todo(ctx, fingerprint, out_dir, ctx.split(stage.role).samples, ".png"):
        maps = load_scores(id_path(cams_dir, sample.image_id, ".npz"))
        best = maps.scores.argmax(axis=0)
        labels = np.where(maps.scores.max(axis=0) > stage.config["threshold"], best + 1, 0)
        save_label_png(id_path(out_dir, sample.image_id, ".png"), labels.astype(np.uint8))
    (argmax,) = stage.scores
    evaluate_scores(ctx, out_dir, argmax, (0.5,))


def _plan_argmax(config: RunConfig) -> Iterator[tuple[str, Stage]]:
    for role in ROLES:
        stage = Stage(
            f"argmax/{role}", "argmax", {"threshold": 0.3}, inputs=(f"cams/puzzle_cam/{role}",),
            reads=(role,), role=role, group="argmax", label="Arg-max labels",
            scores=(score("argmax", role),),
        )  # fmt: skip
        yield "", stage


ARGMAX = StageKind(
    "argmax",
    command="argmax",
    help="label each pixel with its most confident class (a toy)",
    plan=_plan_argmax,
    run=stage_argmax,
    outputs=lambda run, stage: (run.root / "argmax" / stage.role,),
    metrics=(Metric("argmax", "Arg-max of the CAMs", "#000000", "Classifier CAMs"),),
    picture=Picture(lambda stage: "Arg-max label", "labels"),
)


@pytest.fixture
def argmax_kind():
    with registered(ARGMAX) as kind:
        yield kind


def test_the_registry_holds_each_kind_once_and_gives_it_back(argmax_kind):
    with pytest.raises(ValueError, match="registered already"):
        with registered(ARGMAX):
            pass
    plan = make_plan(RunConfig())
    assert [s.name for s in plan.every if s.kind == "argmax"] == ["argmax/train", "argmax/val"]
    assert all(kind_of(stage).name == stage.kind for stage in plan.every)
    assert "argmax" in build_parser().format_help()
    # a kind whose stage needs one that comes after it is refused when the plan is made
    late = StageKind("late", "late", "", lambda c: [("", Stage("late", "late", {}, ("nope",)))],
                     run=stage_argmax)  # fmt: skip
    with registered(late), pytest.raises(ValueError, match="late.*nope"):
        make_plan(RunConfig())


def test_no_kind_stays_registered_after_its_block():
    assert "argmax" not in {kind.name for kind in stage_kinds()}
    assert "argmax" not in {s.kind for s in make_plan(load_run_config("demo")).every}


def test_a_toy_kind_runs_in_a_tiny_pipeline_with_its_report(argmax_kind, tmp_path, capsys):
    run, data = tmp_path / "run", tmp_path / "data"
    args = ["run", "--config", "demo", "--run-dir", str(run), "--no-progress"]
    for override in [*TINY_OVERRIDES, f"data.root={data}", "until=cams"]:
        args += ["--set", override]
    assert main(args) == 0
    out = capsys.readouterr().out
    manifest = RunDir(run).manifest()
    assert {"argmax/train", "argmax/val"} <= set(manifest)
    # its labels: a class where the CAM passes 0.3, computed again here from the CAMs
    first = sorted((run / "argmax" / "val").glob("*.png"))[0]
    maps = load_scores(run / "cams" / "puzzle_cam" / "val" / f"{first.stem}.npz")
    expected = np.where(maps.scores.max(0) > 0.3, maps.scores.argmax(0) + 1, 0)
    np.testing.assert_array_equal(load_label_png(first), expected)
    metrics = read_json(run / "metrics.json")
    assert 0 <= metrics["argmax"]["val"]["miou"] <= 100
    # the summary: its score and its time line
    assert "argmax" in out and any(line.startswith("argmax ") for line in out.splitlines())
    # the report: its metric row (with its label), its sample column
    page = (run / "report" / "index.html").read_text(encoding="utf-8")
    assert "Arg-max of the CAMs" in page and "Arg-max label" in page
    assert list((run / "report" / "samples").glob("val_*_argmax_val.png"))
    # its own command: nothing left to do, every stage skipped
    capsys.readouterr()
    assert main(["argmax", *args[1:]]) == 0
    assert "[skip] argmax/val: done" in capsys.readouterr().out


def test_evaluation_records_evaluate_the_stage_they_name():
    cams = next(s for s in make_plan(RunConfig()).every if s.name == "cams/plain_cam/val")
    stage = evaluation("eval-cams", cams, None, (score("plain_cam", "val"),))
    assert (stage.name, stage.inputs, stage.method, stage.role, stage.reads) == (
        "eval/cams/plain_cam/val", ("cams/plain_cam/val",), "plain_cam", "val", ("val",)
    )  # fmt: skip
