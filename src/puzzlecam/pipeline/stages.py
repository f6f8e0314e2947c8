"""Stage functions: each reads its inputs from the run directory and writes its outputs there.

The runner calls these with a RunContext, the stage's record (``pipeline.plan.Stage``:
its branch, split, segmentation model, settings and scores) and its fingerprint.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from puzzlecam.affinity.inference import boundary_map, refine_scores
from puzzlecam.affinity.label_maps import confident_labels, pseudo_labels
from puzzlecam.affinity.trainer import AffinityTrainer
from puzzlecam.cams.scores import ScoreMaps, load_scores, save_scores
from puzzlecam.cams.writer import write_cams
from puzzlecam.crf import crf_iterations
from puzzlecam.data.datasets import ClassificationDataset, InferenceDataset, SegmentationDataset
from puzzlecam.data.demo import build_demo_dataset
from puzzlecam.data.ids import id_path
from puzzlecam.data.loader import CheckedLoader
from puzzlecam.data.samples import Sample, tags_to_vector
from puzzlecam.errors import ConfigError, DataError
from puzzlecam.io import load_image, save_label_png
from puzzlecam.metrics.classification import multilabel_scores
from puzzlecam.metrics.evaluate import evaluate_directory, format_table, write_result
from puzzlecam.models.affinitynet import AffinityNet
from puzzlecam.models.backbone import BackboneConfig, backbone_normalization
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.parallel import default_workers, map_images
from puzzlecam.pipeline.branches import SEGMENTATION_METHOD
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.plan import Score, Stage
from puzzlecam.pipeline.run_dir import claim_output_dir
from puzzlecam.pipeline.trained import load_affinitynet, load_classifier
from puzzlecam.puzzle.trainer import PuzzleCamTrainer
from puzzlecam.segmentation.model_io import load_segmenter, segmenter_meta
from puzzlecam.segmentation.predict import segment_arrays
from puzzlecam.segmentation.trainer import SegmentationTrainer
from puzzlecam.training.distributed import barrier, shard
from puzzlecam.training.loop import fit
from puzzlecam.training.optim import parameter_groups

__all__ = [
    "pad_value",
    "stage_data",
    "stage_train_cls",
    "stage_cams",
    "evaluate_scores",
    "classification_quality",
    "stage_eval_cams",
    "stage_affinity_labels",
    "stage_train_aff",
    "stage_rw",
    "stage_eval_rw",
    "stage_pseudo_labels",
    "stage_eval_pseudo_labels",
    "stage_train_seg",
    "stage_predict_eval",
]


def pad_value(backbone: BackboneConfig) -> tuple[int, int, int]:
    """The backbone's mean colour in 0..255: zero after normalisation, the crop padding."""
    mean, _ = backbone_normalization(backbone.name)
    return tuple(round(255 * m) for m in mean)  # type: ignore[return-value]


