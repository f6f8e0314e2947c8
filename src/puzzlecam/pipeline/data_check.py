"""The data stage's every-run part: the up-front data check and the data signature.

After the ``data`` stage (run, or skipped as done: the demo format builds its data inside
it, so nothing here can come earlier), every run reads both splits and looks at each
image's and mask's size and mtime. Then

- the **data check** reads the files it has not seen as they are now: every image's header
  (it opens and has a size), every mask decoded (its size is its image's, its values are
  classes or 255), in worker processes. What it finds is cached per file by (size,
  mtime_ns) in ``data_check.json``, so a later run opens only new or changed files. All
  problems end the run in one DataError (one line), before any stage reads the data.
- the **data signature** of each split (``puzzlecam.data.signature``) is recorded in
  ``data_signature.json`` with the per-id table, and a change since the last run is said.

The signatures enter the fingerprints of the stages that read a split (``DataState.terms``)
as their difference from the data the run began with (the *baseline*): unchanged data add
nothing, so the fingerprints of a run made before data signatures existed, and the
checkpoints and output markers that carry them, stay valid.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from puzzlecam.data.samples import SplitData, mask_size_problem, mask_values_problem
from puzzlecam.data.signature import describe_changes, split_table, table_signature
from puzzlecam.errors import DataError, RunDirError
from puzzlecam.io import image_size, load_label_png, read_json, write_json
from puzzlecam.parallel import default_workers, map_images
from puzzlecam.pipeline.context import RunContext
from puzzlecam.pipeline.run_dir import RunDir
from puzzlecam.training.distributed import barrier

__all__ = ["SplitState", "DataState", "check_files", "prepare_data", "ROLES"]

ROLES = ("train", "val")
_VERSION = 1
_SHOWN = 10  # problems listed in the error; the rest are counted
_INLINE_BELOW = 32  # fewer files to read than this: in this process (a pool costs more)


@dataclass(frozen=True)
class SplitState:
    """One split's data now, when the run began (``baseline``), and before its last change."""

    signature: str
    baseline: str
    previous: str | None = None  # the signature before the last change
    change: str | None = None  # what the last change was, e.g. "3 images added, 1 replaced"


@dataclass(frozen=True)
class DataState:
    splits: Mapping[str, SplitState]

    def terms(self, before: Iterable[str] = ()) -> dict[str, str]:
        """The data part of the stage fingerprints: role -> signature, for the splits whose
        data differ from the run's baseline. ``before``: roles taken as they were before
        their last change (to tell which change made a finished stage out of date)."""
        before = set(before)
        terms = {}
        for role, state in self.splits.items():
            signature = state.previous if role in before and state.previous else state.signature
            if signature != state.baseline:
                terms[role] = signature
        return terms

    @property
    def changed(self) -> tuple[str, ...]:
        """The roles whose data changed at some point of this run's life."""
        return tuple(role for role, state in self.splits.items() if state.previous)


# --- the data check ----------------------------------------------------------------------


def _read_file(task: tuple[str, str]) -> dict[str, Any]:
    """What the check needs of one file: an image's (H, W) from its header, a mask's
    (H, W) and values from a full decode; or the problem."""
    kind, path = task
    try:
        if kind == "image":
            return {"size": list(image_size(path))}
        mask = load_label_png(path)
        return {"size": list(mask.shape), "values": np.unique(mask).tolist()}
    except DataError as error:
        return {"problem": error.problem}


_KINDS = {  # problem kind -> (one, many)
    "image": ("unreadable image", "unreadable images"),
    "mask": ("unreadable mask", "unreadable masks"),
    "size": ("mask of the wrong size", "masks of the wrong size"),
    "values": ("mask with values outside the classes", "masks with values outside the classes"),
}


def check_files(
    splits: Iterable[SplitData],
    stats: Mapping[Path, tuple[int, int]],
    cache: Mapping[str, Any],
    workers: int | None = None,
    progress: bool = True,
) -> tuple[list[tuple[Path, str, str]], dict[str, Any], int]:
    """Check every image and mask of ``splits``; files whose (size, mtime_ns) in ``stats``
    match their ``cache`` record are not opened.

    Returns the problems ``(path, kind, text)`` in split order, the new cache (records of
    the files checked now or before, problems left out so a fixed file is read again) and
    how many files were read.
    """
    kinds: dict[Path, str] = {}
    samples = []
    for split in splits:
        for sample in split.samples:
            if sample.image_path not in kinds:
                samples.append((sample, split.num_classes))
            kinds[sample.image_path] = "image"
            if sample.mask_path:
                kinds[sample.mask_path] = "mask"
    records: dict[str, dict[str, Any]] = {}
    todo = []
    for path, kind in kinds.items():
        hit = cache.get(str(path))
        if isinstance(hit, dict) and hit.get("kind") == kind and hit.get("stat") == [*stats[path]]:
            records[str(path)] = hit
        else:
            todo.append((kind, str(path)))
    if workers is None:
        workers = default_workers() if len(todo) >= _INLINE_BELOW else 1
    found = map_images(_read_file, todo, workers, "data check", progress)
    for (kind, path), record in zip(todo, found, strict=True):
        records[path] = {"kind": kind, "stat": [*stats[Path(path)]], **record}

    problems = []
    for sample, num_classes in samples:
        image = records[str(sample.image_path)]
        if "problem" in image:
            problems.append((sample.image_path, "image", image["problem"]))
        if not sample.mask_path:
            continue
        mask = records[str(sample.mask_path)]
        if "problem" in mask:
            problems.append((sample.mask_path, "mask", mask["problem"]))
            continue
        if "size" in image and (text := mask_size_problem(mask["size"], image["size"])):
            problems.append((sample.mask_path, "size", text))
        if text := mask_values_problem(mask["values"], num_classes):
            problems.append((sample.mask_path, "values", text))
    kept = {path: record for path, record in records.items() if "problem" not in record}
    return problems, kept, len(todo)


