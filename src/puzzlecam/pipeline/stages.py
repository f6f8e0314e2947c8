"""Stage functions: each reads its inputs from the run directory and writes its outputs there.

The CLI and ``run`` call these; they take a RunContext and the stage's fingerprint.
"""

from __future__ import annotations

import dataclasses
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
from puzzlecam.dataclass_yaml import to_dict
from puzzlecam.errors import ConfigError, DataError
from puzzlecam.io import load_image, save_label_png
from puzzlecam.metrics.classification import multilabel_scores
from puzzlecam.metrics.evaluate import evaluate_directory, format_table, write_result
from puzzlecam.models.affinitynet import AffinityNet
from puzzlecam.models.backbone import BackboneConfig, backbone_normalization
from puzzlecam.models.classifier import CamClassifier
from puzzlecam.models.segmenter import Segmenter
from puzzlecam.parallel import default_workers, map_images
from puzzlecam.pipeline.branches import (
    METHODS,
    SEGMENTATION_METHOD,
    classifier_settings,
    metric_key,
    segmenter_settings,
)
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.run_dir import claim_output_dir
from puzzlecam.puzzle.trainer import PuzzleCamTrainer
from puzzlecam.segmentation.model_io import load_segmenter
from puzzlecam.segmentation.predict import segment_arrays
from puzzlecam.segmentation.trainer import SegmentationTrainer
from puzzlecam.training.distributed import barrier, shard
from puzzlecam.training.loop import fit, load_weights
from puzzlecam.training.optim import parameter_groups

__all__ = [
    "METHODS",
    "pad_value",
    "stage_data",
    "stage_train_cls",
    "stage_cams",
    "evaluate_scores",
    "load_classifier",
    "stage_affinity_labels",
    "stage_train_aff",
    "load_affinitynet",
    "stage_rw",
    "stage_eval_rw",
    "stage_pseudo_labels",
    "stage_eval_pseudo_labels",
]


def pad_value(backbone: BackboneConfig) -> tuple[int, int, int]:
    """The backbone's mean colour in 0..255: zero after normalisation, the crop padding."""
    mean, _ = backbone_normalization(backbone.name)
    return tuple(round(255 * m) for m in mean)  # type: ignore[return-value]


def stage_data(ctx: RunContext, fingerprint: str) -> None:
    """Build the demo benchmark when asked for, then read and report both splits.

    The data check and the data signature follow on every run, this stage done or not
    (``pipeline.data_check.prepare_data``, called by the runner).
    """
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
    config = classifier_settings(ctx.config.train_cls, method)  # the fingerprint's settings
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
        ctx.run.classifier_dir(method),
        fingerprint,
        ctx.dist,
        description=f"train-cls {method}",
        section="train_cls",
        meta={"classes": list(train.classes), "method": method},
        progress=ctx.progress,
        sync_batchnorm=config.backbone.norm == "train",
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
        ctx.run.cam_overlays_dir(method, role),
        amp=ctx.dist.device.type == "cuda",
        progress=ctx.progress,
    )
    ctx.log(f"cams {method}/{role}: {written} written, {len(split) - written} already there")


def evaluate_scores(
    ctx: RunContext,
    pred_dir: Path,
    role: str,
    method: str,
    name: str,
    thresholds: tuple[float, ...] | None = None,
) -> dict | None:
    """Score a folder of predictions on a split's masks; record them in metrics.json.

    A split without masks (a user's own tagged photos) is not evaluated: said once, skipped
    (and a score from when it had masks is dropped).
    """
    split = ctx.split(role).with_masks()
    if not split.samples:
        ctx.log(f"{method} {role}: no ground-truth masks in this split, nothing to evaluate")
        ctx.run.drop_metrics(method, role)
        ctx.run.eval_path(name).unlink(missing_ok=True)
        return None
    result = evaluate_directory(
        pred_dir,
        {s.image_id: s.mask_path for s in split.samples},
        split.classes,
        [s.image_id for s in split.samples],
        thresholds or ctx.config.eval.thresholds,
        progress=ctx.progress,
    )
    write_result(ctx.run.eval_path(name), result)
    summary = result.to_dict()
    values = {k: summary[k] for k in ("miou", "threshold", "fp", "fn", "num_images")}
    ctx.run.add_metrics(method, role, values)
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


def stage_eval_cams(ctx: RunContext, fingerprint: str, method: str, role: str) -> None:
    if not ctx.dist.is_main:
        return
    cams_dir = ctx.run.cams_dir(method, role)
    key = metric_key(method, "cams")
    evaluate_scores(ctx, cams_dir, role, key, f"cams_{key}_{role}")
    quality = classification_quality(ctx, cams_dir, role)
    metrics = ctx.run.metrics().get(key, {}).get(role, {})
    ctx.run.add_metrics(key, role, {**metrics, **quality})
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


def stage_affinity_labels(ctx: RunContext, fingerprint: str, method: str) -> None:
    """Confident fg / bg / ignore labels of the train images from ``method``'s CAMs."""
    config = ctx.config.affinity_labels
    out_dir = ctx.run.affinity_labels_dir(method, "train")
    todo = _claim_todo(ctx, fingerprint, out_dir, ctx.split("train").samples, ".png")
    crf = crf_iterations(config.crf_iterations if config.crf else 0, "affinity-labels", ctx.log)
    job = partial(
        _affinity_label_job,
        cams_dir=ctx.run.cams_dir(method, "train"),
        out_dir=out_dir,
        fg=config.fg_threshold,
        bg=config.bg_threshold,
        crf=crf,
    )
    map_images(job, todo, default_workers(), "affinity labels", ctx.progress)
    ctx.log(f"affinity labels {method}: {len(todo)} written to {out_dir}")


