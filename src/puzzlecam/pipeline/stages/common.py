"""What several stage kinds share: the rule that leaves a stage out of a run, evaluation
stage records, scoring a folder of predictions, and the per-image stages' bookkeeping."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from puzzlecam.data.datasets import InferenceDataset
from puzzlecam.data.ids import id_path
from puzzlecam.data.loader import CheckedLoader
from puzzlecam.data.samples import Sample
from puzzlecam.metrics.evaluate import evaluate_directory, format_table, write_result
from puzzlecam.models.backbone import BackboneConfig, backbone_normalization
from puzzlecam.pipeline.config import UNTIL_PHASES, RunConfig
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.folders import claim_output_dir
from puzzlecam.pipeline.kinds import EVAL_GROUP, Score, Stage, kind_of
from puzzlecam.training.distributed import barrier, shard
from puzzlecam.training.loop import fit

__all__ = [
    "left_out",
    "score",
    "evaluation",
    "fit_stage",
    "inference_net",
    "pad_value",
    "evaluate_scores",
    "claim_todo",
    "each_image",
]


def left_out(config: RunConfig, phase: str, method: str = "", variant: str = "") -> str:
    """Why ``config`` has no stage of ``phase`` (an ``until`` value) for ``method`` /
    ``variant`` ("" if it has)."""
    if method == "plain_cam" and not config.train_cls.baseline_plain_cam:
        return "no plain-CAM baseline: train_cls.baseline_plain_cam is false"
    if UNTIL_PHASES.index(phase) > UNTIL_PHASES.index(config.until):
        after = "the CAMs" if config.until == "cams" else "the pseudo labels"
        return f"it stops after {after}: until: {config.until}"
    if variant == "full" and not config.train_seg.fully_supervised:
        return "no fully supervised model: train_seg.fully_supervised is false"
    return ""


def score(key: str, split: str, prefix: str = "") -> Score:
    """The Score of metrics key ``key`` on ``split``, in eval/{prefix}{key}_{split}.json
    (the CAMs' carry a ``cams_`` prefix: the names runs have)."""
    return Score(key, split, f"{prefix}{key}_{split}")


def evaluation(kind: str, of: Stage, settings: Any, scores: tuple[Score, ...]) -> Stage:
    """The evaluation stage ``eval/{of.name}`` of the outputs of ``of``."""
    return Stage(
        f"eval/{of.name}", kind, settings, inputs=(of.name,), reads=(of.role,), method=of.method,
        variant=of.variant, role=of.role, group=EVAL_GROUP, label="Evaluation", scores=scores,
    )  # fmt: skip


def fit_stage(
    ctx: RunContext,
    stage: Stage,
    fingerprint: str,
    trainer: Any,
    dataset: Any,
    groups: list[dict[str, Any]],
    meta: dict[str, Any],
    sync_batchnorm: bool = False,
    **fork: Any,
) -> None:
    """Train a training stage's model with ``training.fit``, on its settings section
    (``StageKind.trains``), into its folder; ``meta`` goes into the weights file; ``fork``:
    ``fit``'s ``snapshot`` and ``start_from``."""
    section = kind_of(stage).trains
    config = stage.config[section]
    fit(
        trainer,
        dataset,
        groups,
        config.optim,
        config.loop,
        stage.folder(ctx.run),
        fingerprint,
        ctx.dist,
        description=f"{stage.kind} {stage.method or stage.variant}",
        section=section,
        meta=meta,
        progress=ctx.progress,
        sync_batchnorm=sync_batchnorm,
        **fork,
    )


def inference_net(
    ctx: RunContext, make: Callable[[str, Path], Any], folder: Path, batched: bool = True
) -> Any:
    """The trained model of ``folder`` as the run's engine runs it: ``make(engine,
    graph_path)`` (e.g. ``cams.inference.classifier_net`` with the model bound), its graph
    exported by the main process while the others wait. A stage that runs one image at a
    time (``batched`` false) keeps PyTorch under ``engine: auto``: there the engines'
    per-call overhead lost to PyTorch on the demo's models (E51); a named engine runs it."""
    engine = ctx.engine if batched or ctx.config.engine != "auto" else "torch"
    path = ctx.run.graph_path(folder)
    if engine == "torch" or ctx.dist.is_main:
        net = make(engine, path)
    barrier(ctx.dist)
    return net if engine == "torch" or ctx.dist.is_main else make(engine, path)


def pad_value(backbone: BackboneConfig) -> tuple[int, int, int]:
    """The backbone's mean colour in 0..255: zero after normalisation, the crop padding."""
    mean, _ = backbone_normalization(backbone.name)
    return tuple(round(255 * m) for m in mean)  # type: ignore[return-value]


def evaluate_scores(
    ctx: RunContext, pred_dir: Path, score: Score, thresholds: Sequence[float]
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
        tuple(thresholds),
        progress=ctx.progress,
    )
    write_result(path, result)
    summary = result.to_dict()
    values = {k: summary[k] for k in ("miou", "threshold", "fp", "fn", "num_images")}
    ctx.run.add_metrics(key, role, values)
    ctx.log(format_table(result, split.classes))
    return summary


def claim_todo(
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


def each_image(
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
