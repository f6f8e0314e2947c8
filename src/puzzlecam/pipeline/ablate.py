"""The paper's Table 1 on any data set: the classifier trained with each combination of
loss terms, over several seeds, its CAMs scored on train and val. With ``refine`` (the
CLI's ``--rw``) also its Table 2: each classifier's CAMs through the random walk to
pseudo labels, with the run's refinement settings, scored the same way.

Every (variant, seed) is a sub-run of the pipeline up to the CAMs (or the pseudo labels)
in its own directory, so it is resumable and skipped when done, exactly like
``puzzlecam run``:

  ROOT/
    {variant}/seed{seed}/   a run directory (config.yaml, manifest.json, metrics.json ...)
    ablation.json           every seed's figures, and the mean and std per variant
    ablation.txt            the printed table
    ablation.png            the figure

The summary covers every finished sub-run in ROOT made with this invocation's settings,
not only the seeds and variants asked for now: ``--seeds 0`` after ``--seeds 0 1`` keeps
seed 1's figures. A sub-run made with other settings is left out (the log says so).
"""

from __future__ import annotations

import contextlib
import dataclasses
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from puzzlecam.errors import ConfigError, DataError, RunDirError
from puzzlecam.io import atomic_write, write_json
from puzzlecam.pipeline.branches import TABLE2_COLUMNS, Output, metric_key
from puzzlecam.pipeline.config import RunConfig
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.folders import folder_lock, refuse_foreign_folder
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.pipeline.runner import run_pipeline
from puzzlecam.training.distributed import DistContext

__all__ = [
    "ABLATION_MARKER",
    "check_ablation_root",
    "VARIANTS",
    "Variant",
    "variant_config",
    "run_ablation",
    "seed_figures",
    "sub_run_dir",
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
ABLATION_MARKER = ".puzzlecam-ablation"
"""The file that makes a folder an ablation's root (its sub-runs are run directories)."""
ROLES = ("train", "val")
METHOD = "puzzle_cam"  # the sub-runs' one classifier, whatever its terms
FIGURES = ("miou", "map")  # what the table reports per split
REFINED: tuple[tuple[Output, str], ...] = tuple(
    (output, title) for output, title in TABLE2_COLUMNS if output != "cams"
)
"""What ``refine`` adds per split: the paper's Table 2 columns after the CAMs (output,
whose mIoU is the figure of that name; title)."""


def variant_config(config: RunConfig, variant: str, seed: int, refine: bool = False) -> RunConfig:
    """``config`` with exactly ``variant``'s loss terms on, ``seed`` for the classifier,
    no plain-CAM baseline (the ``cls`` variant is that baseline) and the pipeline cut
    after the CAMs, or after the pseudo labels with ``refine``. Everything else, the
    puzzle schedule and the refinement included, stays as configured."""
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
        config,
        name=f"{config.name}-{variant}-seed{seed}",
        until="pseudo-labels" if refine else "cams",
        train_cls=train_cls,
    )


def sub_run_dir(root: Path, variant: str, seed: int) -> Path:
    return Path(root) / variant / f"seed{seed}"


def _mean_std(values: Sequence[float]) -> dict[str, float | None]:
    """Mean and sample std; one value has no std (None), not a spread of 0."""
    std = round(statistics.stdev(values), 2) if len(values) > 1 else None
    return {"mean": round(statistics.fmean(values), 2), "std": std}


def summarize(runs: dict[str, dict[int, dict[str, dict[str, float]]]]) -> dict[str, Any]:
    """Mean and std per variant, split and figure; and each seed's gain over ``cls``.

    runs: variant -> seed -> split -> {"miou": ..., "map": ...} (CAM mIoU, mAP), with
    ``"rw"`` and ``"pseudo_labels"`` (their mIoU) in refined runs. Keys: ``{split}_{figure}``
    (mean, std) and ``{split}_gain`` for the CAMs' gain, ``{split}_{output}_gain`` for the
    refined outputs'.
    """
    summary: dict[str, Any] = {}
    baseline = runs.get("cls", {})
    gained = {"miou": "gain", **{output: f"{output}_gain" for output, _ in REFINED}}
    for variant, seeds in runs.items():
        entry: dict[str, Any] = {"label": VARIANTS[variant].label, "seeds": seeds}
        for role in ROLES:
            for figure in (*FIGURES, *(output for output, _ in REFINED)):
                values = [s[role][figure] for s in seeds.values() if figure in s.get(role, {})]
                if values:
                    entry[f"{role}_{figure}"] = _mean_std(values)
            for figure, name in gained.items():
                gains = {
                    seed: round(s[role][figure] - baseline[seed][role][figure], 2)
                    for seed, s in seeds.items()
                    if variant != "cls"
                    and figure in s.get(role, {})
                    and figure in baseline.get(seed, {}).get(role, {})
                }
                if gains:
                    entry[f"{role}_{name}"] = {
                        "per_seed": gains,
                        **_mean_std(list(gains.values())),
                    }
        summary[variant] = entry
    return summary