def stage_train_aff(ctx: RunContext, fingerprint: str, method: str) -> None:
    """AffinityNet on ``method``'s affinity labels (same seed and settings for every branch)."""
    config = ctx.config.train_aff
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
        ctx.run.affinity_dir(method),
        fingerprint,
        ctx.dist,
        description=f"train-aff {method}",
        section="train_aff",
        meta={"radius": config.radius, "method": method},
        progress=ctx.progress,
    )


def load_affinitynet(
    ctx: RunContext, method: str, device: torch.device | str = "cpu"
) -> AffinityNet:
    """The AffinityNet trained on ``method``'s affinity labels."""
    backbone = dataclasses.replace(ctx.config.train_aff.backbone, pretrained="none")
    model = AffinityNet(backbone)
    model.load_state_dict(load_weights(ctx.run.affinity_dir(method) / "model.pt")["state_dict"])
    return model.to(device).eval()


def stage_rw(ctx: RunContext, fingerprint: str, method: str, role: str) -> None:
    """``method``'s CAMs of a split refined by the random walk over its own AffinityNet."""
    config = ctx.config.rw
    out_dir = ctx.run.rw_dir(method, role)
    todo = _claim_todo(ctx, fingerprint, out_dir, ctx.split(role).samples, ".npz")
    cams_dir = ctx.run.cams_dir(method, role)
    device = ctx.dist.device
    model = load_affinitynet(ctx, method, device)
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


def stage_pseudo_labels(ctx: RunContext, fingerprint: str, method: str, role: str) -> None:
    """Pseudo labels of a split from ``method``'s random-walk scores (dense CRF when on)."""
    config = ctx.config.pseudo_labels
    out_dir = ctx.run.pseudo_labels_dir(method, role)
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


def stage_eval_rw(ctx: RunContext, fingerprint: str, method: str, role: str) -> None:
    if ctx.dist.is_main:
        key = metric_key(method, "rw")
        evaluate_scores(ctx, ctx.run.rw_dir(method, role), role, key, f"{key}_{role}")


def stage_eval_pseudo_labels(ctx: RunContext, fingerprint: str, method: str, role: str) -> None:
    """The pseudo labels as written, and (without CRF) the random-walk scores at the
    pseudo-label threshold."""
    if not ctx.dist.is_main:
        return
    threshold = ctx.config.pseudo_labels.threshold
    nocrf = metric_key(method, "pseudo_labels_nocrf")
    evaluate_scores(ctx, ctx.run.rw_dir(method, role), role, nocrf, f"{nocrf}_{role}", (threshold,))
    key = metric_key(method, "pseudo_labels")
    evaluate_scores(ctx, ctx.run.pseudo_labels_dir(method, role), role, key, f"{key}_{role}")


# --- segmentation (stages 7-8) ----------------------------------------------------------

SEG_VARIANTS = {"weak": "deeplab_weak", "full": "deeplab_full"}


def segmenter_meta(ctx: RunContext) -> dict:
    """What a segmentation weights file needs to rebuild its model on its own."""
    config = ctx.config.train_seg
    return {
        "kind": "segmenter",
        "backbone": to_dict(dataclasses.replace(config.backbone, pretrained="none")),
        "head_norm": config.head_norm,
        "classes": list(ctx.split("train").classes),
    }


def stage_train_seg(ctx: RunContext, fingerprint: str, variant: str) -> None:
    config = segmenter_settings(ctx.config.train_seg, variant)  # the fingerprint's settings
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
        ctx.run.segmentation_dir(variant),
        fingerprint,
        ctx.dist,
        description=f"train-seg {variant}",
        section="train_seg",
        meta=segmenter_meta(ctx),
        progress=ctx.progress,
        sync_batchnorm=config.backbone.norm == "train",
    )


def stage_predict_eval(ctx: RunContext, fingerprint: str, variant: str) -> None:
    """The segmentation model on the val split, scored against its masks."""
    config = ctx.config.predict
    out_dir = ctx.run.predictions_dir(variant, "val")
    todo = _claim_todo(ctx, fingerprint, out_dir, ctx.split("val").samples, ".png")
    model, _ = load_segmenter(ctx.run.segmentation_dir(variant) / "model.pt", ctx.dist.device)
    crf = crf_iterations(config.crf_iterations if config.crf else 0, "predict", ctx.log)
    for sample, image in _each_image(todo, f"predict {variant}", ctx.progress):
        pixels = image.permute(1, 2, 0).numpy()
        labels = segment_arrays(model, [pixels], config, ctx.dist.device, crf)[0]
        save_label_png(id_path(out_dir, sample.image_id, ".png"), labels)
    barrier(ctx.dist)
    if ctx.dist.is_main:
        evaluate_scores(ctx, out_dir, "val", SEG_VARIANTS[variant], f"{SEG_VARIANTS[variant]}_val")
