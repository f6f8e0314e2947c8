"""The report's pictures, drawn with matplotlib's object API (no pyplot: no global state,
no display needed) and saved as PNG files beside the page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image

from puzzlecam.pipeline.report.collect import (
    ClassScores,
    Sweep,
    metric_label,
    table_metrics,
)
from puzzlecam.pipeline.report.text import duration, fmt, plural

__all__ = ["save_rgb", "colourbar", "threshold_figure", "per_class_figure", "loss_figure"]

_DPI = 100
# numbers in a training log that are not losses
_NOT_LOSSES = {"step", "epoch", "lr", "images_per_s", "seconds", "type", "alpha", "nonfinite_steps"}


def _colour(key: str, index: int) -> Any:
    colours = {m.key: m.colour for m in table_metrics()}
    return colours[key] if key in colours else colormaps["tab10"](index % 10)


def _save_figure(figure: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=_DPI, facecolor="white")


def save_rgb(array: np.ndarray, path: Path) -> None:
    """An (H, W, 3) uint8 array as a PNG file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG", optimize=True)


def colourbar(path: Path) -> None:
    """The jet colour scale of the heat maps, as a thin strip."""
    ramp = colormaps["jet"](np.linspace(0, 1, 256))[None, :, :3]  # (1, 256, 3)
    save_rgb((np.repeat(ramp, 14, axis=0) * 255).round().astype(np.uint8), path)


def threshold_figure(
    curves: dict[str, list[tuple[str, Sweep]]], pseudo_threshold: float | None, path: Path
) -> None:
    """mIoU against the background threshold, one panel per split (``curves``: split ->
    [(method, sweep)] in pipeline order), the best point of each curve starred; the pseudo labels'
    threshold marked where a random walk is shown."""
    splits = list(curves)
    figure = Figure(figsize=(6.2 * len(splits), 5.4), layout="constrained")
    axes = figure.subplots(1, len(splits), sharey=True, squeeze=False)[0]
    for ax, split in zip(axes, splits, strict=True):
        for index, (method, sweep) in enumerate(curves[split]):
            xs = [p["threshold"] for p in sweep]
            ys = [p["miou"] for p in sweep]
            best = int(np.argmax(ys))
            colour = _colour(method, index)
            label = f"{metric_label(method)} (best {ys[best]:.1f} at {xs[best]:.2f})"
            ax.plot(xs, ys, color=colour, linewidth=2, label=label)
            ax.plot(
                xs[best],
                ys[best],
                marker="*",
                markersize=14,
                color=colour,
                markeredgecolor="black",
                markeredgewidth=0.6,
                linestyle="none",
            )
        if pseudo_threshold is not None and any(m == "rw" for m, _ in curves[split]):
            ax.axvline(pseudo_threshold, color="#2ca02c", linestyle=":", linewidth=1.2)
            ax.text(
                pseudo_threshold,
                0.03,
                " pseudo-label threshold",
                transform=ax.get_xaxis_transform(),
                rotation=90,
                va="bottom",
                ha="right",
                color="#2ca02c",
                fontsize=9,
            )
        ax.set_title(f"{split} split", fontsize=13)
        ax.set_xlabel("background threshold", fontsize=11)
        ax.set_xlim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=10, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False)
    axes[0].set_ylabel("mIoU (%)", fontsize=11)
    figure.suptitle("mIoU vs background threshold (★ = best)", fontsize=14)
    _save_figure(figure, path)