def _spread(figure: dict[str, float | None]) -> str:
    return f"± {figure['std']:<3.1f}" if figure["std"] is not None else f"{'':<5}"


def _format_refined(summary: dict[str, Any]) -> list[str]:
    """Table 2's rows: per variant and split, each refined output's mIoU mean ± std, every
    seed's value and the mean gain over L_cls; none when no sub-run was refined."""
    lines = []
    for entry in summary.values():
        for role in ROLES:
            cells = []
            for output, _ in REFINED:
                if f"{role}_{output}" not in entry:
                    break
                figure = entry[f"{role}_{output}"]
                seeds = " ".join(
                    f"{s[role][output]:.1f}"
                    for s in entry["seeds"].values()
                    if output in s.get(role, {})
                )
                gain = entry.get(f"{role}_{output}_gain")
                cells.append(
                    f"  {figure['mean']:>8.1f} {_spread(figure)}  {seeds:<20}"
                    + (f"{gain['mean']:>+7.1f}" if gain else f"{'':>7}")
                )
            else:
                lines.append((f"{entry['label']:<24}{role:<7}" + "".join(cells)).rstrip())
    if not lines:
        return []
    titles = "".join(f"  {title:>14}  {'per seed':<20}{'gain':>7}" for _, title in REFINED)
    return [
        "",
        "Table 2: each variant's CAMs refined (mIoU)",
        f"{'variant':<24}{'split':<7}{titles}",
        *lines,
    ]


def format_ablation(summary: dict[str, Any]) -> str:
    """One table: per variant and split the CAM mIoU mean ± std, every seed's value, the
    gain over L_cls (mean, and the smallest seed's), and the classifier's mAP; then, for
    refined runs, the random walk's and the pseudo labels' (the paper's Table 2)."""
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
            lines.append(
                f"{entry['label']:<24}{role:<7}{miou['mean']:>8.1f} {_spread(miou)}  "
                f"{seeds:<20}{gain_text}{low}{entry[f'{role}_map']['mean']:>7.1f}"
            )
    return "\n".join([*lines, *_format_refined(summary)])


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


def seed_figures(metrics: dict[str, Any], refine: bool) -> dict[str, dict[str, float]]:
    """A sub-run's figures per split: CAM mIoU and mAP, and its refined outputs' mIoU."""
    cams = metrics.get(METHOD, {})
    figures = {
        role: {figure: float(cams[role][figure]) for figure in FIGURES}
        for role in ROLES
        if role in cams and all(f in cams[role] for f in FIGURES)
    }
    for output, _ in REFINED if refine else ():
        scores = metrics.get(metric_key(METHOD, output), {})
        for role in figures:
            if "miou" in scores.get(role, {}):
                figures[role][output] = float(scores[role]["miou"])
    return figures


_SEED_DIR = re.compile(r"seed(-?\d+)")

Runs = dict[str, dict[int, dict[str, dict[str, float]]]]
"""variant -> seed -> split -> figures, as ``summarize`` takes them."""


def _finished(figures: dict[str, dict[str, float]], refine: bool) -> bool:
    """Both splits hold the CAM figures (and, refined, every refined output's mIoU)."""
    wanted = (*FIGURES, *(output for output, _ in REFINED if refine))
    return all(role in figures and all(f in figures[role] for f in wanted) for role in ROLES)


def _earlier_runs(
    config: RunConfig, root: Path, refine: bool, done: Runs, log: Callable[[str], None]
) -> Runs:
    """The finished sub-runs in ``root`` not in ``done`` whose config is the one this
    invocation would give their (variant, seed): their figures are still this ablation's.
    Others are left out, with a line each in the log saying why."""
    found: Runs = {}
    for variant in VARIANTS:
        folders = (root / variant).glob("seed*") if (root / variant).is_dir() else ()
        for folder in sorted(folders):
            match = _SEED_DIR.fullmatch(folder.name)
            if not match or int(match[1]) in done.get(variant, {}):
                continue
            seed = int(match[1])
            wanted = variant_config(config, variant, seed, refine)
            figures, reason = _read_sub_run(RunDir(folder), wanted, refine)
            if reason is None:
                found.setdefault(variant, {})[seed] = figures
            else:
                log(f"ablation: {folder} left out of the summary: {reason}")
    return found


