"""The data stage: the demo benchmark built when configured, both splits read."""

from __future__ import annotations

from collections.abc import Iterator

from puzzlecam.data.demo import build_demo_dataset
from puzzlecam.pipeline.config import RunConfig
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.kinds import ROLES, Stage, StageKind
from puzzlecam.training.distributed import barrier

__all__ = ["KINDS", "stage_data"]


def stage_data(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """Build the demo benchmark when asked for, then read and report both splits.

    The data check and the data signature follow on every run, this stage done or not
    (``pipeline.data_check.prepare_data``, called by the runner).
    """
    data = stage.config
    if data.format == "demo" and ctx.dist.is_main:
        summary = build_demo_dataset(data.root, data.demo, progress=ctx.progress)
        verb = "found" if summary.reused else "built"
        ctx.log(f"demo data {verb} in {data.root} ({summary.source})")
    barrier(ctx.dist)
    for role in ROLES:
        split = ctx.split(role)
        masks = sum(1 for s in split.samples if s.mask_path)
        ctx.log(
            f"{role} split '{ctx.split_name(role)}': {len(split)} images, {masks} with masks, "
            f"{split.num_classes} classes"
        )


def _plan(config: RunConfig) -> Iterator[tuple[str, Stage]]:
    yield "", Stage("data", "data", config.data, group="data", label="Data")


KINDS = (
    StageKind(
        "data",
        command="data",
        help="read the data set (and build the demo benchmark when configured)",
        plan=_plan,
        run=stage_data,
    ),
)
