"""A user's own tagged images.

root/
  images/{image_id}.{jpg,png,...}
  labels.csv          header ``image_id,tags[,split]``; tags space-separated class names
  classes.txt         one class name a line (background excluded)
  masks/{image_id}.png   optional ground truth for evaluation (0 = background, 255 = ignore)

Without a ``split`` column every split name selects all rows; with one, a split selects
the rows whose ``split`` equals its name.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from puzzlecam.constants import IMAGE_EXTENSIONS
from puzzlecam.data.classes import resolve_classes
from puzzlecam.data.samples import Sample, SplitData
from puzzlecam.errors import DataError

__all__ = ["read_folder"]


def _find_image(folder: Path, image_id: str) -> Path | None:
    direct = folder / image_id
    if direct.suffix.lower() in IMAGE_EXTENSIONS and direct.is_file():
        return direct
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        candidate = folder / f"{image_id}{ext}"
        if candidate.is_file():
            return candidate
    return None


def read_folder(root: str | Path, split: str, classes: Sequence[str] | None = None) -> SplitData:
    """Samples of a ``folder`` data set (see the module docstring for the layout)."""
    root = Path(root)
    csv_path = root / "labels.csv"
    if not csv_path.is_file():
        raise DataError(csv_path, "labels.csv not found (columns: image_id,tags[,split])")
    class_names = resolve_classes(root, classes)
    class_index = {name: index for index, name in enumerate(class_names)}

    with csv_path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        if "image_id" not in columns or "tags" not in columns:
            raise DataError(
                csv_path, f"header must have image_id and tags columns, found {columns}"
            )
        rows = list(enumerate(reader, start=2))

    samples, skipped, missing, seen = [], [], [], set()
    for line, row in rows:
        image_id = (row["image_id"] or "").strip()
        if not image_id:
            raise DataError(csv_path, f"line {line}: empty image_id")
        if image_id in seen:
            raise DataError(csv_path, f"line {line}: image '{image_id}' is listed twice")
        seen.add(image_id)
        if "split" in columns and (row.get("split") or "").strip() != split:
            continue
        names = (row["tags"] or "").split()
        unknown = [name for name in names if name not in class_index]
        if unknown:
            raise DataError(
                csv_path,
                f"line {line}: tag(s) {unknown} of '{image_id}' are not in classes.txt "
                f"({', '.join(class_names)})",
            )
        image_path = _find_image(root / "images", image_id)
        if image_path is None:
            missing.append(image_id)
            continue
        tags = tuple(sorted({class_index[name] for name in names}))
        if not tags:
            skipped.append((image_id, "no tags"))
            continue
        stem = (
            Path(image_id).stem if Path(image_id).suffix.lower() in IMAGE_EXTENSIONS else image_id
        )
        mask_path = root / "masks" / f"{stem}.png"
        samples.append(Sample(stem, image_path, tags, mask_path if mask_path.is_file() else None))
    if missing:
        raise DataError(
            root / "images",
            f"{len(missing)} images listed in labels.csv are missing, e.g. {missing[:5]}",
        )
    if not samples and not skipped:
        raise DataError(csv_path, f"no rows belong to split '{split}'")
    return SplitData(split, class_names, tuple(samples), tuple(skipped))
