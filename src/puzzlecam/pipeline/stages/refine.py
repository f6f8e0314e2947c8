"""The random-walk refinement of each CAM branch, with the same settings for every branch
(the paper's Table 2): confident affinity labels from the CAMs, AffinityNet trained on
them, the random walk of the CAMs over its affinities, and the pseudo labels; the random
walk's scores and the pseudo labels evaluated."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import torch

from puzzlecam.affinity.inference import boundary_map, boundary_net, refine_scores
from puzzlecam.affinity.label_maps import confident_labels, pseudo_labels
from puzzlecam.affinity.trainer import AffinityTrainer
from puzzlecam.cams.scores import ScoreMaps, load_scores, save_scores
from puzzlecam.crf import crf_iterations
from puzzlecam.data.datasets import SegmentationDataset
from puzzlecam.data.ids import id_path
from puzzlecam.data.samples import Sample
from puzzlecam.errors import DataError
from puzzlecam.io import load_image, save_label_png
from puzzlecam.models.affinitynet import AffinityNet
from puzzlecam.parallel import default_workers, map_images
from puzzlecam.pipeline.branches import (
    BRANCH_SCORES,
    METHOD_NAMES,
    METHODS,
    branch_suffix,
    metric_key,
)
from puzzlecam.pipeline.config import RunConfig
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.kinds import ROLES, Picture, Stage, StageKind
from puzzlecam.pipeline.stages.common import (
    claim_todo,
    each_image,
    evaluate_scores,
    evaluation,
    fit_stage,
    inference_net,
    left_out,
    pad_value,
    score,
)
from puzzlecam.pipeline.trained import load_affinitynet
from puzzlecam.training.optim import parameter_groups

__all__ = [
    "KINDS",
    "stage_affinity_labels",
    "stage_train_aff",
    "stage_rw",
    "stage_eval_rw",
    "stage_pseudo_labels",
    "stage_eval_pseudo_labels",
]


_MODELS = {
    "puzzle_cam": "AffinityNet on Puzzle-CAM labels",
    "plain_cam": "AffinityNet on plain-CAM labels",
}


def _affinity_label_job(
    sample: Sample, cams_dir: Path, out_dir: Path, fg: float, bg: float, crf: int
) -> None:
    image = np.asarray(load_image(sample.image_path))
    cams_path = id_path(cams_dir, sample.image_id, ".npz")
    maps = load_scores(cams_path)
    scores = maps.scores.astype(np.float32)
    if scores.shape[1:] != image.shape[:2]:
        raise DataError(cams_path, f"CAMs are {scores.shape[1:]}, the image {image.shape[:2]}")
    save_label_png(
        id_path(out_dir, sample.image_id, ".png"),
        confident_labels(image, scores, maps.keys, fg, bg, crf),
    )


def stage_affinity_labels(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """Confident fg / bg / ignore labels of the train images from a branch's CAMs."""
    config, method, role = stage.config["affinity_labels"], stage.method, stage.role
    out_dir = stage.folder(ctx.run)
    todo = claim_todo(ctx, fingerprint, out_dir, ctx.split(role).samples, ".png")
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
    config, method = stage.config["train_aff"], stage.method
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
    trainer = AffinityTrainer(model, config.radius)
    meta = {"radius": config.radius, "method": method}
    fit_stage(ctx, stage, fingerprint, trainer, dataset, groups, meta)


