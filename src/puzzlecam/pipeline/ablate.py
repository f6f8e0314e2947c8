"""The paper's Table 1 on any data set: the classifier trained with each combination of
loss terms, over several seeds, its CAMs scored on train and val.

Every (variant, seed) is a sub-run of the pipeline up to the CAMs in its own directory,
so it is resumable and skipped when done, exactly like ``puzzlecam run``:

  ROOT/
    {variant}/seed{seed}/   a run directory (config.yaml, manifest.json, metrics.json ...)
    ablation.json           every seed's figures, and the mean and std per variant
    ablation.txt            the printed table
    ablation.png            the figure
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from puzzlecam.errors import ConfigError
from puzzlecam.io import atomic_write, write_json
from puzzlecam.pipeline.config import RunConfig
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.pipeline.runner import run_pipeline
from puzzlecam.training.distributed import DistContext

__all__ = [
    "VARIANTS",
    "Variant",
    "variant_config",
    "run_ablation",
    "summarize",
    "format_ablation",
]


@dataclass(frozen=True)
class Variant:
    key: str
    label: str  # as in the paper's Table 1
    puzzle_classification: bool
    reconstruction: bool


VARIANTS: dict[str, Variant] = {
    v.key: v
    for v in (
        Variant("cls", "L_cls", False, False),
        Variant("pcls", "L_cls + L_p-cls", True, False),
        Variant("re", "L_cls + L_re", False, True),
        Variant("all", "L_cls + L_p-cls + L_re", True, True),
    )
}
ROLES = ("train", "val")
METHOD = "puzzle_cam"  # the sub-runs' one classifier, whatever its terms
FIGURES = ("miou", "map")  # what the table reports per split


def variant_config(config: RunConfig, variant: str, seed: int) -> RunConfig:
    """``config`` with exactly ``variant``'s loss terms on, ``seed`` for the classifier,
    no plain-CAM baseline (the ``cls`` variant is that baseline) and the pipeline cut
    after the CAMs. Everything else, the puzzle schedule included, stays as configured."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown ablation variant '{variant}'; choose from {list(VARIANTS)}")
    terms = VARIANTS[variant]
    train_cls = config.train_cls
    train_cls = dataclasses.replace(
        train_cls,
        baseline_plain_cam=False,
        puzzle=dataclasses.replace(
            train_cls.puzzle,
            puzzle_classification=terms.puzzle_classification,
            reconstruction=terms.reconstruction,
        ),
        loop=dataclasses.replace(train_cls.loop, seed=seed),
    )
    return dataclasses.replace(
        config, name=f"{config.name}-{variant}-seed{seed}", until="cams", train_cls=train_cls
    )


def sub_run_dir(root: Path, variant: str, seed: int) -> Path:
    return Path(root) / variant / f"seed{seed}"


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
    """Mean and sample std; one value has no std (None), not a spread of 0."""
    std = round(statistics.stdev(values), 2) if len(values) > 1 else None
    return {"mean": round(statistics.fmean(values), 2), "std": std}


def summarize(runs: dict[str, dict[int, dict[str, dict[str, float]]]]) -> dict[str, Any]:
    """Mean and std per variant, split and figure; and each seed's gain over ``cls``.

    runs: variant -> seed -> split -> {"miou": ..., "map": ...}.
    """
    summary: dict[str, Any] = {}
    baseline = runs.get("cls", {})
    for variant, seeds in runs.items():
        entry: dict[str, Any] = {"label": VARIANTS[variant].label, "seeds": seeds}
        for role in ROLES:
            for figure in FIGURES:
                values = [s[role][figure] for s in seeds.values() if role in s]
                if values:
                    entry[f"{role}_{figure}"] = _mean_std(values)
            gains = {
                seed: round(s[role]["miou"] - baseline[seed][role]["miou"], 2)
                for seed, s in seeds.items()
                if variant != "cls" and role in s and role in baseline.get(seed, {})
            }
            if gains:
                entry[f"{role}_gain"] = {"per_seed": gains, **_mean_std(list(gains.values()))}
        summary[variant] = entry
    return summary


