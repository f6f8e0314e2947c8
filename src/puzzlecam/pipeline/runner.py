"""The pipeline as a list of stages (``pipeline.plan``): each skipped when done for the
same inputs, resumed when interrupted (stages write atomically and skip finished files),
timed."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from itertools import combinations
from typing import Any

import torch

from puzzlecam.dataclass_yaml import FINGERPRINT_POLICY, config_hash
from puzzlecam.errors import ConfigError, RunDirError, StageError, short_list
from puzzlecam.pipeline.branches import (
    BRANCH_SCORES,
    METHOD_NAMES,
    TABLE2_COLUMNS,
    branch_table,
    table2_columns,
)
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.data_check import DataState, prepare_data
from puzzlecam.pipeline.folders import reclaim_output_dir
from puzzlecam.pipeline.kinds import kind_of
from puzzlecam.pipeline.plan import Stage, every_stage, make_plan, plan_stages, stage_times
from puzzlecam.training.distributed import barrier

__all__ = [
    "Stage",
    "plan_stages",
    "stage_fingerprints",
    "check_batches",
    "check_models",
    "run_pipeline",
    "format_summary",
]


def stage_fingerprints(
    plan: Iterable[Stage],
    data: Mapping[str, str] | None = None,
    policy: int = FINGERPRINT_POLICY,
) -> dict[str, str]:
    """Fingerprint of each stage: its name, settings, its inputs' fingerprints and the
    signatures in ``data`` (role -> signature, ``DataState.terms``) of the splits it reads;
    its settings as ``policy`` (``dataclass_yaml.FINGERPRINT_POLICY``) counts them."""
    prints: dict[str, str] = {}
    for stage in plan:
        parts = {
            "stage": stage.name,
            "config": stage.config,
            "inputs": [prints[i] for i in stage.inputs],
        }
        terms = {role: data[role] for role in stage.reads if data and role in data}
        if terms:  # unchanged data add nothing: fingerprints stay as they were
            parts["data"] = terms
        prints[stage.name] = config_hash(parts, policy)
    return prints


class _Reasons:
    """Why a stage that finished before runs again: which data change made it out of date.

    The fingerprint it finished with is recomputed with the changed splits taken as they
    were before their last change; the combination that matches names the change. None
    matches when, e.g., the data changed twice while the stage did not run: then a
    general reason.
    """

    def __init__(self, plan: list[Stage], data: DataState) -> None:
        self.plan, self.data = plan, data
        self._prints: dict[tuple[str, ...], dict[str, str]] = {}

    def __call__(self, stage: Stage, entry: Mapping[str, Any] | None) -> str:
        if not entry:
            return ""
        changed = self.data.changed
        for size in range(1, len(changed) + 1):
            for roles in combinations(changed, size):
                if roles not in self._prints:
                    self._prints[roles] = stage_fingerprints(
                        self.plan, self.data.terms(before=roles)
                    )
                if self._prints[roles][stage.name] == entry.get("fingerprint"):
                    notes = "; ".join(f"{r}: {self.data.splits[r].change}" for r in roles)
                    return f"data changed ({notes})"
        return "its settings or inputs changed since it finished"


def check_batches(ctx: RunContext, stages: Iterable[Stage]) -> None:
    """Every training stage in ``stages`` has at least one global batch of training images:
    checked before the first stage runs (not when the stage comes, hours later), naming
    the setting, and the tags when the images were left out for having none."""
    for stage in stages:
        section = kind_of(stage).trains
        if not section:
            continue
        batch = stage.config[section].loop.batch_size
        train = ctx.split("train")
        images = train.with_masks() if stage.variant == "full" else train
        if len(images.samples) >= batch:
            continue
        name = ctx.split_name("train")
        untagged = [i for i, reason in train.skipped if reason == "no tags"]
        if not train.samples and untagged:
            raise ConfigError(
                f"the train split '{name}' has no image with a tag: all {len(untagged)} listed "
                f"images have none ({short_list(untagged, 3)}); training needs images tagged "
                "with the classes they show"
            )
        what = "training images with masks" if stage.variant == "full" else "training images"
        raise ConfigError(
            f"{section}.loop.batch_size: {batch} is more than the {len(images.samples)} "
            f"{what} in the train split '{name}' ({stage.name} could not take one step); "
            "lower it, or add images"
        )


def check_models(stages: Iterable[Stage]) -> None:
    """Build the model of every training stage in ``stages`` on the meta device (no
    memory, no compute) before the first runs: an unknown backbone, a missing or
    mismatched weights file, a missing weights package, or ``pretrained: timm`` weights
    that cannot be downloaded fail now, not after the stages before them ran for hours.
    ``timm`` weights are downloaded into timm's cache here, as the stage would.
    """
    # keyed by (section, backbone): the two branches' identical classifiers count once
    models: dict[tuple[str, Any], tuple[Callable[[Any], Any], Any]] = {}
    for stage in stages:
        kind = kind_of(stage)
        if kind.trains and kind.build:
            settings = stage.config[kind.trains]
            models[(kind.trains, settings.backbone)] = (kind.build, settings)
    for (section, _), (build, settings) in models.items():
        try:
            with warnings.catch_warnings(), torch.device("meta"):
                # loading real weights into meta tensors is a no-op torch warns about
                warnings.simplefilter("ignore", UserWarning)
                build(settings)
        except ConfigError as error:
            raise ConfigError(f"{section}.backbone: {error}") from error


def run_pipeline(ctx: RunContext, commands: Iterable[str] | None = None) -> None:
    """Run the stages of ``commands`` (all when None) that are not done yet.

    The data stage comes first; then the data are checked and their signatures recorded
    (``pipeline.data_check``, every run) and enter the fingerprints of the later stages;
    then the models of the training stages to run are built once (``check_models``).
    """
    data_stage, *plan = plan_stages(ctx.config)
    if ctx.dist.is_main and ctx.run.root.is_dir():
        ctx.run.remove_stale_temp_files()
        # every stage this config may have: those after `until` stay done for a later one
        for name in ctx.run.forget_stages(s.name for s in make_plan(ctx.config).every):
            ctx.log(
                f"[forget] {name}: not a stage of this version (its files are left as they are)"
            )
    barrier(ctx.dist)
    # the data stage is cheap and every stage needs it: single commands run it too
    _run_stage(ctx, data_stage, stage_fingerprints([data_stage]), {})
    data = prepare_data(ctx)
    full_plan = [data_stage, *plan]
    prints = stage_fingerprints(full_plan, data.terms())
    if ctx.dist.is_main:
        _keep_older_runs(ctx, full_plan, prints, data.terms())
    barrier(ctx.dist)
    by_name = {stage.name: stage for stage in full_plan}
    why = _Reasons(full_plan, data)
    wanted = None if commands is None else set(commands)
    to_run = [
        stage
        for stage in plan
        if (wanted is None or stage.command in wanted)
        and not ctx.run.is_done(stage.name, prints[stage.name])
    ]
    if ctx.dist.is_main:
        check_batches(ctx, to_run)
        check_models(to_run)
    barrier(ctx.dist)
    for stage in plan:
        if wanted is None or stage.command in wanted:
            _run_stage(ctx, stage, prints, by_name, why)


def _keep_older_runs(
    ctx: RunContext, plan: list[Stage], prints: Mapping[str, str], data: Mapping[str, str]
) -> None:
    """Stages finished under an older fingerprint policy (before execution settings left
    the fingerprint) are this config's too: their manifest entries and output markers get
    today's fingerprints, so nothing is trained again. The one place such shims live."""
    outputs = {stage.name: stage.outputs(ctx.run) for stage in plan}
    for policy in range(1, FINGERPRINT_POLICY):
        older = stage_fingerprints(plan, data, policy)
        kept = ctx.run.update_fingerprints(older, prints, outputs)
        if kept:
            ctx.log(
                f"[keep] {len(kept)} finished stages made by an earlier puzzlecam (fingerprint "
                f"policy {policy}): kept, their fingerprints updated"
            )