def stage_rw(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """A branch's CAMs of a split refined by the random walk over its own AffinityNet."""
    config, method, role = stage.config["rw"], stage.method, stage.role
    out_dir = stage.folder(ctx.run)
    todo = claim_todo(ctx, fingerprint, out_dir, ctx.split(role).samples, ".npz")
    cams_dir = ctx.run.cams_dir(method, role)
    device = ctx.dist.device
    model = load_affinitynet(ctx.run, ctx.config, method, device)
    net = inference_net(
        ctx, partial(boundary_net, model), ctx.run.affinity_dir(method), batched=False
    )
    for sample, image in each_image(todo, f"rw {method}/{role}", ctx.progress):
        cams_path = id_path(cams_dir, sample.image_id, ".npz")
        maps = load_scores(cams_path)
        if maps.scores_stride4 is None:
            raise DataError(cams_path, "score file has no stride-4 CAMs for the random walk")
        boundary = boundary_map(net, image.to(device))
        cams = torch.from_numpy(maps.scores_stride4.astype(np.float32)).to(device)
        refined = refine_scores(
            cams, boundary, tuple(image.shape[-2:]), config.beta, config.exp_times, config.radius
        )
        save_scores(
            id_path(out_dir, sample.image_id, ".npz"), ScoreMaps(maps.keys, refined.cpu().numpy())
        )
    ctx.log(f"rw {method}/{role}: {len(todo)} written to {out_dir}")


def stage_eval_rw(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    if ctx.dist.is_main:
        (rw,) = stage.scores
        evaluate_scores(ctx, ctx.run.rw_dir(stage.method, stage.role), rw, stage.config.thresholds)


def _pseudo_label_job(
    sample: Sample, rw_dir: Path, out_dir: Path, threshold: float, crf: int
) -> None:
    image = np.asarray(load_image(sample.image_path))
    maps = load_scores(id_path(rw_dir, sample.image_id, ".npz"))
    labels = pseudo_labels(image, maps.scores.astype(np.float32), maps.keys, threshold, crf)
    save_label_png(id_path(out_dir, sample.image_id, ".png"), labels)


def stage_pseudo_labels(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """Pseudo labels of a split from a branch's random-walk scores (dense CRF when on)."""
    config, method, role = stage.config["pseudo_labels"], stage.method, stage.role
    out_dir = stage.folder(ctx.run)
    todo = claim_todo(ctx, fingerprint, out_dir, ctx.split(role).samples, ".png")
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


def stage_eval_pseudo_labels(ctx: RunContext, stage: Stage, fingerprint: str) -> None:
    """(Without CRF) the random-walk scores at the pseudo-label threshold, and the pseudo
    labels as written."""
    if not ctx.dist.is_main:
        return
    method, role, (nocrf, labels) = stage.method, stage.role, stage.scores
    thresholds = stage.config["eval"].thresholds
    evaluate_scores(ctx, ctx.run.rw_dir(method, role), nocrf, (stage.config["threshold"],))
    evaluate_scores(ctx, ctx.run.pseudo_labels_dir(method, role), labels, thresholds)


# --- the stage records of each config --------------------------------------------------------


def _each_branch(config: RunConfig) -> Iterator[tuple[str, str, str]]:
    """(why the config leaves the branch's refinement out or "", branch, its name)."""
    for method in METHODS:
        yield left_out(config, "pseudo-labels", method), method, METHOD_NAMES[method]


def _plan_affinity_labels(config: RunConfig) -> Iterator[tuple[str, Stage]]:
    for why, method, name in _each_branch(config):
        labels = f"affinity_labels/{method}"
        yield why, Stage(
            labels, "affinity-labels", {"affinity_labels": config.affinity_labels, "method": method},
            inputs=(f"cams/{method}/train",), reads=("train",), method=method, role="train",
            group=labels, label=f"Affinity labels: {name}",
        )  # fmt: skip


def _plan_train_aff(config: RunConfig) -> Iterator[tuple[str, Stage]]:
    for why, method, name in _each_branch(config):
        aff = f"train_aff/{method}"
        yield why, Stage(
            aff, "train-aff", {"train_aff": config.train_aff, "method": method},
            inputs=(f"affinity_labels/{method}",), reads=("train",), method=method, group=aff,
            label=f"Train AffinityNet: {name}", model=_MODELS[method],
        )  # fmt: skip


def _rw(config: RunConfig, method: str, role: str) -> Stage:
    return Stage(
        f"rw/{method}/{role}", "rw", {"rw": config.rw, "method": method, "role": role},
        inputs=(f"train_aff/{method}", f"cams/{method}/{role}"), reads=(role,), method=method,
        role=role, group=f"rw/{method}", label=f"Random walk: {METHOD_NAMES[method]}",
    )  # fmt: skip


def _pseudo_labels(config: RunConfig, method: str, role: str) -> Stage:
    settings = {"pseudo_labels": config.pseudo_labels, "method": method, "role": role}
    return Stage(
        f"pseudo_labels/{method}/{role}", "pseudo-labels", settings,
        inputs=(f"rw/{method}/{role}",), reads=(role,), method=method, role=role,
        group=f"pseudo_labels/{method}", label=f"Pseudo labels: {METHOD_NAMES[method]}",
    )  # fmt: skip


def _plan_rw(config: RunConfig) -> Iterator[tuple[str, Stage]]:
    for why, method, _ in _each_branch(config):
        for role in ROLES:
            yield why, _rw(config, method, role)


def _plan_eval_rw(config: RunConfig) -> Iterator[tuple[str, Stage]]:
    for why, method, _ in _each_branch(config):
        for role in ROLES:
            rw = score(metric_key(method, "rw"), role)
            yield why, evaluation("eval-rw", _rw(config, method, role), config.eval, (rw,))


def _plan_pseudo_labels(config: RunConfig) -> Iterator[tuple[str, Stage]]:
    for why, method, _ in _each_branch(config):
        for role in ROLES:
            yield why, _pseudo_labels(config, method, role)


def _plan_eval_pseudo_labels(config: RunConfig) -> Iterator[tuple[str, Stage]]:
    # the scores without CRF are taken at the pseudo labels' threshold: a setting it reads
    settings = {"eval": config.eval, "threshold": config.pseudo_labels.threshold}
    for why, method, _ in _each_branch(config):
        for role in ROLES:
            scores = tuple(
                score(metric_key(method, output), role)
                for output in ("pseudo_labels_nocrf", "pseudo_labels")
            )
            of = _pseudo_labels(config, method, role)
            yield why, evaluation("eval-pseudo-labels", of, settings, scores)


def _scored(*outputs: str) -> tuple:
    return tuple(m for m in BRANCH_SCORES if m.output in outputs)


KINDS = (
    StageKind(
        "affinity-labels",
        command="affinity-labels",
        help="confident fg/bg/ignore labels from the CAMs (dense CRF)",
        plan=_plan_affinity_labels,
        run=stage_affinity_labels,
        outputs=lambda run, stage: (run.affinity_labels_dir(stage.method, stage.role),),
        picture=Picture(lambda stage: f"Affinity label{branch_suffix(stage.method)}", "labels"),
    ),
    StageKind(
        "train-aff",
        command="train-aff",
        help="train AffinityNet on the affinity labels",
        plan=_plan_train_aff,
        run=stage_train_aff,
        outputs=lambda run, stage: (run.affinity_dir(stage.method),),
        trains="train_aff",
        build=lambda settings: AffinityNet(settings.backbone),
    ),
    StageKind(
        "rw",
        command="rw",
        help="random walk of the CAMs over the learned affinities",
        plan=_plan_rw,
        run=stage_rw,
        outputs=lambda run, stage: (run.rw_dir(stage.method, stage.role),),
        picture=Picture(lambda stage: f"Random walk{branch_suffix(stage.method)}", "scores"),
    ),
    StageKind(
        "eval-rw",
        command="rw",
        help="",
        plan=_plan_eval_rw,
        run=stage_eval_rw,
        metrics=_scored("rw"),
    ),
    StageKind(
        "pseudo-labels",
        command="pseudo-labels",
        help="pseudo labels from the random-walk scores",
        plan=_plan_pseudo_labels,
        run=stage_pseudo_labels,
        outputs=lambda run, stage: (run.pseudo_labels_dir(stage.method, stage.role),),
        picture=Picture(lambda stage: f"Pseudo label{branch_suffix(stage.method)}", "labels"),
    ),
    StageKind(
        "eval-pseudo-labels",
        command="pseudo-labels",
        help="",
        plan=_plan_eval_pseudo_labels,
        run=stage_eval_pseudo_labels,
        metrics=_scored("pseudo_labels_nocrf", "pseudo_labels"),
    ),
)
