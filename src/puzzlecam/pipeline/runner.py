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
    methods = ["puzzle_cam"] + (["plain_cam"] if config.train_cls.baseline_plain_cam else [])
    for method in methods:
        add(f"train_cls/{method}", "train-cls", partial(S.stage_train_cls, method=method),
            {"train_cls": config.train_cls, "method": method}, ("data",))  # fmt: skip
    for method in methods:
        for role in ("train", "val") if method == "puzzle_cam" else ("val",):
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

    add("affinity_labels", "affinity-labels", S.stage_affinity_labels, config.affinity_labels,
        ("cams/puzzle_cam/train",))  # fmt: skip
    add("train_aff", "train-aff", S.stage_train_aff, config.train_aff, ("affinity_labels",))
    for role in ("train", "val"):
        add(f"rw/{role}", "rw", partial(S.stage_rw, role=role), {"rw": config.rw, "role": role},
            ("train_aff", f"cams/puzzle_cam/{role}"))  # fmt: skip
        add(
            f"eval/rw/{role}",
            "eval",
            partial(S.stage_eval_rw, role=role),
            config.eval,
            (f"rw/{role}",),
        )
        add(f"pseudo_labels/{role}", "pseudo-labels", partial(S.stage_pseudo_labels, role=role),
            {"pseudo_labels": config.pseudo_labels, "role": role}, (f"rw/{role}",))  # fmt: skip
        add(f"eval/pseudo_labels/{role}", "eval", partial(S.stage_eval_pseudo_labels, role=role),
            config.eval, (f"pseudo_labels/{role}",))  # fmt: skip
    if config.until == "pseudo-labels":
        return plan

    for variant in ["weak"] + (["full"] if config.train_seg.fully_supervised else []):
        add(f"train_seg/{variant}", "train-seg", partial(S.stage_train_seg, variant=variant),
            {"train_seg": config.train_seg, "variant": variant},
            ("pseudo_labels/train",) if variant == "weak" else ("data",))  # fmt: skip
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


def format_summary(metrics: dict[str, Any], manifest: dict[str, Any]) -> str:
    """One table: mIoU per method and split, then seconds per stage group."""
    lines = [f"{'method':<24}{'split':<8}{'mIoU':>8}{'threshold':>11}"]
    for method, splits in metrics.items():
        if not isinstance(splits, dict):
            continue
        for split, values in splits.items():
            if not isinstance(values, dict) or "miou" not in values:
                continue
            threshold = values.get("threshold")
            shown = f"{threshold:.2f}" if isinstance(threshold, (int, float)) else "-"
            lines.append(f"{method:<24}{split:<8}{values['miou']:>8.1f}{shown:>11}")
    groups: dict[str, float] = {}
    for name, entry in manifest.items():
        parts = name.split("/")
        group = "/".join(parts[:2]) if parts[0] in ("train_cls", "train_seg", "cams") else parts[0]
        groups[group] = groups.get(group, 0.0) + float(entry.get("seconds", 0.0))
    lines.append("")
    lines.append(f"{'stage':<32}{'seconds':>10}")
    for group, seconds in groups.items():
        lines.append(f"{group:<32}{seconds:>10.1f}")
    lines.append(f"{'total':<32}{sum(groups.values()):>10.1f}")
    return "\n".join(lines)
