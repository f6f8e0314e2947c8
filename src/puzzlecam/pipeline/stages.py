"""Stage functions: each reads its inputs from the run directory and writes its outputs there.

The CLI and ``run`` call these; they take a RunContext and the stage's fingerprint.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from puzzlecam.cams.writer import write_cams
from puzzlecam.data.datasets import ClassificationDataset
from puzzlecam.data.demo import build_demo_dataset
from puzzlecam.data.samples import SplitData
from puzzlecam.errors import DataError
from puzzlecam.metrics.evaluate import evaluate_directory, format_table, write_result
from puzzlecam.models.backbone import BackboneConfig, backbone_normalization
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.run_dir import claim_output_dir
from puzzlecam.puzzle.losses import PuzzleConfig
from puzzlecam.puzzle.trainer import PuzzleCamTrainer
from puzzlecam.training.distributed import shard
from puzzlecam.training.loop import fit, load_weights
from puzzlecam.training.optim import parameter_groups

__all__ = [
    "METHODS",
    "pad_value",
    "method_puzzle_config",
    "stage_data",
    "stage_train_cls",
    "stage_cams",
    "evaluate_scores",
    "load_classifier",
]

METHODS = ("puzzle_cam", "plain_cam")


def pad_value(backbone: BackboneConfig) -> tuple[int, int, int]:
    """The backbone's mean colour in 0..255: zero after normalisation, the crop padding."""
    mean, _ = backbone_normalization(backbone.name)
    return tuple(round(255 * m) for m in mean)  # type: ignore[return-value]


def method_puzzle_config(ctx: RunContext, method: str) -> PuzzleConfig:
    """puzzle_cam uses the configured puzzle terms; plain_cam is the same with them off."""
    puzzle = ctx.config.train_cls.puzzle
    if method == "plain_cam":
        return dataclasses.replace(puzzle, puzzle_classification=False, reconstruction=False)
    return puzzle


def stage_data(ctx: RunContext, fingerprint: str) -> None:
    """Build the demo benchmark when asked for, then read and report both splits."""
    data = ctx.config.data
    if data.format == "demo" and ctx.dist.is_main:
        summary = build_demo_dataset(data.root, data.demo, progress=ctx.progress)
        verb = "found" if summary.reused else "built"
        ctx.log(f"demo data {verb} in {data.root} ({summary.source})")
    if ctx.dist.enabled:
        torch.distributed.barrier()
    for role in ("train", "val"):
        split = ctx.split(role)
        masks = sum(1 for s in split.samples if s.mask_path)
        ctx.log(
            f"{role} split '{ctx.split_name(role)}': {len(split)} images, {masks} with masks, {split.num_classes} classes"
        )


def load_classifier(
    ctx: RunContext, method: str, device: torch.device | str = "cpu"
) -> CamClassifier:
    config = ctx.config.train_cls
    backbone = dataclasses.replace(config.backbone, pretrained="none")  # weights come from the run
    model = CamClassifier(backbone, ctx.split("train").num_classes)
    model.load_state_dict(load_weights(ctx.run.classifier_dir(method) / "model.pt")["state_dict"])
    return model.to(device).eval()


def stage_train_cls(ctx: RunContext, fingerprint: str, method: str) -> None:
    config = ctx.config.train_cls
    train = ctx.split("train")
    model = CamClassifier(config.backbone, train.num_classes)
    trainer = PuzzleCamTrainer(model, method_puzzle_config(ctx, method))
    dataset = ClassificationDataset(
        train, config.augment, pad_value(config.backbone), config.loop.seed
    )
    groups = parameter_groups(model, model.new_modules, config.optim)
    fit(
        trainer,
        dataset,
        groups,
        config.optim,
        config.loop,
        ctx.run.classifier_dir(method),
        fingerprint,
        ctx.dist,
        description=f"train-cls {method}",
        meta={"classes": list(train.classes), "method": method},
        progress=ctx.progress,
    )


def stage_cams(ctx: RunContext, fingerprint: str, method: str, role: str) -> None:
    config = ctx.config.cams
    split = ctx.split(role)
    out_dir = ctx.run.cams_dir(method, role)
    if ctx.dist.is_main:
        claim_output_dir(out_dir, fingerprint)
    model = load_classifier(ctx, method, ctx.dist.device)
    overlay_ids = [s.image_id for s in split.samples[: config.overlays]]
    written = write_cams(
        model,
        shard(list(split.samples), ctx.dist),
        out_dir,
        config.scales,
        config.flip,
        config.batch_size,
        ctx.dist.device,
        config.num_workers,
        overlay_ids,
        out_dir.parent / f"{role}_overlays",
        amp=ctx.dist.device.type == "cuda",
        progress=ctx.progress,
    )
    ctx.log(f"cams {method}/{role}: {written} written, {len(split) - written} already there")


def _gt_dir(split: SplitData) -> Path:
    folders = {s.mask_path.parent for s in split.samples if s.mask_path}
    if not folders:
        raise DataError(
            split.samples[0].image_path.parent if split.samples else Path("."),
            f"split '{split.name}' has no ground-truth masks to evaluate against",
        )
    if len(folders) > 1:
        raise DataError(
            sorted(folders)[0],
            f"split '{split.name}' has masks in several folders: {sorted(folders)}",
        )
    return folders.pop()


def evaluate_scores(
    ctx: RunContext,
    pred_dir: Path,
    role: str,
    method: str,
    name: str,
    thresholds: tuple[float, ...] | None = None,
) -> dict:
    """Score a folder of predictions on a split's masks; record them in metrics.json."""
    split = ctx.split(role).with_masks()
    result = evaluate_directory(
        pred_dir,
        _gt_dir(split),
        split.classes,
        [s.image_id for s in split.samples],
        thresholds or ctx.config.eval.thresholds,
        progress=ctx.progress,
    )
    write_result(ctx.run.eval_path(name), result)
    summary = result.to_dict()
    values = {k: summary[k] for k in ("miou", "threshold", "num_images") if k in summary}
    for key in ("fp", "fn"):
        if key in summary:
            values[key] = summary[key]
    ctx.run.add_metrics(method, role, values)
    ctx.log(format_table(result, split.classes))
    return summary


def stage_eval_cams(ctx: RunContext, fingerprint: str, method: str, role: str) -> None:
    if ctx.dist.is_main:
        evaluate_scores(ctx, ctx.run.cams_dir(method, role), role, method, f"cams_{method}_{role}")