def stage_data(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """Build the demo benchmark when asked for, then read and report both splits.

    The data check and the data signature follow on every run, this stage done or not
    (``pipeline.data_check.prepare_data``, called by the runner).
    """
    data = ctx.config.data
    if data.format == "demo" and ctx.dist.is_main:
        summary = build_demo_dataset(data.root, data.demo, progress=ctx.progress)
        verb = "found" if summary.reused else "built"
        ctx.log(f"demo data {verb} in {data.root} ({summary.source})")
    barrier(ctx.dist)
    for role in ("train", "val"):
        split = ctx.split(role)
        masks = sum(1 for s in split.samples if s.mask_path)
        ctx.log(
            f"{role} split '{ctx.split_name(role)}': {len(split)} images, {masks} with masks, {split.num_classes} classes"
        )


def stage_train_cls(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    config, method = stage.config["train_cls"], stage.method  # the fingerprint's settings
    train = ctx.split("train")
    torch.manual_seed(config.loop.seed)  # the new layers' initial weights
    model = CamClassifier(config.backbone, train.num_classes)
    trainer = PuzzleCamTrainer(model, config.puzzle)
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
        stage.folder(ctx.run),
        fingerprint,
        ctx.dist,
        description=f"train-cls {method}",
        section="train_cls",
        meta={"classes": list(train.classes), "method": method},
        progress=ctx.progress,
        sync_batchnorm=config.backbone.norm == "train",
    )


def stage_cams(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    config, method, role = ctx.config.cams, stage.method, stage.role
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


def evaluate_scores(
    ctx: RunContext, pred_dir: Path, score: Score, thresholds: tuple[float, ...] | None = None
) -> dict | None:
    """Score a folder of predictions on a split's masks; record them in metrics.json under
    ``score.key`` and in full in ``eval/{score.eval_name}.json``.

    A split without masks (a user's own tagged photos) is not evaluated: said once, skipped
    (and a score from when it had masks is dropped).
    """
    key, role, path = score.key, score.split, ctx.run.eval_path(score.eval_name)
    split = ctx.split(role).with_masks()
    if not split.samples:
        ctx.log(f"{key} {role}: no ground-truth masks in this split, nothing to evaluate")
        ctx.run.drop_metrics(key, role)
        path.unlink(missing_ok=True)
        return None
    result = evaluate_directory(
        pred_dir,
        {s.image_id: s.mask_path for s in split.samples},
        split.classes,
        [s.image_id for s in split.samples],
        thresholds or ctx.config.eval.thresholds,
        progress=ctx.progress,
    )
    write_result(path, result)
    summary = result.to_dict()
    values = {k: summary[k] for k in ("miou", "threshold", "fp", "fn", "num_images")}
    ctx.run.add_metrics(key, role, values)
    ctx.log(format_table(result, split.classes))
    return summary


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
    method, role, (score,) = stage.method, stage.role, stage.scores
    cams_dir = ctx.run.cams_dir(method, role)
    evaluate_scores(ctx, cams_dir, score)
    quality = classification_quality(ctx, cams_dir, role)
    metrics = ctx.run.metrics().get(score.key, {}).get(role, {})
    ctx.run.add_metrics(score.key, role, {**metrics, **quality})
    ctx.log(f"{method} {role} classification: mAP {quality['map']:.1f}, F1 {quality['f1']:.1f}")


# --- per-image stages: claim the output folder, write what is missing ------------------


def _claim_todo(
    ctx: RunContext, fingerprint: str, out_dir: Path, samples: Sequence[Sample], suffix: str
) -> list[Sample]:
    """Claim ``out_dir`` for ``fingerprint`` (the main process; the others wait), then this
    process's share of ``samples`` whose output ``{id}{suffix}`` is not there yet: a stage
    that was interrupted redoes only what is missing."""
    if ctx.dist.is_main:
        claim_output_dir(out_dir, fingerprint)
    barrier(ctx.dist)
    return [
        s
        for s in shard(list(samples), ctx.dist)
        if not id_path(out_dir, s.image_id, suffix).is_file()
    ]


def _each_image(
    todo: Sequence[Sample], description: str, progress: bool
) -> Iterator[tuple[Sample, torch.Tensor]]:
    """(sample, (3, H, W) uint8 image) for each of ``todo`` in order, read ahead by a loader
    worker, with a progress bar."""
    loader = CheckedLoader(InferenceDataset(todo), batch_size=None, num_workers=1 if todo else 0)
    bar = tqdm(
        total=len(todo), desc=description, disable=not progress, dynamic_ncols=True, leave=False
    )
    for index, image in loader:
        yield todo[index], image
        bar.update(1)
    bar.close()


# --- random-walk refinement (stages 4-6), the same for each CAM branch (``method``) ------


def _affinity_label_job(
    sample: Sample, cams_dir: Path, out_dir: Path, fg: float, bg: float, crf: int
) -> None:
    image = np.asarray(load_image(sample.image_path))
    cams_path = id_path(cams_dir, sample.image_id, ".npz")
    maps = load_scores(cams_path)
    scores = maps.scores.astype(np.float32)
    if scores.shape[1:] != image.shape[:2]:
        raise DataError(
            cams_path,
            f"CAMs are {scores.shape[1:]}, the image {image.shape[:2]}",
        )
    save_label_png(
        id_path(out_dir, sample.image_id, ".png"),
        confident_labels(image, scores, maps.keys, fg, bg, crf),
    )


def stage_affinity_labels(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """Confident fg / bg / ignore labels of the train images from a branch's CAMs."""
    config, method, role = ctx.config.affinity_labels, stage.method, stage.role
    out_dir = stage.folder(ctx.run)
    todo = _claim_todo(ctx, fingerprint, out_dir, ctx.split(role).samples, ".png")
    crf = crf_iterations(config.crf_iterations if config.crf else 0, "affinity-labels", ctx.log)
    job = partial(
        _affinity_label_job,
        cams_dir=ctx.run.cams_dir(method, role),
        out_dir=out_dir,
        fg=config.fg_threshold,
        bg=config.bg_threshold,
        crf=crf,
    )
    map_images(job, todo, default_workers(), "affinity labels", ctx.progress)
    ctx.log(f"affinity labels {method}: {len(todo)} written to {out_dir}")


def stage_train_aff(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """AffinityNet on a branch's affinity labels (same seed and settings for every branch)."""
    config, method = ctx.config.train_aff, stage.method
    train = ctx.split("train")
    torch.manual_seed(config.loop.seed)
    model = AffinityNet(config.backbone)
    dataset = SegmentationDataset(
        train,
        config.augment,
        pad_value(config.backbone),
        config.loop.seed,
        label_dir=ctx.run.affinity_labels_dir(method, "train"),
        label_stride=model.stride,  # the boundary map's, from the backbone
    )
    # the head is all there is to train: one learning rate for it, as the reference
    groups = parameter_groups(model, [], config.optim)
    fit(
        AffinityTrainer(model, config.radius),
        dataset,
        groups,
        config.optim,
        config.loop,
        stage.folder(ctx.run),
        fingerprint,
        ctx.dist,
        description=f"train-aff {method}",
        section="train_aff",
        meta={"radius": config.radius, "method": method},
        progress=ctx.progress,
    )


def stage_rw(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """A branch's CAMs of a split refined by the random walk over its own AffinityNet."""
    config, method, role = ctx.config.rw, stage.method, stage.role
    out_dir = stage.folder(ctx.run)
    todo = _claim_todo(ctx, fingerprint, out_dir, ctx.split(role).samples, ".npz")
    cams_dir = ctx.run.cams_dir(method, role)
    device = ctx.dist.device
    model = load_affinitynet(ctx.run, ctx.config, method, device)
    for sample, image in _each_image(todo, f"rw {method}/{role}", ctx.progress):
        cams_path = id_path(cams_dir, sample.image_id, ".npz")
        maps = load_scores(cams_path)
        if maps.scores_stride4 is None:
            raise DataError(
                cams_path,
                "score file has no stride-4 CAMs for the random walk",
            )
        boundary = boundary_map(model, image.to(device))
        cams = torch.from_numpy(maps.scores_stride4.astype(np.float32)).to(device)
        refined = refine_scores(
            cams, boundary, tuple(image.shape[-2:]), config.beta, config.exp_times, config.radius
        )
        save_scores(
            id_path(out_dir, sample.image_id, ".npz"), ScoreMaps(maps.keys, refined.cpu().numpy())
        )
    ctx.log(f"rw {method}/{role}: {len(todo)} written to {out_dir}")


def _pseudo_label_job(
    sample: Sample, rw_dir: Path, out_dir: Path, threshold: float, crf: int
) -> None:
    image = np.asarray(load_image(sample.image_path))
    maps = load_scores(id_path(rw_dir, sample.image_id, ".npz"))
    labels = pseudo_labels(image, maps.scores.astype(np.float32), maps.keys, threshold, crf)
    save_label_png(id_path(out_dir, sample.image_id, ".png"), labels)


def stage_pseudo_labels(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """Pseudo labels of a split from a branch's random-walk scores (dense CRF when on)."""
    config, method, role = ctx.config.pseudo_labels, stage.method, stage.role
    out_dir = stage.folder(ctx.run)
    todo = _claim_todo(ctx, fingerprint, out_dir, ctx.split(role).samples, ".png")
    crf = crf_iterations(config.crf_iterations if config.crf else 0, "pseudo-labels", ctx.log)
    job = partial(
        _pseudo_label_job,
        rw_dir=ctx.run.rw_dir(method, role),
        out_dir=out_dir,
        threshold=config.threshold,
        crf=crf,
    )
    map_images(job, todo, default_workers(), f"pseudo labels {method}/{role}", ctx.progress)
    ctx.log(f"pseudo labels {method}/{role}: {len(todo)} written to {out_dir}")


def stage_eval_rw(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    if ctx.dist.is_main:
        (score,) = stage.scores
        evaluate_scores(ctx, ctx.run.rw_dir(stage.method, stage.role), score)


def stage_eval_pseudo_labels(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """(Without CRF) the random-walk scores at the pseudo-label threshold, and the pseudo
    labels as written."""
    if not ctx.dist.is_main:
        return
    method, role, (nocrf, labels) = stage.method, stage.role, stage.scores
    threshold = ctx.config.pseudo_labels.threshold
    evaluate_scores(ctx, ctx.run.rw_dir(method, role), nocrf, (threshold,))
    evaluate_scores(ctx, ctx.run.pseudo_labels_dir(method, role), labels)


# --- segmentation (stages 7-8) ----------------------------------------------------------


def stage_train_seg(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    config, variant = stage.config["train_seg"], stage.variant  # the fingerprint's settings
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
    fit(
        SegmentationTrainer(model),
        dataset,
        groups,
        config.optim,
        config.loop,
        stage.folder(ctx.run),
        fingerprint,
        ctx.dist,
        description=f"train-seg {variant}",
        section="train_seg",
        meta=segmenter_meta(config.backbone, config.head_norm, ctx.split("train").classes),
        progress=ctx.progress,
        sync_batchnorm=config.backbone.norm == "train",
    )


def stage_predict_eval(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """The segmentation model on the val split, scored against its masks."""
    config, variant, role = ctx.config.predict, stage.variant, stage.role
    out_dir = stage.folder(ctx.run)
    todo = _claim_todo(ctx, fingerprint, out_dir, ctx.split(role).samples, ".png")
    weights = ctx.run.model_path(ctx.run.segmentation_dir(variant))
    model, _ = load_segmenter(weights, ctx.dist.device)
    crf = crf_iterations(config.crf_iterations if config.crf else 0, "predict", ctx.log)
    for sample, image in _each_image(todo, f"predict {variant}", ctx.progress):
        pixels = image.permute(1, 2, 0).numpy()
        labels = segment_arrays(model, [pixels], config, ctx.dist.device, crf)[0]
        save_label_png(id_path(out_dir, sample.image_id, ".png"), labels)
    barrier(ctx.dist)
    if ctx.dist.is_main:
        (score,) = stage.scores
        evaluate_scores(ctx, out_dir, score)
