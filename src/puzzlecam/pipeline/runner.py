"""The pipeline as a list of stages: each skipped when done for the same inputs, resumed
when interrupted (stages write atomically and skip finished files), timed."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from puzzlecam.config import config_hash
from puzzlecam.errors import RunDirError
from puzzlecam.pipeline import stages as S
from puzzlecam.pipeline.branches import (
    BRANCH_SCORES,
    METHOD_NAMES,
    METHODS,
    SEGMENTATION_METHOD,
    TABLE2_COLUMNS,
    branch_table,
)
from puzzlecam.pipeline.config import RunConfig
from puzzlecam.pipeline.context import RunContext
from puzzlecam.training.distributed import barrier

__all__ = ["Stage", "plan_stages", "stage_fingerprints", "run_pipeline", "format_summary"]


@dataclass(frozen=True)
class Stage:
    name: str  # key in the manifest, e.g. "cams/puzzle_cam/val"
    command: str  # the CLI command that runs it, e.g. "cams"
    action: Callable[[RunContext, str], Any]
    config: Any  # the settings that shape its output
    inputs: tuple[str, ...] = ()


def plan_stages(config: RunConfig) -> list[Stage]:
    """Every stage the config asks for, in order."""
    plan: list[Stage] = []

    def add(
        name: str, command: str, action: Callable, settings: Any, inputs: tuple[str, ...] = ()
    ) -> None:
        plan.append(Stage(name, command, action, settings, inputs))

    add("data", "data", S.stage_data, config.data)
    methods = [m for m in METHODS if m == "puzzle_cam" or config.train_cls.baseline_plain_cam]
    for method in methods:
        add(f"train_cls/{method}", "train-cls", partial(S.stage_train_cls, method=method),
            {"train_cls": config.train_cls, "method": method}, ("data",))  # fmt: skip
    for method in methods:
        for role in ("train", "val"):
            cams = f"cams/{method}/{role}"
            add(cams, "cams", partial(S.stage_cams, method=method, role=role),
                {"cams": config.cams, "role": role}, (f"train_cls/{method}",))  # fmt: skip
            add(
                f"eval/{cams}",
                "eval",
                partial(S.stage_eval_cams, method=method, role=role),
                config.eval,
                (cams,),
            )
    if config.until == "cams":
        return plan

    # the random-walk refinement of each branch, same settings (the paper's Table 2)
    for method in methods:
        labels, aff = f"affinity_labels/{method}", f"train_aff/{method}"
        add(labels, "affinity-labels", partial(S.stage_affinity_labels, method=method),
            {"affinity_labels": config.affinity_labels, "method": method},
            (f"cams/{method}/train",))  # fmt: skip
        add(aff, "train-aff", partial(S.stage_train_aff, method=method),
            {"train_aff": config.train_aff, "method": method}, (labels,))  # fmt: skip
        for role in ("train", "val"):
            rw, pseudo = f"rw/{method}/{role}", f"pseudo_labels/{method}/{role}"
            add(rw, "rw", partial(S.stage_rw, method=method, role=role),
                {"rw": config.rw, "method": method, "role": role},
                (aff, f"cams/{method}/{role}"))  # fmt: skip
            add(f"eval/{rw}", "eval", partial(S.stage_eval_rw, method=method, role=role),
                config.eval, (rw,))  # fmt: skip
            add(pseudo, "pseudo-labels", partial(S.stage_pseudo_labels, method=method, role=role),
                {"pseudo_labels": config.pseudo_labels, "method": method, "role": role},
                (rw,))  # fmt: skip
            add(f"eval/{pseudo}", "eval",
                partial(S.stage_eval_pseudo_labels, method=method, role=role),
                config.eval, (pseudo,))  # fmt: skip
    if config.until == "pseudo-labels":
        return plan

    for variant in ["weak"] + (["full"] if config.train_seg.fully_supervised else []):
        add(f"train_seg/{variant}", "train-seg", partial(S.stage_train_seg, variant=variant),
            {"train_seg": config.train_seg, "variant": variant},
            (f"pseudo_labels/{SEGMENTATION_METHOD}/train",) if variant == "weak" else ("data",))  # fmt: skip
        add(f"eval/predict/{variant}", "eval", partial(S.stage_predict_eval, variant=variant),
            {"predict": config.predict, "eval": config.eval}, (f"train_seg/{variant}",))  # fmt: skip
    return plan


def stage_fingerprints(plan: Iterable[Stage]) -> dict[str, str]:
    """Fingerprint of each stage: its name, settings and its inputs' fingerprints."""
    prints: dict[str, str] = {}
    for stage in plan:
        prints[stage.name] = config_hash(
            {
                "stage": stage.name,
                "config": stage.config,
                "inputs": [prints[i] for i in stage.inputs],
            }
        )
    return prints


