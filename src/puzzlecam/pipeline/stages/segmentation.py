"""The segmentation models: DeepLabV3+ on the Puzzle-CAM branch's pseudo labels (``weak``)
and, when configured, on ground truth (``full``, the upper bound); each predicts the val
split, scored against its masks."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial

import torch

from puzzlecam.crf import crf_iterations
from puzzlecam.data.datasets import SegmentationDataset
from puzzlecam.data.ids import id_path
from puzzlecam.errors import ConfigError
from puzzlecam.io import save_label_png
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.pipeline.branches import (
    SEGMENTATION_METHOD,
    SEGMENTER_SCORES,
    VARIANTS,
    segmenter_key,
    segmenter_settings,
)
from puzzlecam.pipeline.config import RunConfig
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.kinds import Picture, Stage, StageKind
from puzzlecam.pipeline.stages.common import (
    claim_todo,
    each_image,
    evaluate_scores,
    fit_stage,
    inference_net,
    left_out,
    pad_value,
    score,
)
from puzzlecam.segmentation.export import segmenter_net
from puzzlecam.segmentation.model_io import load_segmenter, segmenter_meta
from puzzlecam.segmentation.predict import segment_arrays
from puzzlecam.segmentation.trainer import SegmentationTrainer
from puzzlecam.training.distributed import barrier
from puzzlecam.training.optim import parameter_groups

__all__ = ["KINDS", "stage_train_seg", "stage_predict_eval"]

_NAMES = {  # variant -> (its model, its training's time line, its prediction's, its picture)
    "weak": ("DeepLabV3+ on pseudo labels", "Train DeepLabV3+: pseudo labels",
             "Predict + evaluate: pseudo-label model", "DeepLabV3+ (pseudo labels)"),
    "full": ("DeepLabV3+ on ground truth", "Train DeepLabV3+: ground truth",
             "Predict + evaluate: ground-truth model", "DeepLabV3+ (ground truth)"),
}  # fmt: skip


def stage_train_seg(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    config, variant = stage.config["train_seg"], stage.variant
    train = ctx.split("train")
    label_dir = (
        ctx.run.pseudo_labels_dir(SEGMENTATION_METHOD, "train") if variant == "weak" else None
    )
    if variant == "full":
        train = train.with_masks()
        if not train.samples:
            raise ConfigError(
                "train_seg.fully_supervised needs ground-truth masks in the train split, and it "
                "has none; set train_seg.fully_supervised: false"
            )
    torch.manual_seed(config.loop.seed)
    model = Segmenter(config.backbone, train.num_classes + 1, config.head_norm)
    dataset = SegmentationDataset(
        train, config.augment, pad_value(config.backbone), config.loop.seed, label_dir=label_dir
    )
    groups = parameter_groups(model, model.new_modules, config.optim)
    meta = segmenter_meta(config.backbone, config.head_norm, ctx.split("train").classes)
    sync = config.backbone.norm == "train"
    fit_stage(ctx, stage, fingerprint, SegmentationTrainer(model), dataset, groups, meta, sync)


def stage_predict_eval(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """The segmentation model on the val split, scored against its masks."""
    config, variant, role = stage.config["predict"], stage.variant, stage.role
    out_dir = stage.folder(ctx.run)
    todo = claim_todo(ctx, fingerprint, out_dir, ctx.split(role).samples, ".png")
    weights = ctx.run.model_path(ctx.run.segmentation_dir(variant))
    model, _ = load_segmenter(weights, ctx.dist.device)
    folder = ctx.run.segmentation_dir(variant)
    net = inference_net(ctx, partial(segmenter_net, model), folder, batched=False)
    crf = crf_iterations(config.crf_iterations if config.crf else 0, "predict", ctx.log)
    for sample, image in each_image(todo, f"predict {variant}", ctx.progress):
        pixels = image.permute(1, 2, 0).numpy()
        labels = segment_arrays(net, [pixels], config, ctx.dist.device, crf)[0]
        save_label_png(id_path(out_dir, sample.image_id, ".png"), labels)
    barrier(ctx.dist)
    if ctx.dist.is_main:
        (scored,) = stage.scores
        evaluate_scores(ctx, out_dir, scored, stage.config["eval"].thresholds)


# --- the stage records of each config --------------------------------------------------------


def _plan_train_seg(config: RunConfig) -> Iterator[tuple[str, Stage]]:
    for variant in VARIANTS:
        train = f"train_seg/{variant}"
        settings = {"train_seg": segmenter_settings(config.train_seg, variant), "variant": variant}
        labels = f"pseudo_labels/{SEGMENTATION_METHOD}/train"
        yield left_out(config, "train-seg", variant=variant), Stage(
            train, "train-seg", settings, inputs=(labels if variant == "weak" else "data",),
            reads=("train",), variant=variant, group=train, label=_NAMES[variant][1],
            model=_NAMES[variant][0],
        )  # fmt: skip


def _plan_predict(config: RunConfig) -> Iterator[tuple[str, Stage]]:
    for variant in VARIANTS:
        yield left_out(config, "train-seg", variant=variant), Stage(
            f"eval/predict/{variant}", "predict-eval",
            {"predict": config.predict, "eval": config.eval}, inputs=(f"train_seg/{variant}",),
            reads=("val",), variant=variant, role="val", group=f"predict/{variant}",
            label=_NAMES[variant][2], scores=(score(segmenter_key(variant), "val"),),
        )  # fmt: skip


KINDS = (
    StageKind(
        "train-seg",
        command="train-seg",
        help="train DeepLabV3+ on the pseudo labels (and on ground truth if configured)",
        plan=_plan_train_seg,
        run=stage_train_seg,
        outputs=lambda run, stage: (run.segmentation_dir(stage.variant),),
        trains="train_seg",
        build=lambda settings: Segmenter(settings.backbone, 3, settings.head_norm),
    ),
    StageKind(
        "predict-eval",
        command="train-seg",
        help="",
        plan=_plan_predict,
        run=stage_predict_eval,
        outputs=lambda run, stage: (run.predictions_dir(stage.variant, stage.role),),
        metrics=SEGMENTER_SCORES,
        picture=Picture(lambda stage: _NAMES[stage.variant][3], "labels"),
    ),
)