def _run_stage(
    ctx: RunContext,
    stage: Stage,
    prints: Mapping[str, str],
    by_name: Mapping[str, Stage],
    why: Callable[[Stage, Mapping[str, Any] | None], str] | None = None,
) -> None:
    """Skip ``stage`` when done with its fingerprint, else run it (``why``: the reason a
    stage that finished before runs again, for the log)."""
    fingerprint = prints[stage.name]
    if ctx.run.is_done(stage.name, fingerprint):
        ctx.log(f"[skip] {stage.name}: done")
        return
    manifest = ctx.run.manifest()
    for name in stage.inputs:
        if not ctx.run.is_done(name, prints[name]):
            reason = why(by_name[name], manifest.get(name)) if why else ""
            raise RunDirError(
                f"stage {stage.name} needs {name}, which has not finished in {ctx.run.root}"
                f"{f' ({reason})' if reason else ''}; "
                f"run `puzzlecam {by_name[name].command}` (or `puzzlecam run`) first"
            )
    entry = manifest.get(stage.name)
    reason = why(stage, entry) if why else ""
    ctx.log(f"[run] {stage.name}{f': {reason}' if reason else ''}")
    try:
        _clear_and_run(ctx, stage, fingerprint, finished_before=entry is not None)
    except OSError as error:  # the system refused a write or a read: say which stage, which file
        where = f"{error.filename}: " if error.filename else ""
        why = error.strerror or str(error) or type(error).__name__
        raise StageError(
            f"stage {stage.name}: {where}{why}; free space on the disk (or check the "
            "path's permissions), then run the same command again: finished work is kept"
        ) from error


