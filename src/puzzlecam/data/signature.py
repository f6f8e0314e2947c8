"""What a split's data looked like, cheaply: its ids in order, their tags, and each image's
and mask's file size and modification time (no file is opened).

A *table* maps each id to ``{"tags": [...], "image": [name, size, mtime_ns], "mask": ... or
None}`` (ids in split order); its *signature* is a short hash of the table and the class
list. Two tables of one split say what changed between them (``describe_changes``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from puzzlecam.data.samples import SplitData
from puzzlecam.dataclass_yaml import config_hash

__all__ = ["FileStat", "file_stat", "split_table", "table_signature", "describe_changes"]

FileStat = tuple[int, int]
"""(size in bytes, mtime in nanoseconds): a file counts as unchanged while both are."""


def file_stat(path: str | Path) -> FileStat:
    info = os.stat(path)
    return info.st_size, info.st_mtime_ns


def _entry(path: Path, root: Path) -> list[Any]:
    try:
        name = str(path.relative_to(root))
    except ValueError:
        name = str(path)
    return [name, *file_stat(path)]


def split_table(split: SplitData, root: str | Path) -> dict[str, dict[str, Any]]:
    """id -> tags and the (name, size, mtime_ns) of its image and mask, in split order.
    File names are relative to ``root`` (the data set's root) where they lie inside it."""
    root = Path(root)
    return {
        sample.image_id: {
            "tags": list(sample.tags),
            "image": _entry(sample.image_path, root),
            "mask": _entry(sample.mask_path, root) if sample.mask_path else None,
        }
        for sample in split.samples
    }


def table_signature(classes: tuple[str, ...] | list[str], table: dict[str, dict[str, Any]]) -> str:
    """Short hash of the class list and the table (the ids' order counts)."""
    return config_hash({"classes": list(classes), "samples": list(table.items())})


def describe_changes(
    old_classes: list[str],
    old: dict[str, dict[str, Any]],
    new_classes: list[str],
    new: dict[str, dict[str, Any]],
) -> str:
    """What changed from ``old`` to ``new``, e.g. ``"3 images added, 1 replaced"``
    (replaced: another image file under the id; retagged: other tags)."""
    common = [i for i in new if i in old]
    counts = (
        (sum(1 for i in new if i not in old), "added"),
        (sum(1 for i in old if i not in new), "removed"),
        (sum(1 for i in common if old[i]["image"] != new[i]["image"]), "replaced"),
        (sum(1 for i in common if old[i]["tags"] != new[i]["tags"]), "retagged"),
    )
    parts = []
    for count, verb in counts:
        if count:
            noun = "" if parts else (" image" if count == 1 else " images")
            parts.append(f"{count}{noun} {verb}")
    masks = sum(1 for i in common if old[i]["mask"] != new[i]["mask"])
    if masks:
        parts.append(f"{masks} mask{'s' if masks != 1 else ''} changed")
    if [i for i in old if i in new] != common:
        parts.append("order changed")
    if list(old_classes) != list(new_classes):
        parts.append("class list changed")
    return ", ".join(parts) or "changed"