def format_ablation(summary: dict[str, Any]) -> str:
    """One table: per variant and split the CAM mIoU mean ± std, every seed's value, the
    gain over L_cls (mean, and the smallest seed's), and the classifier's mAP."""
    lines = [
        f"{'variant':<24}{'split':<7}{'CAM mIoU':>14}  {'per seed':<20}{'gain':>7}{'min':>7}"
        f"{'mAP':>7}"
    ]
    for entry in summary.values():
        for role in ROLES:
            if f"{role}_miou" not in entry:
                continue
            miou = entry[f"{role}_miou"]
            seeds = " ".join(f"{s[role]['miou']:.1f}" for s in entry["seeds"].values())
            gain = entry.get(f"{role}_gain")
            gain_text = f"{gain['mean']:>+7.1f}" if gain else f"{'':>7}"
            low = f"{min(gain['per_seed'].values()):>+7.1f}" if gain else f"{'':>7}"
            spread = f"± {miou['std']:<3.1f}" if miou["std"] is not None else f"{'':<5}"
            lines.append(
                f"{entry['label']:<24}{role:<7}{miou['mean']:>8.1f} {spread}  "
                f"{seeds:<20}{gain_text}{low}{entry[f'{role}_map']['mean']:>7.1f}"
            )
    return "\n".join(lines)


def _figure(summary: dict[str, Any], path: Path) -> None:
    """Bars: mean CAM mIoU per variant, one panel per split, every seed as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ROLES), figsize=(4.2 * len(ROLES), 3.4), sharey=True)
    for ax, role in zip(axes, ROLES, strict=True):
        labels, means, stds = [], [], []
        for entry in summary.values():
            if f"{role}_miou" not in entry:
                continue
            values = [s[role]["miou"] for s in entry["seeds"].values()]
            # the dots go over this entry's bar: its position among the bars drawn
            ax.plot([len(means)] * len(values), values, "o", color="black", markersize=3, zorder=3)
            labels.append(entry["label"].replace(" + ", "\n+ "))
            means.append(entry[f"{role}_miou"]["mean"])
            stds.append(entry[f"{role}_miou"]["std"] or 0.0)
        ax.bar(range(len(means)), means, yerr=stds, color="#7aa6c2", capsize=3)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(f"CAM mIoU, {role}")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    with atomic_write(path) as handle:
        fig.savefig(handle, format="png", dpi=110)
    plt.close(fig)


def run_ablation(
    config: RunConfig,
    root: Path,
    variants: Sequence[str] = tuple(VARIANTS),
    seeds: Sequence[int] = (0, 1, 2),
    dist: DistContext | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train and evaluate every (variant, seed) not done yet; write and return the summary."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"ablation variants must be among {list(VARIANTS)}, got {unknown}")
    if not seeds:
        raise ConfigError("ablation needs at least one seed")
    dist = dist or DistContext()
    root = Path(root)
    runs: dict[str, dict[int, dict[str, dict[str, float]]]] = {}
    for variant in variants:
        for seed in seeds:
            sub_config = variant_config(config, variant, seed)
            run = RunDir(sub_run_dir(root, variant, seed))
            if dist.is_main:
                run.bind(sub_config)
            if dist.is_main:
                log(f"== ablation {variant} seed {seed}: {run.root}")
            run_pipeline(RunContext(sub_config, run, dist, progress))
            metrics = run.metrics().get(METHOD, {})
            runs.setdefault(variant, {})[seed] = {
                role: {figure: float(metrics[role][figure]) for figure in FIGURES}
                for role in ROLES
                if role in metrics and all(f in metrics[role] for f in FIGURES)
            }
    summary = summarize(runs)
    if dist.is_main:
        write_json(root / "ablation.json", summary)
        table = format_ablation(summary)
        with atomic_write(root / "ablation.txt") as handle:
            handle.write((table + "\n").encode("utf-8"))
        _figure(summary, root / "ablation.png")
    return summary