def per_class_figure(names: list[str], table: list[ClassScores], path: Path) -> None:
    """IoU per class, one bar per method; horizontal when there are many classes."""
    count, bars = len(names), len(table)
    horizontal = count > 30
    width = 0.8 / bars
    long_side = min(60.0, max(12.0, 0.09 * count * bars + 2))
    size = (12.0, long_side * 0.8) if horizontal else (long_side, 5.6)
    figure = Figure(figsize=size, layout="constrained")
    ax = figure.add_subplot()
    positions = np.arange(count)
    for index, scores in enumerate(table):
        heights = [v if isinstance(v, (int, float)) else 0.0 for v in scores.ious]
        offset = positions - 0.4 + width * (index + 0.5)
        label = f"{metric_label(scores.method)} ({fmt(scores.miou, 1)})"
        bar = ax.barh if horizontal else ax.bar
        bar(offset, heights, width, label=label, color=_colour(scores.method, index))
    if horizontal:
        ax.set_yticks(positions, names, fontsize=9)
        ax.set_ylim(count - 0.4, -0.6)  # first class on top
        ax.tick_params(axis="x", labeltop=True)  # a long figure: IoU scale on both ends
        ax.set_xlabel("IoU (%)", fontsize=11)
        ax.set_xlim(0, 100)
        ax.grid(axis="x", alpha=0.3)
    else:
        slanted = count > 8
        ax.set_xticks(
            positions,
            names,
            rotation=35 if slanted else 0,
            ha="right" if slanted else "center",
            fontsize=10,
        )
        ax.set_ylabel("IoU (%)", fontsize=11)
        ax.set_ylim(0, 100)
        ax.set_xlim(-0.6, count - 0.4)
        ax.grid(axis="y", alpha=0.3)
    # the legend beside the axes, where the constrained layout makes room for all of it:
    # above the bars of a long horizontal figure, else under the class names
    figure.legend(
        *ax.get_legend_handles_labels(),
        fontsize=10,
        ncols=min(bars, max(1, int(size[0] // 3.8))),  # a column's label: about 3.6 inches
        loc="outside upper center" if horizontal else "outside lower center",
        frameon=False,
        title="method (val mIoU)",
    )
    figure.suptitle("Per-class IoU on the val split", fontsize=14)
    _save_figure(figure, path)


def loss_figure(records: list[dict[str, Any]], title: str, path: Path) -> str:
    """Loss and its parts by step from a training log (metrics.jsonl); returns a caption."""
    steps = [r for r in records if r.get("type") != "epoch"]
    epochs = [r for r in records if r.get("type") == "epoch"]
    points = steps or epochs
    keys: list[str] = []
    for record in points:
        for key, value in record.items():
            if key not in _NOT_LOSSES and isinstance(value, (int, float)) and key not in keys:
                keys.append(key)
    keys.sort(key=lambda k: (k != "loss", k))
    figure = Figure(figsize=(6.4, 3.9), layout="constrained")
    ax = figure.add_subplot()
    marker = "o" if len(points) < 40 else None
    positive = []
    for key in keys:
        xs = [r["step"] for r in points if isinstance(r.get(key), (int, float))]
        ys = [r[key] for r in points if isinstance(r.get(key), (int, float))]
        positive += ys
        total = key == "loss"
        ax.plot(xs, ys, label=key, marker=marker, markersize=4 if total else 3,
                linewidth=2.2 if total else 1.3, color="black" if total else None,
                alpha=1.0 if total else 0.85)  # fmt: skip
    for record in epochs[:-1]:
        ax.axvline(record["step"], color="#b0b4bb", linestyle=":", linewidth=1)
    values = [v for v in positive if np.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) > 100:
        ax.set_yscale("log")
        ax.set_ylabel("loss (log scale)", fontsize=11)
    else:
        ax.set_ylabel("loss", fontsize=11)
    ax.set_xlabel("step" + (" (dotted: end of an epoch)" if len(epochs) > 1 else ""), fontsize=11)
    ax.set_xlim(left=0, right=max([int(r["step"]) for r in points] + [1]) * 1.04)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_title(title, fontsize=13)
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize=9)
    _save_figure(figure, path)
    last = points[-1] if points else {}
    seconds = sum(float(r.get("seconds", 0.0)) for r in epochs)
    caption = f"{plural(len(epochs), 'epoch')}, {plural(int(last.get('step', 0)), 'step')}"
    if isinstance(last.get("loss"), (int, float)):
        caption += f", last loss {last['loss']:.4f}"
    if seconds:
        caption += f", {duration(seconds)} of training"
    return caption