def _clear_and_run(ctx: RunContext, stage: Stage, fingerprint: str, finished_before: bool) -> None:
    """Clear ``stage``'s outputs of other inputs, run it and record it as done."""
    if ctx.dist.is_main:
        cleared = [
            directory
            for directory in stage.outputs(ctx.run)
            if reclaim_output_dir(directory, fingerprint, finished_before)
        ]
        if cleared:
            shown = ", ".join(str(d.relative_to(ctx.run.root)) for d in cleared)
            ctx.log(f"[clear] {stage.name}: outputs made from other inputs removed ({shown})")
    barrier(ctx.dist)
    started = time.perf_counter()
    kind_of(stage).run(ctx, stage, fingerprint)
    barrier(ctx.dist)
    if ctx.dist.is_main:
        ctx.run.mark_done(stage.name, fingerprint, time.perf_counter() - started)
    barrier(ctx.dist)  # every rank sees the manifest entry before the next stage


def _table2_lines(metrics: dict[str, Any]) -> list[str]:
    """The paper's Table 2 (CAM -> random walk -> pseudo labels, per branch, each train /
    val: ``branches.table2_columns``), when the run has more than one branch."""
    table = branch_table(metrics)
    if len(table) < 2:
        return []
    cells = table2_columns(table)
    titles = dict(TABLE2_COLUMNS)
    columns = list(dict.fromkeys(output for output, _ in cells))
    lines = [
        "",
        f"{'Table 2 (mIoU train / val)':<28}" + "".join(f"{titles[o]:>16}" for o in columns),
    ]
    for method, values in table.items():
        shown = [
            " / ".join(
                f"{values[(output, split)]:.1f}" if (output, split) in values else "-"
                for split in ("train", "val")
            )
            for output in columns
        ]
        lines.append(f"{METHOD_NAMES[method]:<28}" + "".join(f"{v:>16}" for v in shown))
    return lines


def format_summary(metrics: dict[str, Any], manifest: dict[str, Any]) -> str:
    """One table: mIoU per method and split; the paper's Table 2 when the run has the
    plain-CAM branch too; then seconds per stage group (``plan.stage_times``, the groups
    the report shows)."""
    lines = [f"{'method':<32}{'split':<8}{'mIoU':>8}{'threshold':>11}"]
    order = [s.key for s in BRANCH_SCORES]
    keys = sorted(metrics, key=lambda k: order.index(k) if k in order else len(order))
    for method in keys:
        splits = metrics[method]
        if not isinstance(splits, dict):
            continue
        for split, values in splits.items():
            if not isinstance(values, dict) or "miou" not in values:
                continue
            threshold = values.get("threshold")
            shown = f"{threshold:.2f}" if isinstance(threshold, (int, float)) else "-"
            lines.append(f"{method:<32}{split:<8}{values['miou']:>8.1f}{shown:>11}")
    lines += _table2_lines(metrics)
    times = stage_times(every_stage(), manifest)
    lines.append("")
    lines.append(f"{'stage':<32}{'seconds':>10}")
    for time_ in times:
        lines.append(f"{time_.group:<32}{time_.seconds:>10.1f}")
    lines.append(f"{'total':<32}{sum(t.seconds for t in times):>10.1f}")
    return "\n".join(lines)
