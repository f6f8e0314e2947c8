"""The classifiers of the CAM branches (Puzzle-CAM, and the plain-CAM baseline), their
multi-scale CAMs of both splits, and the CAMs' evaluation."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from puzzlecam.cams.scores import load_scores
from puzzlecam.cams.writer import write_cams
from puzzlecam.data.datasets import ClassificationDataset
from puzzlecam.data.ids import id_path
from puzzlecam.data.samples import tags_to_vector
from puzzlecam.metrics.classification import multilabel_scores
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.pipeline.branches import (
    BRANCH_SCORES,
    METHOD_NAMES,
    METHODS,
    branch_title,
    classifier_settings,
    metric_key,
)
from puzzlecam.pipeline.config import RunConfig
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.folders import claim_output_dir
from puzzlecam.pipeline.kinds import ROLES, Picture, Stage, StageKind
from puzzlecam.pipeline.stages.common import (
    evaluate_scores,
    evaluation,
    fit_stage,
    left_out,
    pad_value,
    score,
)
from puzzlecam.pipeline.trained import load_classifier
from puzzlecam.puzzle.trainer import PuzzleCamTrainer
from puzzlecam.training.distributed import shard
from puzzlecam.training.optim import parameter_groups

__all__ = ["KINDS", "stage_train_cls", "stage_cams", "classification_quality", "stage_eval_cams"]

_MODELS = {"puzzle_cam": "Puzzle-CAM classifier", "plain_cam": "Plain-CAM classifier (baseline)"}


def stage_train_cls(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    config, method = stage.config["train_cls"], stage.method
    train = ctx.split("train")
    torch.manual_seed(config.loop.seed)  # the new layers' initial weights
    model = CamClassifier(config.backbone, train.num_classes)
    trainer = PuzzleCamTrainer(model, config.puzzle)
    dataset = ClassificationDataset(
        train, config.augment, pad_value(config.backbone), config.loop.seed
    )
    groups = parameter_groups(model, model.new_modules, config.optim)
    meta = {"classes": list(train.classes), "method": method}
    sync = config.backbone.norm == "train"
    fit_stage(ctx, stage, fingerprint, trainer, dataset, groups, meta, sync_batchnorm=sync)


def stage_cams(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    config, method, role = stage.config["cams"], stage.method, stage.role
    split = ctx.split(role)
    out_dir, overlays_dir = stage.outputs(ctx.run)
    if ctx.dist.is_main:
        claim_output_dir(out_dir, fingerprint)
    model = load_classifier(ctx.run, ctx.config, method, split.num_classes, ctx.dist.device)
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
        overlays_dir,
        amp=ctx.dist.device.type == "cuda",
        channels_last=config.channels_last,
        progress=ctx.progress,
    )
    ctx.log(f"cams {method}/{role}: {written} written, {len(split) - written} already there")


def classification_quality(ctx: RunContext, cams_dir: Path, role: str) -> dict[str, float]:
    """mAP and F1 of the classifier on a split, from the probabilities in its CAM files."""
    split = ctx.split(role)
    probs = np.stack(
        [load_scores(id_path(cams_dir, s.image_id, ".npz")).class_probs for s in split.samples]
    )
    targets = np.stack([tags_to_vector(s.tags, split.num_classes) for s in split.samples])
    return multilabel_scores(probs, targets)


def stage_eval_cams(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    if not ctx.dist.is_main:
        return
    method, role, (cams,) = stage.method, stage.role, stage.scores
    cams_dir = ctx.run.cams_dir(method, role)
    evaluate_scores(ctx, cams_dir, cams, stage.config.thresholds)
    quality = classification_quality(ctx, cams_dir, role)
    metrics = ctx.run.metrics().get(cams.key, {}).get(role, {})
    ctx.run.add_metrics(cams.key, role, {**metrics, **quality})
    ctx.log(f"{method} {role} classification: mAP {quality['map']:.1f}, F1 {quality['f1']:.1f}")


# --- the stage records of each config --------------------------------------------------------


def _plan_train_cls(config: RunConfig) -> Iterator[tuple[str, Stage]]:
    for method in METHODS:
        settings = {"train_cls": classifier_settings(config.train_cls, method), "method": method}
        group = f"train_cls/{method}"
        yield left_out(config, "cams", method), Stage(
            group, "train-cls", settings, inputs=("data",), reads=("train",), method=method,
            group=group, label=f"Train classifier: {METHOD_NAMES[method]}",
            model=_MODELS[method],
        )  # fmt: skip


def _cams(config: RunConfig, method: str, role: str) -> Stage:
    return Stage(
        f"cams/{method}/{role}", "cams", {"cams": config.cams, "role": role},
        inputs=(f"train_cls/{method}",), reads=(role,), method=method, role=role,
        group=f"cams/{method}", label=f"CAMs: {METHOD_NAMES[method]}",
    )  # fmt: skip


def _plan_cams(config: RunConfig) -> Iterator[tuple[str, Stage]]:
    for method in METHODS:
        for role in ROLES:
            yield left_out(config, "cams", method), _cams(config, method, role)


def _plan_eval_cams(config: RunConfig) -> Iterator[tuple[str, Stage]]:
    for method in METHODS:
        for role in ROLES:
            cams = score(metric_key(method, "cams"), role, prefix="cams_")
            stage = evaluation("eval-cams", _cams(config, method, role), config.eval, (cams,))
            yield left_out(config, "cams", method), stage


KINDS = (
    StageKind(
        "train-cls",
        command="train-cls",
        help="train the classifier with the puzzle module (and the plain-CAM baseline)",
        plan=_plan_train_cls,
        run=stage_train_cls,
        outputs=lambda run, stage: (run.classifier_dir(stage.method),),
        trains="train_cls",
        build=lambda settings: CamClassifier(settings.backbone, 2),  # class count: any
    ),
    StageKind(
        "cams",
        command="cams",
        help="multi-scale CAMs for the train and val splits",
        plan=_plan_cams,
        run=stage_cams,
        outputs=lambda run, stage: (
            run.cams_dir(stage.method, stage.role),
            run.cam_overlays_dir(stage.method, stage.role),
        ),
        picture=Picture(lambda stage: branch_title(stage.method), "scores"),
    ),
    StageKind(
        "eval-cams",
        command="cams",
        help="",
        plan=_plan_eval_cams,
        run=stage_eval_cams,
        metrics=tuple(m for m in BRANCH_SCORES if m.output == "cams"),
    ),
)