def _problems_error(root: Path, problems: list[tuple[Path, str, str]]) -> DataError:
    """One problem: the error of its file. More: one line naming the first few files
    (relative to the data root), each problem without its own advice, and one advice."""
    if len(problems) == 1:
        path, _, text = problems[0]
        return DataError(path, text)
    counts = Counter(kind for _, kind, _ in problems)
    summary = ", ".join(f"{count} {_KINDS[kind][count != 1]}" for kind, count in counts.items())
    shown = [
        f"{_relative(path, root)}: {text.split('; ')[0]}" for path, _, text in problems[:_SHOWN]
    ]
    if len(problems) > _SHOWN:
        shown.append(f"and {len(problems) - _SHOWN} more")
    return DataError(
        root,
        f"the data check found {len(problems)} problems ({summary}): "
        + "; ".join(shown)
        + "; fix or replace these files, or leave their images out of the data set",
    )


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _read_cache(path: Path) -> dict[str, Any]:
    """The check's cache; an unreadable one is only a cache: start over."""
    try:
        data = read_json(path) if path.is_file() else {}
    except DataError:
        return {}
    files = (
        data.get("files") if isinstance(data, dict) and data.get("version") == _VERSION else None
    )
    return files if isinstance(files, dict) else {}


def _run_check(ctx: RunContext, splits: Mapping[str, SplitData], tables: Mapping) -> None:
    stats = {}
    for role, split in splits.items():
        for sample in split.samples:
            entry = tables[role][sample.image_id]
            stats[sample.image_path] = tuple(entry["image"][1:])
            if sample.mask_path:
                stats[sample.mask_path] = tuple(entry["mask"][1:])
    cache = _read_cache(ctx.run.data_check_path)
    problems, kept, read = check_files(splits.values(), stats, cache, progress=ctx.progress)
    if kept != cache:
        write_json(ctx.run.data_check_path, {"version": _VERSION, "files": kept}, indent=None)
    if read:
        ctx.log(
            f"data check: {read} file{'s' if read != 1 else ''} read, "
            f"{len(stats) - read} unchanged since checked"
        )
    if problems:
        raise _problems_error(Path(ctx.config.data.root), problems)


# --- the data signature --------------------------------------------------------------------


_SPLIT_KEYS = {"signature", "baseline", "previous", "change", "classes", "images"}


def _read_signatures(run: RunDir) -> dict[str, Any] | None:
    path = run.data_signature_path
    if not path.is_file():
        return None
    try:
        data = read_json(path)
    except DataError as error:
        data = error
    splits = data.get("splits") if isinstance(data, dict) else None
    if not isinstance(splits, dict) or not all(
        isinstance(s, dict) and _SPLIT_KEYS <= set(s) for s in splits.values()
    ):
        raise RunDirError(
            f"{path}: not a readable data signature; delete it (the data as it is now is then "
            "taken as the data the finished stages were made from)"
        )
    return data


def _state(data: Mapping[str, Any]) -> DataState:
    return DataState(
        {
            role: SplitState(s["signature"], s["baseline"], s["previous"], s["change"])
            for role, s in data["splits"].items()
        }
    )


def _record_signatures(
    ctx: RunContext, splits: Mapping[str, SplitData], tables: Mapping
) -> DataState:
    stored = _read_signatures(ctx.run)
    if stored is None and any(name != "data" for name in ctx.run.manifest()):
        ctx.log(
            f"data: signature recorded in {ctx.run.data_signature_path.name}; the stages "
            "finished before are taken as made from the data as it is now"
        )
    recorded = {}
    for role, split in splits.items():
        signature = table_signature(split.classes, tables[role])
        old = stored["splits"].get(role) if stored else None
        entry = {"split": split.name, "signature": signature, "baseline": signature,
                 "previous": None, "change": None}  # fmt: skip
        if old is not None:
            entry.update(baseline=old["baseline"], previous=old["previous"], change=old["change"])
            if old["signature"] != signature:
                change = describe_changes(old["classes"], old["images"], list(split.classes),
                                          tables[role])  # fmt: skip
                entry.update(previous=old["signature"], change=change)
                ctx.log(
                    f"data: the {role} split '{split.name}' changed since the last run: {change}"
                )
        recorded[role] = {**entry, "classes": list(split.classes), "images": tables[role]}
    data = {"version": _VERSION, "splits": recorded}
    if data != stored:
        write_json(ctx.run.data_signature_path, data, indent=None)
    return _state(data)


def prepare_data(ctx: RunContext) -> DataState:
    """Check the data and record its signature (see the module docstring); every run, after
    the data stage. Raises DataError listing every problem the check found."""
    splits = {role: ctx.split(role) for role in ROLES}
    state = None
    if ctx.dist.is_main:
        root = ctx.config.data.root
        tables = {role: split_table(split, root) for role, split in splits.items()}
        _run_check(ctx, splits, tables)
        state = _record_signatures(ctx, splits, tables)
    barrier(ctx.dist)
    if state is None:  # the other processes read what the main one recorded
        state = _state(_read_signatures(ctx.run) or {"splits": {}})
    return state