def _read_sub_run(
    run: RunDir, wanted: RunConfig, refine: bool
) -> tuple[dict[str, dict[str, float]], str | None]:
    """A sub-run's figures, and why they do not count (None when they do): it is not a
    run of ``wanted`` (compared as ``RunDir.bind`` compares: unfingerprinted settings
    such as ``device`` do not count), or it has not scored both splits yet."""
    if not run.config_path.is_file():
        return {}, "no config.yaml"
    try:
        changed = run.changed_settings(wanted)
    except (ConfigError, RunDirError) as error:
        return {}, f"unreadable config ({error})"
    if changed:
        return {}, "made with other settings (" + "; ".join(changed[:6]) + ")"
    try:
        figures = seed_figures(run.metrics(), refine)
    except DataError as error:
        return {}, str(error)
    if not _finished(figures, refine):
        return {}, "not finished (rerun with this seed and variant to finish it)"
    return figures, None


def _ordered(runs: Runs) -> Runs:
    """Variants in Table 1's order, seeds ascending: the summary does not depend on the
    order of the command line nor on which seeds ran in this invocation."""
    return {variant: dict(sorted(runs[variant].items())) for variant in VARIANTS if variant in runs}


def run_ablation(
    config: RunConfig,
    root: Path,
    variants: Sequence[str] = tuple(VARIANTS),
    seeds: Sequence[int] = (0, 1, 2),
    dist: DistContext | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    refine: bool = False,
) -> dict[str, Any]:
    """Train and evaluate every (variant, seed) not done yet; write and return the summary
    of these and of every other finished sub-run in ``root`` made with the same settings.
    ``refine``: also the random walk and pseudo labels of each (the paper's Table 2)."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ConfigError(f"ablation variants must be among {list(VARIANTS)}, got {unknown}")
    if not seeds:
        raise ConfigError("ablation needs at least one seed")
    dist = dist or DistContext()
    root = Path(root)
    if not dist.is_main:
        return _run_all(config, root, variants, seeds, dist, progress, log, refine)
    check_ablation_root(root)
    with folder_lock(root, "ablation"):
        if not (root / ABLATION_MARKER).is_file():
            write_json(root / ABLATION_MARKER, {"puzzlecam": "ablation", "version": 1})
        return _run_all(config, root, variants, seeds, dist, progress, log, refine)


def check_ablation_root(root: Path) -> None:
    """Refuse, before anything is written, a root that is neither new, empty nor an
    ablation's (its marker, or from before the marker: ablation.json or a sub-run)."""
    owned = root.is_dir() and (
        (root / ABLATION_MARKER).is_file()
        or (root / "ablation.json").is_file()
        or any(RunDir(folder).is_run() for v in VARIANTS for folder in (root / v).glob("seed*"))
    )
    refuse_foreign_folder(root, owned, "ablation folder", ABLATION_MARKER)


def _run_all(
    config: RunConfig,
    root: Path,
    variants: Sequence[str],
    seeds: Sequence[int],
    dist: DistContext,
    progress: bool,
    log: Callable[[str], None],
    refine: bool,
) -> dict[str, Any]:
    """``run_ablation``'s work, the root checked and (on the main process) locked."""
    runs: Runs = {}
    for variant in variants:
        for seed in seeds:
            sub_config = variant_config(config, variant, seed, refine)
            run = RunDir(sub_run_dir(root, variant, seed))
            with run.lock() if dist.is_main else contextlib.nullcontext():
                if dist.is_main:
                    run.bind(sub_config)
                    log(f"== ablation {variant} seed {seed}: {run.root}")
                run_pipeline(RunContext(sub_config, run, dist, progress))
            runs.setdefault(variant, {})[seed] = seed_figures(run.metrics(), refine)
    # the ablation.json of an earlier invocation is rewritten: its finished seeds stay in it
    earlier = _earlier_runs(config, root, refine, runs, log if dist.is_main else lambda _: None)
    for variant, found in earlier.items():
        runs.setdefault(variant, {}).update(found)
    summary = summarize(_ordered(runs))
    if dist.is_main:
        write_json(root / "ablation.json", summary)
        table = format_ablation(summary)
        with atomic_write(root / "ablation.txt") as handle:
            handle.write((table + "\n").encode("utf-8"))
        _figure(summary, root / "ablation.png")
    return summary
