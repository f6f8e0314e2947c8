"""The classifiers of the CAM branches (Puzzle-CAM, and the plain-CAM baseline), their
multi-scale CAMs of both splits, and the CAMs' evaluation."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch

from puzzlecam.cams.inference import classifier_net
from puzzlecam.cams.scores import load_scores
from puzzlecam.cams.writer import write_cams
from puzzlecam.data.datasets import ClassificationDataset
from puzzlecam.data.ids import id_path
from puzzlecam.data.samples import tags_to_vector
from puzzlecam.dataclass_yaml import config_hash
from puzzlecam.metrics.classification import multilabel_scores
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.pipeline.branches import (
    BRANCH_SCORES,
    METHOD_NAMES,
    METHODS,
    PLAIN_CAM_PUZZLE,
    branch_title,
    classifier_settings,
    metric_key,
)
from puzzlecam.pipeline.config import RunConfig, TrainClsConfig
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.folders import claim_output_dir
from puzzlecam.pipeline.kinds import ROLES, Picture, Stage, StageKind
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.pipeline.stages.common import (
    evaluate_scores,
    evaluation,
    fit_stage,
    inference_net,
    left_out,
    pad_value,
    score,
)
from puzzlecam.pipeline.trained import load_classifier
from puzzlecam.puzzle.losses import first_puzzle_step
from puzzlecam.puzzle.trainer import PuzzleCamTrainer
from puzzlecam.training.distributed import shard
from puzzlecam.training.optim import parameter_groups

__all__ = ["KINDS", "stage_train_cls", "stage_cams", "classification_quality", "stage_eval_cams"]

_MODELS = {"puzzle_cam": "Puzzle-CAM classifier", "plain_cam": "Plain-CAM classifier (baseline)"}


def _fork_path(run: RunDir, settings: TrainClsConfig) -> Path:
    """Where the Puzzle-CAM classifier keeps its state at the step its puzzle terms start,
    for a plain-CAM classifier of the same settings to start from: named by what the steps
    before depend on (the settings with plain CAM's puzzle terms), so that another plain
    CAM finds none."""
    plain = dataclasses.replace(settings, puzzle=PLAIN_CAM_PUZZLE, baseline_plain_cam=True)
    return run.classifier_dir(METHODS[0]) / f"snapshot-{config_hash(plain)}.pt"


def stage_train_cls(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """A branch's classifier. The Puzzle-CAM classifier is plain CAM until its puzzle terms
    start (``puzzle.start``); it keeps its state at that step, and the plain-CAM baseline
    of the same settings starts from there instead of step 0: the same weights, bit for bit
    (``tests/pipeline/test_baseline_fork.py``), a paired comparison, fewer steps."""
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
    fork, fork_path = {}, _fork_path(ctx.run, config)
    total_steps = len(dataset) // config.loop.batch_size * config.loop.epochs
    first = first_puzzle_step(config.puzzle.start, total_steps)
    if method == METHODS[0] and config.puzzle.uses_tiles and first > 0:
        fork["snapshot"] = (first, fork_path)
    elif method != METHODS[0] and fork_path.is_file():
        fork["start_from"] = fork_path
        ctx.log(f"train-cls {method}: starts from the Puzzle-CAM classifier's state at {fork_path}")
    fit_stage(ctx, stage, fingerprint, trainer, dataset, groups, meta, sync, **fork)


def stage_cams(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    config, method, role = stage.config["cams"], stage.method, stage.role
    split = ctx.split(role)
    out_dir, overlays_dir = stage.outputs(ctx.run)
    if ctx.dist.is_main:
        claim_output_dir(out_dir, fingerprint)
    model = load_classifier(ctx.run, ctx.config, method, split.num_classes, ctx.dist.device)
    net = inference_net(ctx, partial(classifier_net, model), ctx.run.classifier_dir(method))
    overlay_ids = [s.image_id for s in split.samples[: config.overlays]]
    written = write_cams(
        net,
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
    ctx.log(
        f"cams {method}/{role}: {written} written, {len(split) - written} already there "
        f"({ctx.engine})"
    )


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