def run_pipeline(ctx: RunContext, commands: Iterable[str] | None = None) -> None:
    """Run the stages of ``commands`` (all when None) that are not done yet."""
    plan = plan_stages(ctx.config)
    prints = stage_fingerprints(plan)
    if ctx.dist.is_main and ctx.run.root.is_dir():
        ctx.run.remove_stale_temp_files()
        for name in ctx.run.forget_stages(prints):
            ctx.log(
                f"[forget] {name}: not a stage of this version (its files are left as they are)"
            )
    barrier(ctx.dist)
    # the data stage is cheap and every stage needs it: single commands run it too
    wanted = None if commands is None else set(commands) | {"data"}
    by_name = {stage.name: stage for stage in plan}
    for stage in plan:
        if wanted is not None and stage.command not in wanted:
            continue
        fingerprint = prints[stage.name]
        if ctx.run.is_done(stage.name, fingerprint):
            ctx.log(f"[skip] {stage.name}: done")
            continue
        for name in stage.inputs:
            if not ctx.run.is_done(name, prints[name]):
                raise RunDirError(
                    f"stage {stage.name} needs {name}, which has not finished in {ctx.run.root}; "
                    f"run `puzzlecam {by_name[name].command}` (or `puzzlecam run`) first"
                )
        ctx.log(f"[run] {stage.name}")
        started = time.perf_counter()
        stage.action(ctx, fingerprint)
        barrier(ctx.dist)
        if ctx.dist.is_main:
            ctx.run.mark_done(stage.name, fingerprint, time.perf_counter() - started)
        barrier(ctx.dist)  # every rank sees the manifest entry before the next stage


def _table2_lines(metrics: dict[str, Any]) -> list[str]:
    """The paper's Table 2 (CAM -> random walk -> pseudo labels, per branch), when the
    run has more than one branch."""
    table = branch_table(metrics)
    if len(table) < 2:
        return []
    columns = [
        (output, title)
        for output, title in TABLE2_COLUMNS
        if any(output == o for cells in table.values() for o, _ in cells)
    ]
    lines = ["", f"{'Table 2 (mIoU train / val)':<28}" + "".join(f"{t:>16}" for _, t in columns)]
    for method, cells in table.items():
        shown = [
            " / ".join(
                f"{cells[(output, split)]:.1f}" if (output, split) in cells else "-"
                for split in ("train", "val")
            )
            for output, _ in columns
        ]
        lines.append(f"{METHOD_NAMES[method]:<28}" + "".join(f"{v:>16}" for v in shown))
    return lines


def format_summary(metrics: dict[str, Any], manifest: dict[str, Any]) -> str:
    """One table: mIoU per method and split; the paper's Table 2 when the run has the
    plain-CAM branch too; then seconds per stage group."""
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
    groups: dict[str, float] = {}
    for name, entry in manifest.items():
        parts = name.split("/")
        group = "/".join(parts[:2]) if parts[0] in _PER_METHOD_GROUPS else parts[0]
        groups[group] = groups.get(group, 0.0) + float(entry.get("seconds", 0.0))
    lines.append("")
    lines.append(f"{'stage':<32}{'seconds':>10}")
    for group, seconds in groups.items():
        lines.append(f"{group:<32}{seconds:>10.1f}")
    lines.append(f"{'total':<32}{sum(groups.values()):>10.1f}")
    return "\n".join(lines)


# stage names "{group}/{method or variant}/...": their times are summed per method
_PER_METHOD_GROUPS = (
    "train_cls",
    "cams",
    "affinity_labels",
    "train_aff",
    "rw",
    "pseudo_labels",
    "train_seg",
)
